-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- The sequences of the notification gate. The trigger itself is (re)defined in 006, safe in any writer's session.
--
-- Every transaction that NOTIFYs takes a cluster-wide lock at commit: a notify-per-row trigger cut
-- verification throughput to ~0.41x with 8 writers here. So the trigger notifies only when the pending count
-- *may* have reached the threshold:
--   * every row that becomes verified takes a gate number from training_controller_verified_seq;
--   * after each recount the controller publishes in training_controller_notify_at_seq the gate number at
--     which the threshold can be reached at the earliest (or the maximum bigint while it needs no hint);
--   * a row whose gate number reaches that value notifies.
-- The controller computes the value so a notification can come early but never late (src/gate.ts), and keeps
-- recounting on startup, reconnect and a slow poll, since NOTIFY is only ever a hint.
-- Sequences, not a table row: reading a one-row table per verification measured ~0.79x, a sequence ~0.85-0.91x.

CREATE SEQUENCE IF NOT EXISTS :"schema".training_controller_verified_seq;
CREATE SEQUENCE IF NOT EXISTS :"schema".training_controller_notify_at_seq MINVALUE 0 START WITH 0;
-- 0: notify on every verification until the controller's first recount publishes a real value (early, never late).
SELECT setval(format('%I.training_controller_notify_at_seq', :'schema'), 0, true);
-- Neither holds data. (Before 006 the trigger ran as the writing role and needed these; now it runs as its owner.)
GRANT USAGE, SELECT ON SEQUENCE :"schema".training_controller_verified_seq TO PUBLIC;
GRANT SELECT ON SEQUENCE :"schema".training_controller_notify_at_seq TO PUBLIC;

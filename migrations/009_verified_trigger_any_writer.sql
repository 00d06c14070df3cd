-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- The trigger again (006 had it last), for three kinds of writer 006 did not serve (issue 21):
--
-- * A writer that commits in two phases (XA/JTA: PREPARE TRANSACTION, then COMMIT PREPARED). PostgreSQL refuses
--   to PREPARE a transaction that sent a NOTIFY, and the gate kept notifying until the controller saw the
--   verification, which never committed: every verification failed from then on. A transaction can only be
--   prepared where max_prepared_transactions > 0 (a server setting, changed by a restart), so there the trigger
--   takes its gate number and sends nothing; the controller reads the same setting and watches the gate
--   sequence instead (src/loop/gateWatch.ts: one read every 250 ms). Everywhere else it notifies as before.
-- * A writer whose own BEFORE trigger derives `verified` from another column (`SET status = 'approved'`).
--   `AFTER UPDATE OF verified` fires only when `verified` is in the statement's SET list, so such a verification
--   waited for the 300 s poll. The update trigger now fires on any UPDATE; its WHEN clause, which compares the
--   row before and after every BEFORE trigger, still keeps every other write from calling the function.
-- * Any writer, at the cost of the floor: 006's `SET search_path` saved and restored a setting per verified row
--   (2.3 us of trigger time per row against 1.2 us without, EXPLAIN ANALYZE on PostgreSQL 15; issue 21). The
--   function still runs as its owner (SECURITY DEFINER), so a writer needs no privilege on our sequences, nor
--   USAGE on this schema: a PostgREST-style role that writes through a view in its own schema, or a DBA's
--   `REVOKE ALL ON ALL SEQUENCES … FROM PUBLIC`, failed every verification under a SECURITY INVOKER version
--   (found by review before it shipped). Instead of a pinned search_path, the body names everything it uses
--   qualified, operators and types included: a writer's search_path ('' or a schema with its own `nextval` or
--   bigint `>=`) cannot change what it calls, and PostgreSQL never looks up a function or operator in pg_temp
--   unless it is named there. Measured: the same as SECURITY INVOKER (1.44 against 1.36 us per row, median of
--   seven; no-op trigger 0.83).
--
-- The body names the sequences by their qualified names, so it is built with format() and run by \gexec (psql
-- does not interpolate variables inside a quoted body); `migrate` does the same.
SELECT format($create$
CREATE OR REPLACE FUNCTION %1$I.training_controller_on_verified() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $body$
BEGIN
  -- The regclass literals are resolved once per session (plpgsql caches the expression's plan).
  IF pg_catalog.nextval(%2$L::pg_catalog.regclass)
     OPERATOR(pg_catalog.>=) COALESCE(pg_catalog.pg_sequence_last_value(%3$L::pg_catalog.regclass), 0::pg_catalog.int8)
  THEN
    -- Read only when the gate is open (rare): a NOTIFY would make this transaction impossible to PREPARE.
    IF pg_catalog.current_setting('max_prepared_transactions') OPERATOR(pg_catalog.=) '0' THEN
      -- Constant payload: PostgreSQL folds identical notifications of one transaction into one.
      PERFORM pg_catalog.pg_notify('training_controller', '');
    END IF;
  END IF;
  RETURN NULL;
END
$body$
$create$,
  :'schema',
  format('%I.training_controller_verified_seq', :'schema'),
  format('%I.training_controller_notify_at_seq', :'schema'))
\gexec
-- As in 006: only the triggers call it (CREATE OR REPLACE keeps the function's privileges; this is for psql
-- runs on a database where 006 was never applied).
REVOKE ALL ON FUNCTION :"schema".training_controller_on_verified() FROM PUBLIC;

-- A brief SHARE ROW EXCLUSIVE lock per trigger, as in 006: give up after 50 ms rather than queue every
-- verification behind a long transaction (`migrate` retries; with psql, apply the file again).
SET lock_timeout = '50ms';

CREATE OR REPLACE TRIGGER training_controller_verified_update
  AFTER UPDATE ON :"schema".annotations
  FOR EACH ROW WHEN (NEW.verified AND OLD.verified IS NOT TRUE)
  EXECUTE FUNCTION :"schema".training_controller_on_verified();

RESET lock_timeout;

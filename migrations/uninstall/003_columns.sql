-- Uninstall, step 3 of 3, only on purpose (`uninstall --drop-columns`): the two columns 002 added to the Triage
-- API's annotations, and with them what they record (which annotations were trained, and by which run). A
-- catalog change (no rewrite), under a brief ACCESS EXCLUSIVE lock: 50 ms at most, retried.
\if :{?schema}
\else
  \set schema public
\endif

SET lock_timeout = '50ms';
ALTER TABLE :"schema".annotations DROP COLUMN IF EXISTS training_run_id, DROP COLUMN IF EXISTS used_for_training;
RESET lock_timeout;

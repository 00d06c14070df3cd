-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- Claims, settles and releases in chunks (issue #14). One UPDATE of 1,000,000 rows held their row locks for
-- ~25 s and a Triage relabel waited 23 s; each chunk of CHUNK_ROWS rows is now its own short transaction, and
-- training_runs records how far the work got, so a restart finishes what it finds half done.
--   claim_pending: a claim (or baseline) is under way; the Job is created only once it is complete;
--   claim_through: the highest pending id when the claim began (the claim takes pending rows up to it);
--   claim_cursor:  rows up to this id are done (NULL: none yet). Ids are kept as text, compared in the id
--                  column's own type: the Triage API's ids may be bigint, uuid or text;
--   settle_pending: the run's outcome is recorded but its annotations are not all marked used / released yet;
--   settle_cursor: how far that got; released_count: annotations a settle released;
--   baseline_before: a baseline limited to annotations verified before this instant (its verified_at column).
-- A baseline (`training-controller baseline`) is a run in state `baseline` with no Job: it marks pending
-- annotations used without training them, so a first deployment can leave the history out.
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS claim_pending boolean NOT NULL DEFAULT false;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS claim_through text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS claim_cursor text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS settle_pending boolean NOT NULL DEFAULT false;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS settle_cursor text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS released_count integer;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS baseline_before timestamptz;
ALTER TABLE :"schema".training_runs DROP CONSTRAINT IF EXISTS training_runs_state_check;
ALTER TABLE :"schema".training_runs ADD CONSTRAINT training_runs_state_check
  CHECK (state IN ('submitting', 'running', 'succeeded', 'failed', 'lost', 'baseline'));

-- A chunk walks one run's annotations in id order from its cursor: (training_run_id, id), so each chunk is an
-- index range scan (~2,000 entries), never a re-scan of the rows already done. It replaces 002's index on
-- training_run_id alone, whose duplicates are in heap order. Both builds let writes through (CONCURRENTLY); an
-- interrupted one leaves an INVALID index, dropped first here (psql's \gexec runs the DROP the SELECT builds;
-- `migrate` applies this file again whenever it finds the index INVALID).
SELECT format('DROP INDEX CONCURRENTLY %I.%I', n.nspname, c.relname)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'schema' AND c.relname = 'annotations_run_claims' AND NOT i.indisvalid
\gexec
CREATE INDEX CONCURRENTLY IF NOT EXISTS annotations_run_claims
  ON :"schema".annotations (training_run_id, id) WHERE training_run_id IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS :"schema".annotations_training_run_id;

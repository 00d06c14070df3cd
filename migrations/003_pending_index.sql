-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- The recount's partial index. The predicate must be written literally in the query for the planner to use it.
-- CONCURRENTLY: on a large production table a plain CREATE INDEX would block verifications for the whole build.
-- It cannot run inside a transaction block; psql -f (autocommit) and `training-controller migrate` both run
-- files statement by statement. An interrupted concurrent build leaves an INVALID index that IF NOT EXISTS
-- would keep (and the recount would fall back to a sequential scan): drop such a one first (psql's \gexec runs
-- the DROP built by the SELECT; `migrate` does the same, and applies this file again whenever it finds the
-- index INVALID; `run` and `status` warn about it).
SELECT format('DROP INDEX CONCURRENTLY %I.%I', n.nspname, c.relname)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'schema' AND c.relname = 'annotations_pending' AND NOT i.indisvalid
\gexec
CREATE INDEX CONCURRENTLY IF NOT EXISTS annotations_pending
  ON :"schema".annotations (id) WHERE verified AND NOT used_for_training AND training_run_id IS NULL;

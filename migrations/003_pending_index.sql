-- migrate: no-transaction
-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- The recount's partial index. The predicate must be written literally in the query for the planner to use it.
-- CONCURRENTLY: on a large production table a plain CREATE INDEX would block verifications for the whole build.
-- It cannot run inside a transaction block, so `psql -f` (autocommit) and `training-controller migrate`
-- (which honours the marker line above) both run it on its own. If a concurrent build is interrupted it leaves an
-- INVALID index that IF NOT EXISTS would skip: `DROP INDEX CONCURRENTLY annotations_pending;` and apply again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS annotations_pending
  ON :"schema".annotations (id) WHERE verified AND NOT used_for_training AND training_run_id IS NULL;

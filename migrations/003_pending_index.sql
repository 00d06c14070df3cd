-- migrate: no-transaction
-- The recount's partial index. The predicate must be written literally in the query for the planner to use it.
-- CONCURRENTLY: on a large production table a plain CREATE INDEX would block verifications for the whole build.
-- It cannot run inside a transaction block, so `psql -f` (autocommit) and `training-controller migrate`
-- (which honours the marker line above) both run it on its own. If a concurrent build is interrupted it leaves an
-- INVALID index that IF NOT EXISTS would skip: `DROP INDEX CONCURRENTLY annotations_pending;` and apply again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS annotations_pending
  ON annotations (id) WHERE verified AND NOT used_for_training AND training_run_id IS NULL;

-- Uninstall, step 1 of 3 (`training-controller uninstall --yes` runs the same files, docs/migrations.md "Uninstall"): every
-- object the migrations added to the Triage API's database, but the run history (002) and the two columns of
-- annotations (003). Apply with psql like the migrations, only after the service is scaled to 0 and no run is
-- open (the command refuses otherwise; psql does not check):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -v schema=public -f migrations/uninstall/001_objects.sql
\if :{?schema}
\else
  \set schema public
\endif

-- The trigger first: from here on no verification calls anything of ours. Each DROP TRIGGER, and dropping the
-- foreign key, takes a brief ACCESS EXCLUSIVE lock on annotations: give up after 50 ms rather than queue every
-- Triage write behind a long transaction (`uninstall` retries; with psql, apply the file again).
SET lock_timeout = '50ms';
DROP TRIGGER IF EXISTS training_controller_verified_insert ON :"schema".annotations;
DROP TRIGGER IF EXISTS training_controller_verified_update ON :"schema".annotations;
ALTER TABLE :"schema".annotations DROP CONSTRAINT IF EXISTS annotations_training_run_id_fkey;
RESET lock_timeout;

DROP FUNCTION IF EXISTS :"schema".training_controller_on_verified();
DROP SEQUENCE IF EXISTS :"schema".training_controller_verified_seq;
DROP SEQUENCE IF EXISTS :"schema".training_controller_notify_at_seq;

-- CONCURRENTLY: writes go on while each index goes (no transaction block: psql -f and `uninstall` run each
-- statement on its own). annotations_training_run_id is 002's, replaced by 007's annotations_run_claims.
DROP INDEX CONCURRENTLY IF EXISTS :"schema".annotations_pending;
DROP INDEX CONCURRENTLY IF EXISTS :"schema".annotations_run_claims;
DROP INDEX CONCURRENTLY IF EXISTS :"schema".annotations_training_run_id;

DROP TABLE IF EXISTS :"schema".training_control;
DROP TABLE IF EXISTS :"schema".training_controller_migrations;

-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- CREATE OR REPLACE TRIGGER is PostgreSQL 14 syntax: name what is needed rather than fail on a syntax error.
DO $$
BEGIN
  IF current_setting('server_version_num')::int < 140000 THEN
    RAISE EXCEPTION 'PostgreSQL % is too old: the migrations need PostgreSQL 14 or newer (CREATE OR REPLACE TRIGGER in 006); upgrade the server', current_setting('server_version');
  END IF;
END $$;

-- The trigger that tells the controller an annotation became verified (the gate: see 004 and src/gate.ts).
-- It runs inside the Triage API's writes, so it must work in any writer's session, and never fail one:
--   * SECURITY DEFINER with a pinned search_path: it runs as its owner (who owns the sequences) and resolves
--     names in pg_catalog and this schema only, whatever the writer's search_path ('', another schema) or
--     privileges (UPDATE on annotations is enough);
--   * OLD.verified IS NOT TRUE: the Triage API may allow NULL (not yet reviewed); NULL -> true must notify too.
CREATE OR REPLACE FUNCTION :"schema".training_controller_on_verified() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, :"schema", pg_temp
AS $$
BEGIN
  IF nextval('training_controller_verified_seq')
     >= coalesce(pg_sequence_last_value('training_controller_notify_at_seq'), 0) THEN
    -- Constant payload: PostgreSQL folds identical notifications of one transaction into one.
    PERFORM pg_notify('training_controller', '');
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION :"schema".training_controller_on_verified() FROM PUBLIC;

-- Each CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on annotations (writers wait while it is held or
-- queued): give up after 50 ms rather than queue every verification behind a long transaction (`migrate`
-- retries; with psql, apply the file again).
SET lock_timeout = '50ms';

-- WHEN clauses keep every other write from even calling the function.
CREATE OR REPLACE TRIGGER training_controller_verified_insert
  AFTER INSERT ON :"schema".annotations
  FOR EACH ROW WHEN (NEW.verified)
  EXECUTE FUNCTION :"schema".training_controller_on_verified();

CREATE OR REPLACE TRIGGER training_controller_verified_update
  AFTER UPDATE OF verified ON :"schema".annotations
  FOR EACH ROW WHEN (NEW.verified AND OLD.verified IS NOT TRUE)
  EXECUTE FUNCTION :"schema".training_controller_on_verified();

RESET lock_timeout;

-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif
SELECT set_config('training_controller.schema', :'schema', false);

-- 006 uses CREATE OR REPLACE TRIGGER (PostgreSQL 14): say so now rather than fail there with a syntax error.
DO $$
BEGIN
  IF current_setting('server_version_num')::int < 140000 THEN
    RAISE EXCEPTION 'PostgreSQL % is too old: the migrations need PostgreSQL 14 or newer (CREATE OR REPLACE TRIGGER in 006); upgrade the server', current_setting('server_version');
  END IF;
END $$;

-- A partitioned annotations table (issue 21): 002 adds a foreign key NOT VALID and 003/007 build indexes
-- CONCURRENTLY, neither of which PostgreSQL allows on a partitioned table, and the plain forms would block the
-- Triage API's writes for a scan of the whole table. psql stopped half way through 002 (two columns added, no
-- foreign key). Refuse here, before anything changes; `migrate` asks the same before it takes its lock
-- (src/db/migrate.ts partitionedRefusal, same words).
DO $$
DECLARE
  target text := current_setting('training_controller.schema');
  children text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = target AND c.relname = 'annotations' AND c.relkind = 'p') THEN
    RAISE EXCEPTION 'annotations in schema % is a partitioned table, which the migrations do not support: PostgreSQL cannot add a NOT VALID foreign key to one or build an index on one CONCURRENTLY, and without those they would block the Triage API''s writes for a scan of the whole table; nothing was changed (docs/migrations.md "Partitioned annotations")', target;
  END IF;
  -- Partitioned by inheritance: a row written to a child fires none of the parent's triggers.
  SELECT string_agg(ch.relname, ', ' ORDER BY ch.relname) INTO children
    FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid
   WHERE i.inhparent = to_regclass(format('%I.annotations', target));
  IF children IS NOT NULL THEN
    RAISE EXCEPTION 'annotations in schema % has inheritance children (%), which the migrations do not support: a row written to a child fires none of the trigger''s notifications and is outside the pending index, so its verification would wait for the 300 s poll; nothing was changed (docs/migrations.md "Partitioned annotations")', target, children;
  END IF;
END $$;

-- The annotations table belongs to the Triage API. This creates a minimal one only where none exists
-- (a fresh database, the tests, docker-compose); on a real database it changes nothing.
-- Every column but `verified` has a default, so `INSERT INTO annotations (verified) VALUES (true)` works.
-- It never creates one that would shadow the real table: annotations in another schema only is an error that
-- names that schema.
DO $$
DECLARE
  target text := current_setting('training_controller.schema');
  elsewhere text;
BEGIN
  IF to_regclass(format('%I.annotations', target)) IS NULL THEN
    SELECT string_agg(n.nspname, ', ') INTO elsewhere
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = 'annotations' AND c.relkind IN ('r', 'p') AND n.nspname <> target;
    IF elsewhere IS NOT NULL THEN
      RAISE EXCEPTION 'annotations is in schema %, not in schema %: set ANNOTATIONS_SCHEMA (or psql -v schema=…) to the schema of the Triage API''s table', elsewhere, target;
    END IF;
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS :"schema".annotations (
  id          bigserial   PRIMARY KEY,
  image_uri   text        NOT NULL DEFAULT '',
  label       text        NOT NULL DEFAULT '',
  verified    boolean     NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now()
);

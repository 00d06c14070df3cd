-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif
SELECT set_config('training_controller.schema', :'schema', false);

-- training_runs belongs to the controller: one row per training Job it decided to submit.
-- state: submitting -> running -> succeeded | failed | lost  (see docs/architecture.md "Run states").
CREATE TABLE IF NOT EXISTS :"schema".training_runs (
  id               bigserial   PRIMARY KEY,
  job_name         text        NOT NULL UNIQUE,
  namespace        text        NOT NULL,
  state            text        NOT NULL CHECK (state IN ('submitting', 'running', 'succeeded', 'failed', 'lost')),
  annotation_count integer     NOT NULL CHECK (annotation_count >= 0),
  create_attempts  integer     NOT NULL DEFAULT 0,
  last_attempt_at  timestamptz,
  job_uid          text,
  reason           text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  submitted_at     timestamptz,
  finished_at      timestamptz
);

-- "One run at a time" is a constraint, not only a code path: at most one row may be open.
CREATE UNIQUE INDEX IF NOT EXISTS training_runs_one_open
  ON :"schema".training_runs ((true)) WHERE state IN ('submitting', 'running');

-- The back-off after failures is derived from the latest finished runs.
CREATE INDEX IF NOT EXISTS training_runs_finished_at ON :"schema".training_runs (finished_at DESC) WHERE finished_at IS NOT NULL;

-- Run statement by statement (psql -f, or `migrate`), never in one transaction: each lock below is held
-- for its own statement only. The ALTERs take ACCESS EXCLUSIVE on annotations for a catalog change; while one
-- waits for a long Triage transaction, every verification queues behind it, so they give up after 50 ms
-- (`migrate` retries them; with psql, apply the file again: every statement is idempotent).
SET lock_timeout = '50ms';

-- Adding a NOT NULL column with a constant default is a catalog-only change since PostgreSQL 11 (no rewrite).
ALTER TABLE :"schema".annotations ADD COLUMN IF NOT EXISTS used_for_training boolean NOT NULL DEFAULT false;
ALTER TABLE :"schema".annotations ADD COLUMN IF NOT EXISTS training_run_id bigint;

-- The foreign key is added NOT VALID (no scan under a write-blocking lock), then validated, which only takes
-- a SHARE UPDATE EXCLUSIVE lock: verifications keep flowing on a large table.
DO $$
DECLARE
  target text := current_setting('training_controller.schema');
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'annotations_training_run_id_fkey'
                    AND conrelid = format('%I.annotations', target)::regclass) THEN
    EXECUTE format('ALTER TABLE %I.annotations ADD CONSTRAINT annotations_training_run_id_fkey
                    FOREIGN KEY (training_run_id) REFERENCES %I.training_runs (id) NOT VALID', target, target);
  END IF;
END $$;

-- Neither the validation nor a concurrent index build blocks writers, and both wait for older transactions
-- to end, however long: no lock_timeout from here (it would cut a concurrent build short, leaving it INVALID).
RESET lock_timeout;
ALTER TABLE :"schema".annotations VALIDATE CONSTRAINT annotations_training_run_id_fkey;

-- The index on training_run_id (the settle's, and the foreign key's) is built by 007.

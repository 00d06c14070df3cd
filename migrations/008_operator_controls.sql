-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- Operator controls and the max wait (issue #11). One row of state the CLI writes and the service carries out,
-- so a pause, a trigger request and the max wait's clock survive restarts and are the same for every replica:
--   paused, paused_at/_by, pause_reason: `training-controller pause`; no run starts until `resume`;
--   trigger_at/_by, trigger_reason:      `training-controller trigger`, until the service starts its run;
--   pending_since: when the service first saw an annotation pending (the max wait counts from it);
--   settings, settings_at:               the running service's effective settings, which `status` shows.
-- Only the controller's own tables change here: nothing touches annotations, so no lock_timeout is needed.
CREATE TABLE IF NOT EXISTS :"schema".training_control (
  id             boolean     PRIMARY KEY DEFAULT true CHECK (id),
  paused         boolean     NOT NULL DEFAULT false,
  paused_at      timestamptz,
  paused_by      text,
  pause_reason   text,
  trigger_at     timestamptz,
  trigger_by     text,
  trigger_reason text,
  pending_since  timestamptz,
  settings       jsonb,
  settings_at    timestamptz
);
INSERT INTO :"schema".training_control (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

-- Why each run started (threshold, max-wait, manual) and, for a cancelled one, who asked and why.
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS trigger_kind text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS trigger_reason text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS cancel_by text;
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS cancel_reason text;
ALTER TABLE :"schema".training_runs DROP CONSTRAINT IF EXISTS training_runs_state_check;
ALTER TABLE :"schema".training_runs ADD CONSTRAINT training_runs_state_check
  CHECK (state IN ('submitting', 'running', 'succeeded', 'failed', 'lost', 'baseline', 'cancelled'));

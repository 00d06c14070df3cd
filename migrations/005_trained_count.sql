-- The schema of the Triage API's annotations table: `psql -v schema=triage -f …` (default public); the
-- `migrate` command passes ANNOTATIONS_SCHEMA. Every object of ours lives in it and is named qualified, so the
-- migrating role's own search_path never decides where anything goes.
\if :{?schema}
\else
  \set schema public
\endif

-- How many of a succeeded run's annotations were marked used: those still verified when its Job completed.
-- annotation_count stays what the Job was given (TRAINING_ANNOTATION_COUNT); a reviewer may un-verify some of
-- the batch while it trains, and those are released instead of marked used (README "What the training
-- container reads"). NULL until the run succeeds. A catalog-only change on training_runs (the controller's table).
ALTER TABLE :"schema".training_runs ADD COLUMN IF NOT EXISTS trained_count integer;

-- How many of a succeeded run's annotations were marked used: those still verified when its Job completed.
-- annotation_count stays what the Job was given (TRAINING_ANNOTATION_COUNT); a reviewer may un-verify some of
-- the batch while it trains, and those are released instead of marked used (README "What the training
-- container reads"). NULL until the run succeeds. A catalog-only change on training_runs (the controller's table).
ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS trained_count integer;

-- Uninstall, step 2 of 3: the run history (`training_runs`, which run trained which annotations and when).
-- Skip it to keep the history (`uninstall --keep-history`); after 001 nothing refers to it, and a later
-- `migrate` takes it up again as it is.
\if :{?schema}
\else
  \set schema public
\endif

DROP TABLE IF EXISTS :"schema".training_runs;

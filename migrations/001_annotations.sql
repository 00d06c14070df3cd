-- The annotations table belongs to the Triage API. This creates a minimal one only where none exists
-- (a fresh database, the tests, docker-compose); on a real database it changes nothing.
-- Every column but `verified` has a default, so `INSERT INTO annotations (verified) VALUES (true)` works.
CREATE TABLE IF NOT EXISTS annotations (
  id          bigserial   PRIMARY KEY,
  image_uri   text        NOT NULL DEFAULT '',
  label       text        NOT NULL DEFAULT '',
  verified    boolean     NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now()
);

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from './db.js';
import { LOCK_KEYS, withSessionLock } from './locks.js';
import type { Logger } from './logger.js';
import { migrationsDir } from './paths.js';

export interface Migration {
  name: string;
  sql: string;
  /** `-- migrate: no-transaction` on the first line: CREATE INDEX CONCURRENTLY cannot run in a transaction. */
  transactional: boolean;
}

export async function readMigrations(dir: string = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      return { name, sql, transactional: !/^--\s*migrate:\s*no-transaction/.test(sql) };
    }),
  );
}

/**
 * Applies the migrations not yet recorded, in order, under a session advisory lock so two processes
 * (two pods, an init container and an operator) apply them one after the other. Each file is idempotent,
 * so a database migrated by hand with psql (and so with no records) is simply re-applied harmlessly.
 * Returns the names applied.
 */
export async function migrate(pool: Pool, logger: Logger, dir?: string): Promise<string[]> {
  const migrations = await readMigrations(dir);
  const client = await pool.connect();
  try {
    return await withSessionLock(client, LOCK_KEYS.migrate, async () => {
      await client.query(`CREATE TABLE IF NOT EXISTS training_controller_migrations (
        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ name: string }>('SELECT name FROM training_controller_migrations');
      const done = new Set(rows.map((r) => r.name));
      const applied: string[] = [];
      for (const m of migrations) {
        if (done.has(m.name)) continue;
        const started = Date.now();
        if (m.transactional) {
          await client.query('BEGIN');
          try {
            await client.query(m.sql);
            await client.query('INSERT INTO training_controller_migrations (name) VALUES ($1)', [m.name]);
            await client.query('COMMIT');
          } catch (err: unknown) {
            await client.query('ROLLBACK');
            throw new Error(`migration ${m.name} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
        } else {
          try {
            await client.query(m.sql);
          } catch (err: unknown) {
            throw new Error(`migration ${m.name} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
          await client.query('INSERT INTO training_controller_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING', [m.name]);
        }
        logger.info({ migration: m.name, ms: Date.now() - started }, 'Applied migration');
        applied.push(m.name);
      }
      return applied;
    });
  } finally {
    client.release();
  }
}

/** The objects `run` needs; a clear startup error instead of a failing query at the first notification. */
export async function missingSchema(pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ missing: string }>(`
    SELECT x AS missing FROM unnest(ARRAY[
      'annotations', 'training_runs', 'annotations_pending',
      'training_controller_verified_seq', 'training_controller_notify_at_seq']) AS x
    WHERE to_regclass(x) IS NULL
    UNION ALL
    SELECT 'annotations.training_run_id' WHERE NOT EXISTS (
      SELECT 1 FROM information_schema.columns WHERE table_name = 'annotations' AND column_name = 'training_run_id')
    UNION ALL
    SELECT 'trigger training_controller_verified_update' WHERE NOT EXISTS (
      SELECT 1 FROM pg_trigger WHERE tgname = 'training_controller_verified_update')`);
  return rows.map((r) => r.missing);
}

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from './db.js';
import { LOCK_KEYS, withSessionLock } from './locks.js';
import type { Logger } from './logger.js';
import { migrationsDir } from './paths.js';
import { quoteIdent, quoteLiteral, type Tables } from './tables.js';
import { errorMessage } from './errors.js';

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
 * The SQL psql would run with `-v schema=<schema>`: the files' psql meta-commands (the `\if` that defaults the
 * variable) dropped, and `:"schema"` / `:'schema'` interpolated as psql does (an identifier, a literal).
 */
export function forSchema(sql: string, schema: string): string {
  return sql
    .split('\n')
    .filter((line) => !/^\s*\\/.test(line))
    .join('\n')
    .replaceAll(':"schema"', () => quoteIdent(schema)) // a function: `$$` in a replacement string means `$`
    .replaceAll(":'schema'", () => quoteLiteral(schema));
}

/**
 * Applies the migrations not yet recorded, in order, under a session advisory lock so two processes
 * (two pods, an init container and an operator) apply them one after the other. Each file is idempotent,
 * so a database migrated by hand with psql (and so with no records) is simply re-applied harmlessly.
 * Returns the names applied.
 */
export async function migrate(pool: Pool, logger: Logger, t: Tables, dir?: string): Promise<string[]> {
  const migrations = await readMigrations(dir);
  const client = await pool.connect();
  try {
    return await withSessionLock(client, LOCK_KEYS.migrate, async () => {
      await client.query(`CREATE TABLE IF NOT EXISTS ${t.migrations} (
        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${t.migrations}`);
      const done = new Set(rows.map((r) => r.name));
      const applied: string[] = [];
      for (const m of migrations) {
        if (done.has(m.name)) continue;
        const started = Date.now();
        if (m.transactional) {
          await client.query('BEGIN');
          try {
            await client.query(forSchema(m.sql, t.schema));
            await client.query(`INSERT INTO ${t.migrations} (name) VALUES ($1)`, [m.name]);
            await client.query('COMMIT');
          } catch (err: unknown) {
            await client.query('ROLLBACK');
            throw new Error(`migration ${m.name} failed: ${errorMessage(err)}`);
          }
        } else {
          try {
            await client.query(forSchema(m.sql, t.schema));
          } catch (err: unknown) {
            throw new Error(`migration ${m.name} failed: ${errorMessage(err)}`);
          }
          await client.query(`INSERT INTO ${t.migrations} (name) VALUES ($1) ON CONFLICT DO NOTHING`, [m.name]);
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


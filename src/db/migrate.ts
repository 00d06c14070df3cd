import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool, PoolClient } from './pool.js';
import { errorMessage } from '../core/errors.js';
import { realTimers, type Timers } from '../core/timers.js';
import { LOCK_KEYS, retryOnLockTimeout, withSessionLock, type LockHolder } from './locks.js';
import type { Logger } from '../core/logger.js';
import { migrationsDir } from '../core/paths.js';
import { concurrentIndexes, forSchema, splitStatements } from './psqlScript.js';
import type { Tables } from './tables.js';

export interface Migration {
  name: string;
  sql: string;
}

/** CREATE OR REPLACE TRIGGER (migration 006) is PostgreSQL 14 syntax; older servers fail with a syntax error. */
export const MIN_SERVER_VERSION = 140000;

// A statement that cannot get its lock within the file's lock_timeout (50 ms, set before each brief ACCESS
// EXCLUSIVE statement) is retried: a Triage transaction that stays open for minutes makes us wait, never the
// Triage API's writers queued behind our lock request. 0.1 s doubling to 5 s between attempts, 30 minutes in
// all (then the operator hears why and can look for the long transaction in pg_stat_activity).
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;
const RETRY_GIVE_UP_MS = 30 * 60_000;

export interface MigrateOptions {
  dir?: string;
  /** Waits between lock retries (tests pass a short one). */
  timers?: Timers;
}

export async function readMigrations(dir: string = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(files.map(async (name) => ({ name, sql: await readFile(join(dir, name), 'utf8') })));
}

/** One line for a server too old to migrate, or null. */
export function serverTooOld(versionNum: number, version: string): string | null {
  if (versionNum >= MIN_SERVER_VERSION) return null;
  return `PostgreSQL ${version} is too old: the migrations need PostgreSQL 14 or newer (CREATE OR REPLACE TRIGGER in 006); upgrade the server`;
}

/**
 * Applies the migrations not yet recorded, in order, under a session advisory lock so two processes (two
 * pods, an init container and an operator) apply them one after the other. Each file is idempotent
 * statement by statement, so a file interrupted half way, or one applied by hand with psql (and so with no
 * record), is simply applied again. A recorded file whose concurrently built index is INVALID (an
 * interrupted build) is applied again too: its own first step drops the half-built index.
 * Returns the names applied.
 */
export async function migrate(pool: Pool, logger: Logger, t: Tables, options: MigrateOptions = {}): Promise<string[]> {
  const migrations = await readMigrations(options.dir);
  const timers = options.timers ?? realTimers;
  const client = await pool.connect();
  let failed = false;
  try {
    const { rows: v } = await client.query<{ num: string; version: string }>(
      "SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version",
    );
    const tooOld = serverTooOld(Number(v[0]?.num), String(v[0]?.version));
    if (tooOld) throw new Error(tooOld);
    return await withSessionLock(
      client,
      LOCK_KEYS.migrate,
      async () => {
        await client.query(`CREATE TABLE IF NOT EXISTS ${t.migrations} (
        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
        const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${t.migrations}`);
        const done = new Set(rows.map((r) => r.name));
        const invalid = new Set(
          await invalidIndexes(
            client,
            t,
            migrations.flatMap((m) => concurrentIndexes(m.sql)),
          ),
        );
        const applied: string[] = [];
        for (const m of migrations) {
          const broken = concurrentIndexes(m.sql).filter((i) => invalid.has(i));
          if (done.has(m.name) && broken.length === 0) continue;
          if (broken.length > 0)
            logger.warn(
              { migration: m.name, indexes: broken },
              `Rebuilding INVALID index ${broken.join(', ')} (an interrupted CREATE INDEX CONCURRENTLY)`,
            );
          const started = Date.now();
          try {
            await applyScript(client, forSchema(m.sql, t.schema), logger, m.name, timers);
          } catch (err: unknown) {
            throw new Error(`migration ${m.name} failed: ${errorMessage(err)}`);
          } finally {
            await client.query('RESET lock_timeout').catch(() => undefined);
          }
          await client.query(`INSERT INTO ${t.migrations} (name) VALUES ($1) ON CONFLICT DO NOTHING`, [m.name]);
          logger.info({ migration: m.name, ms: Date.now() - started }, 'Applied migration');
          applied.push(m.name);
        }
        return applied;
      },
      { timers, onWait: (holder) => logger.warn(waitingFor(holder), MIGRATE_LOCK_WAIT) },
    );
  } catch (err: unknown) {
    failed = true;
    throw err;
  } finally {
    // After an error the session may still hold the migrate lock or a lock_timeout (an unlock that failed on
    // a broken connection): discard it rather than hand it to the pool's next user.
    client.release(failed);
  }
}

async function applyScript(
  client: PoolClient,
  script: string,
  logger: Logger,
  name: string,
  timers: Timers,
): Promise<void> {
  for (const s of splitStatements(script)) {
    const result = await withLockRetry(() => client.query<Record<string, unknown>>(s.sql), logger, name, s.sql, timers);
    if (!s.gexec) continue;
    for (const row of result.rows) {
      for (const value of Object.values(row)) {
        if (typeof value === 'string') await withLockRetry(() => client.query(value), logger, name, value, timers);
      }
    }
  }
}

function withLockRetry<T>(fn: () => Promise<T>, logger: Logger, name: string, sql: string, timers: Timers): Promise<T> {
  return retryOnLockTimeout(fn, {
    firstMs: RETRY_FIRST_MS,
    maxMs: RETRY_MAX_MS,
    giveUpMs: RETRY_GIVE_UP_MS,
    timers,
    onRetry: (attempt, retryInMs) =>
      logger.warn({ migration: name, statement: firstLine(sql), attempt, retryInMs }, LOCK_BUSY),
  });
}

/** Logged once when another session holds the migrate lock: `migrate` waits for it, and says for whom. */
export const MIGRATE_LOCK_WAIT = 'Another session holds the migrate lock: waiting for it to finish';

function waitingFor(holder: LockHolder | null): Record<string, unknown> {
  if (!holder) return { holder: 'released as we looked' };
  return {
    holderPid: holder.pid,
    holderApplication: holder.applicationName,
    holderClient: holder.clientAddr,
    holderState: holder.state,
    holderSince: holder.since?.toISOString() ?? null,
    // An idle holder is not migrating: a session that kept the lock after its migrate went away.
    hint:
      holder.state === 'idle'
        ? `the holder is idle, not migrating: a session left it behind (SELECT pg_terminate_backend(${holder.pid}) frees it)`
        : 'another migrate is running; this one goes on when it ends',
  };
}

/** Logged while a long transaction keeps a migration from its brief lock. */
export const LOCK_BUSY =
  'A transaction holds a lock the migration needs: retrying rather than making writers queue behind it';

function firstLine(sql: string): string {
  return (
    sql
      .split('\n')
      .find((l) => l.trim() !== '' && !l.trim().startsWith('--'))
      ?.trim() ?? ''
  );
}

/** Which of `names` exist in the schema as INVALID indexes (half built by an interrupted concurrent build). */
export async function invalidIndexes(q: Pool | PoolClient, t: Tables, names: readonly string[]): Promise<string[]> {
  const { rows } = await q.query<{ name: string }>(
    `SELECT c.relname AS name
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT i.indisvalid`,
    [t.schema, names],
  );
  return rows.map((r) => r.name);
}

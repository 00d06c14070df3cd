import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool, PoolClient } from './pool.js';
import { errorMessage } from '../core/errors.js';
import { realTimers, sleep, type Timers } from '../core/timers.js';
import { LOCK_KEYS, lockHolder, retryOnLockTimeout, withSessionLock, type LockHolder } from './locks.js';
import { backendPid, POOLED_MIGRATE } from './pooler.js';
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
  /** How long the migrate lock's holder may sit idle before it is taken for left behind (tests shorten it). */
  staleHolderSeconds?: number;
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
 * One line for an annotations table the migrations cannot serve (migration 001 raises the same words), or
 * null: a partitioned one (declarative), or one with inheritance children, whose rows fire none of the
 * parent's triggers and are outside its pending index (a verification there waited for the 300 s poll; found by
 * review). `run` asks too, for children added after the migrations.
 */
export async function partitionedRefusal(
  q: Pool | PoolClient,
  t: Tables,
  outcome = 'nothing was changed',
): Promise<string | null> {
  const { rows } = await q.query<{ partitioned: boolean; children: string | null }>(
    `SELECT c.relkind = 'p' AS partitioned,
            (SELECT string_agg(ch.relname, ', ' ORDER BY ch.relname) FROM pg_inherits i
               JOIN pg_class ch ON ch.oid = i.inhrelid WHERE i.inhparent = c.oid) AS children
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = 'annotations'`,
    [t.schema],
  );
  const row = rows[0];
  if (!row) return null;
  if (row.partitioned)
    return `annotations in schema ${t.schema} is a partitioned table, which the migrations do not support: PostgreSQL cannot add a NOT VALID foreign key to one or build an index on one CONCURRENTLY, and without those they would block the Triage API's writes for a scan of the whole table; ${outcome} (docs/migrations.md "Partitioned annotations")`;
  if (row.children)
    return `annotations in schema ${t.schema} has inheritance children (${row.children}), which the migrations do not support: a row written to a child fires none of the trigger's notifications and is outside the pending index, so its verification would wait for the 300 s poll; ${outcome} (docs/migrations.md "Partitioned annotations")`;
  return null;
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
    const partitioned = await partitionedRefusal(client, t);
    if (partitioned) throw new Error(partitioned);
    return await withSessionLock(
      client,
      LOCK_KEYS.migrate,
      async () => {
        const sameSession = await sessionGuard(client, logger, timers);
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
          await sameSession();
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
      {
        timers,
        onWait: (holder, attempt) =>
          onLockWait(client, logger, holder, attempt, options.staleHolderSeconds ?? STALE_HOLDER_SECONDS),
      },
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

export async function applyScript(
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

/**
 * The session that took the migrate lock must run every statement: through a transaction pooler it does not
 * (the CLI's probe can miss a pooler, db/pooler.ts). Checked after the lock and before each file; on a
 * mismatch the lock is freed where it was left (its server process, idle in the pooler, is ended) and
 * migrate refuses in one line.
 */
async function sessionGuard(client: PoolClient, logger: Logger, timers: Timers): Promise<() => Promise<void>> {
  const holder = await lockHolder(client, LOCK_KEYS.migrate);
  const check = async (): Promise<void> => {
    const pid = await backendPid(client);
    if (holder && pid === holder.pid) return;
    if (holder) {
      // It is ended only while idle (another client's statement may be running on it): 20 tries, 50 ms apart.
      for (let attempt = 0; attempt < 20; attempt++) {
        if ((await lockHolder(client, LOCK_KEYS.migrate))?.pid !== holder.pid) break;
        await terminateIdle(client, holder.pid);
        await sleep(timers, 50);
      }
      logger.warn({ pid: holder.pid }, 'Freed the migrate lock this migrate took through a transaction pooler');
    }
    throw new Error(POOLED_MIGRATE);
  };
  await check();
  return check;
}

const terminateIdle = (client: PoolClient, pid: number) =>
  client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'", [pid]);

/**
 * A holder idle this long is no migrate at work (one waits at most 5 s between statements, a long index
 * build is `active`): a session that kept the lock after its migrate went away, as a transaction pooler's
 * server process did in issue 24, which hung every later migrate. It is ended and the lock taken.
 */
const STALE_HOLDER_SECONDS = 60;

async function onLockWait(
  client: PoolClient,
  logger: Logger,
  holder: LockHolder | null,
  attempt: number,
  staleSeconds: number,
): Promise<void> {
  if (attempt === 1) logger.warn(waitingFor(holder), MIGRATE_LOCK_WAIT);
  if (holder?.state === 'idle' && (holder.stateSeconds ?? 0) > staleSeconds) {
    await terminateIdle(client, holder.pid);
    logger.warn({ ...waitingFor(holder), idleSeconds: Math.round(holder.stateSeconds ?? 0) }, STALE_LOCK_FREED);
  }
}

/** Logged when a migrate ends a session that has held the migrate lock idle for over a minute. */
export const STALE_LOCK_FREED = 'Ended an idle session that had kept the migrate lock for over a minute';

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
        ? `the holder is idle, not migrating: a session left it behind (ended once idle for ${STALE_HOLDER_SECONDS} s; SELECT pg_terminate_backend(${holder.pid}) frees it now)`
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

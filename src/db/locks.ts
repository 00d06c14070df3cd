// Every advisory lock the controller takes, written down once (pg-boss style). The keys are arbitrary
// bigints chosen to be unlikely to collide with the Triage API's own: 0x7472_6169_6e00 + n ("train").
import type { PoolClient } from 'pg';
import { realTimers, sleep, type Timers } from '../core/timers.js';

export const LOCK_KEYS = {
  /** Held for the whole `migrate` run, so two processes apply the migrations one after the other. */
  migrate: 0x7472_6169_6e01n,
  /** Held for one dispatch transaction: only one replica decides and claims at a time (dispatchLock). */
  dispatch: 0x7472_6169_6e02n,
} as const;

/**
 * The dispatch lock of one schema's tables (ANNOTATIONS_SCHEMA), which is what it guards: two controllers on
 * one database (each on its own schema, each with its own TRAINING_NAME: one schema serves one name,
 * startup.ts) never wait on each other's dispatch, and a CLI (`baseline`, `uninstall`) excludes the service of
 * the schema it names whatever TRAINING_NAME its shell has. The issue asked for the key to follow the name; with
 * one name per schema the two say the same, and the schema cannot be set wrong in a CLI that works at all.
 * `public` keeps the key of every earlier version, so an older CLI still excludes a newer service. Other schemas:
 * 0x7472 ("tr") in the top 16 bits, a 32-bit FNV-1a of the name, 0x02: a collision between two schemas is 1 in 4
 * billion, and costs only a skipped dispatch that the next recount retries.
 */
export function dispatchLock(schema: string): bigint {
  if (schema === 'public') return LOCK_KEYS.dispatch;
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(schema, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return (0x7472n << 48n) | (BigInt(hash) << 8n) | 0x02n;
}

/** pg_try_advisory_xact_lock: true when acquired; released automatically at commit or rollback. */
export async function tryXactLock(client: PoolClient, key: bigint): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [
    key.toString(),
  ]);
  return rows[0]?.locked === true;
}

/**
 * Runs `fn` holding a session-level advisory lock, waiting for it if another session has it.
 * It polls pg_try_advisory_lock every 100 ms instead of blocking in pg_advisory_lock: a session blocked in
 * that call is a transaction in progress, and CREATE INDEX CONCURRENTLY (migration 003) run by the holder
 * waits for every such transaction to end: the two would deadlock (seen with two `migrate` at once).
 */
export async function withSessionLock<T>(
  client: PoolClient,
  key: bigint,
  fn: () => Promise<T>,
  options: { timers?: Timers; onWait?: (holder: LockHolder | null, attempt: number) => Promise<void> | void } = {},
): Promise<T> {
  const timers = options.timers ?? realTimers;
  for (let attempt = 1; ; attempt++) {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [
      key.toString(),
    ]);
    if (rows[0]?.locked) break;
    // Never a silent wait: the caller hears who holds it at once and every 50th attempt (5 s), and can act
    // on a holder that has stopped (a lock left on an idle session is found by its pid).
    if (attempt % 50 === 1) await options.onWait?.(await lockHolder(client, key), attempt);
    await sleep(timers, 100);
  }
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]);
  }
}

/** PostgreSQL's lock_not_available: a statement's lock_timeout ran out before it got its lock. */
export const LOCK_NOT_AVAILABLE = '55P03';

export const isLockTimeout = (err: unknown): boolean =>
  typeof err === 'object' && err !== null && (err as { code?: unknown }).code === LOCK_NOT_AVAILABLE;

export interface LockRetry {
  /** The first wait; each next one doubles, up to maxMs. */
  firstMs: number;
  maxMs: number;
  /** Rethrow the lock timeout once this long has passed since the first attempt; retry forever when absent. */
  giveUpMs?: number;
  timers: Timers;
  /** Before each wait: log it, or throw to stop retrying (a shutdown). */
  onRetry(attempt: number, waitMs: number, waitedMs: number): void;
}

/**
 * `fn` again after each lock timeout (every statement we run on the Triage API's table sets a short
 * lock_timeout, so we are the side that waits, never the one writers queue behind). Other errors rethrow.
 */
export async function retryOnLockTimeout<T>(fn: () => Promise<T>, r: LockRetry): Promise<T> {
  const began = r.timers.now();
  for (let attempt = 1, wait = r.firstMs; ; attempt++, wait = Math.min(wait * 2, r.maxMs)) {
    try {
      return await fn();
    } catch (err: unknown) {
      const waited = r.timers.now() - began;
      if (!isLockTimeout(err) || (r.giveUpMs !== undefined && waited > r.giveUpMs)) throw err;
      r.onRetry(attempt, wait, waited);
      await sleep(r.timers, wait);
    }
  }
}

export interface LockHolder {
  pid: number;
  applicationName: string | null;
  clientAddr: string | null;
  /** What the holding session is doing: 'idle' for a lock left behind by a session that is not running. */
  state: string | null;
  since: Date | null;
  /** How long it has been in that state (database clock). */
  stateSeconds: number | null;
}

/** The session holding an advisory lock on `key`, from pg_locks (a bigint key is classid:objid, objsubid 1). */
export async function lockHolder(client: PoolClient, key: bigint): Promise<LockHolder | null> {
  const { rows } = await client.query<LockHolder>(
    `SELECT l.pid, a.application_name AS "applicationName", a.client_addr::text AS "clientAddr", a.state,
            a.state_change AS since, extract(epoch FROM now() - a.state_change)::float8 AS "stateSeconds"
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1
      LIMIT 1`,
    [(key >> 32n).toString(), (key & 0xffff_ffffn).toString()],
  );
  return rows[0] ?? null;
}

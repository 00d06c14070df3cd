// Every advisory lock the controller takes, written down once (pg-boss style). The keys are arbitrary
// bigints chosen to be unlikely to collide with the Triage API's own: 0x7472_6169_6e00 + n ("train").
import type { PoolClient } from 'pg';

export const LOCK_KEYS = {
  /** Held for the whole `migrate` run, so two processes apply the migrations one after the other. */
  migrate: 0x7472_6169_6e01n,
  /** Held for one dispatch transaction: only one replica decides and claims at a time. */
  dispatch: 0x7472_6169_6e02n,
} as const;

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
export async function withSessionLock<T>(client: PoolClient, key: bigint, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [
      key.toString(),
    ]);
    if (rows[0]?.locked) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]);
  }
}

import pg from 'pg';
import type { Logger } from './logger.js';
import { scrubSecrets } from './redact.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  /** Upper bound for any single statement, so a hung socket surfaces as an error instead of a stall. */
  queryTimeoutMs?: number;
  max?: number;
  applicationName?: string;
}

export function createPool(connectionString: string, logger: Logger, options: PoolOptions = {}): Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 4,
    connectionTimeoutMillis: 10_000,
    query_timeout: options.queryTimeoutMs ?? 30_000,
    keepAlive: true,
    application_name: options.applicationName ?? 'training-controller',
  });
  // An idle client losing its connection (database restart) emits here; without a listener it would crash the process.
  pool.on('error', (err: Error) =>
    logger.warn({ err: scrubSecrets(err.message, connectionString) }, 'Idle database connection lost'),
  );
  return pool;
}

/** What fn returns to end its transaction with ROLLBACK instead of COMMIT, and still answer `value`. */
export class Rollback<T> {
  constructor(readonly value: T) {}
}

export const rollback = <T>(value: T): Rollback<T> => new Rollback(value);

/**
 * BEGIN … COMMIT around fn (ROLLBACK when fn returns rollback(value)); ROLLBACK on any error, which is rethrown.
 * A client whose ROLLBACK fails is discarded, not handed back to the pool: its connection is gone or unusable.
 */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T | Rollback<T>>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    if (result instanceof Rollback) {
      await client.query('ROLLBACK');
      return result.value;
    }
    await client.query('COMMIT');
    return result;
  } catch (err: unknown) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true; // the connection itself is gone: do not hand it back to the pool
    }
    throw err;
  } finally {
    client.release(broken);
  }
}

import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../core/logger.js';
import { scrubSecrets } from '../core/redact.js';
import { connectionSettings } from './credentials.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/**
 * The LISTEN connection's application_name, `training-controller-listen <schema>`: how an operator (and a test)
 * finds its backend in pg_stat_activity, and how `uninstall` and a start under another TRAINING_NAME tell that a
 * service of this schema is still running (not one of another schema of the same database). Versions before
 * issue 23 named no schema: that name counts for every schema. 63 bytes at most (NAMEDATALEN).
 */
export const LISTEN_APPLICATION_NAME = 'training-controller-listen';
export function listenApplicationName(schema: string): string {
  const name = `${LISTEN_APPLICATION_NAME} ${schema}`;
  if (name.length <= 63) return name;
  // A cut alone made two schemas that share their first 36 characters one (found by review): a hash keeps them apart.
  const hash = createHash('sha256').update(schema).digest('hex').slice(0, 8);
  return `${name.slice(0, 63 - 9)}-${hash}`;
}

/** The LISTEN connections of services on this schema of the current database, other than our own session. */
export async function listenSessions(
  q: Pool | PoolClient,
  schema: string,
): Promise<{ pid: number; addr: string | null }[]> {
  const { rows } = await q.query<{ pid: number; addr: string | null }>(
    `SELECT pid, client_addr::text AS addr FROM pg_stat_activity
      WHERE datname = current_database() AND application_name IN ($1, $2) AND pid <> pg_backend_pid()`,
    [listenApplicationName(schema), LISTEN_APPLICATION_NAME],
  );
  return rows;
}

export interface PoolOptions {
  /** Upper bound for any single statement, so a hung socket surfaces as an error instead of a stall. */
  queryTimeoutMs?: number;
  max?: number;
  applicationName?: string;
}

/**
 * `urlFile`: the file the URL was read from (DATABASE_URL_FILE), read again for the password of each new
 * connection (credentials.ts), so a rotated Secret is picked up without a restart.
 */
export function createPool(connectionString: string, logger: Logger, options: PoolOptions = {}, urlFile = ''): Pool {
  const pool = new pg.Pool({
    max: options.max ?? 4,
    connectionTimeoutMillis: 10_000,
    query_timeout: options.queryTimeoutMs ?? 30_000,
    keepAlive: true,
    application_name: options.applicationName ?? 'training-controller',
    // After our defaults, as a connectionString would: the URL's own settings (application_name=…) win.
    ...connectionSettings(connectionString, urlFile),
  });
  // An idle client losing its connection (database restart) emits here; without a listener it would crash the process.
  pool.on('error', (err: Error) =>
    logger.warn({ err: scrubSecrets(err.message, connectionString) }, 'Idle database connection lost'),
  );
  // A checked-out client has no listener of the pool's (pg-pool removes it at checkout), so a connection ended
  // between two statements (a DBA's idle_in_transaction_session_timeout, pg_terminate_backend, a restart)
  // emitted an unhandled 'error' and the process exited 1 (issue 24). Every client gets its own listener for
  // its lifetime; the step that holds it sees its next query fail ("not queryable") and is retried like any
  // failed step, and this line keeps the real reason (25P03, 57P01), which that query's error does not carry.
  const inUse = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client) => inUse.add(client));
  pool.on('release', (_err, client) => inUse.delete(client));
  pool.on('connect', (client) =>
    client.on('error', (err: Error) => {
      if (!inUse.has(client)) return; // idle: the pool's own 'error' above reports it
      logger.warn({ err: scrubSecrets(err.message, connectionString) }, CONNECTION_LOST_IN_USE);
    }),
  );
  return pool;
}

/** Logged when PostgreSQL ends a connection the controller holds; the service retries that step, the CLI its wait. */
export const CONNECTION_LOST_IN_USE = 'Database connection lost while in use (the statement using it fails)';

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

// Is a connection string's session ours, or a transaction pooler's (PgBouncer pool_mode=transaction)? Through
// such a pooler every statement may run on another server session, so what lives in a session does not hold:
// a LISTEN delivers nothing (issue 24: listener_connected stayed 1 in 75 of 75 scrapes while no notification
// ever arrived), and `migrate`'s session advisory lock, set_config and lock_timeout serialize nothing (three at
// once failed with a deadlock and a duplicate pg_class row, and left the migrate lock on an idle pooled
// backend, which hung every later `migrate`).
//
// The probe, two ways to catch a session that is not ours:
// - two connections open at the same time ask for their server process. A direct connection and a session
//   pooler give each client its own server session, so the two pids differ. An idle transaction pooler hands
//   the first one's server back to its pool when that statement ends and (PgBouncer reuses the most recently
//   freed server first) gives it to the second: the same pid twice, from two open clients.
// - one connection asks PROBE_STATEMENTS times. Its own session answers with one pid; a busy pooler, or one
//   with server_round_robin, hands its statements to several servers (the issue-24 review got past the first
//   way alone in 3 to 7 of 8 tries with six other clients busy, and every time with round robin).
// Either is proof; neither ever fires on a direct connection or a session pooler. A pooler with a single idle
// server and no other client could still answer alike to both, so migrate also checks its server process
// before each file (migrate.ts), and the LISTEN liveness ping stays the backstop for run.
import pg from 'pg';

/** Statements on one connection: enough to land on a second server of a busy or round-robin pool. */
const PROBE_STATEMENTS = 8;

/** True when some answer came from a server session that is not the client's own: a transaction pooler. */
export async function transactionPooled(connectionString: string): Promise<boolean> {
  const options = { connectionString, connectionTimeoutMillis: 10_000, query_timeout: 10_000 };
  const first = new pg.Client(options);
  const second = new pg.Client(options);
  // A connection that dies here is this probe's error, never an unhandled 'error' event.
  first.on('error', () => undefined);
  second.on('error', () => undefined);
  try {
    await Promise.all([first.connect(), second.connect()]);
    const a = await backendPid(first);
    const b = await backendPid(second);
    if (a === b) return true;
    for (let i = 1; i < PROBE_STATEMENTS; i++) if ((await backendPid(first)) !== a) return true;
    return false;
  } finally {
    await Promise.all([first.end().catch(() => undefined), second.end().catch(() => undefined)]);
  }
}

/** The server process answering this statement: through a transaction pooler, not always the same one. */
export async function backendPid(c: pg.Client | pg.PoolClient): Promise<number> {
  const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]?.pid;
  if (pid === undefined) throw new Error('pg_backend_pid() returned no row');
  return pid;
}

/** Why migrate refuses a transaction pooler (its lock, settings and lock_timeout live in a session). */
export const POOLED_MIGRATE =
  'this URL goes through a transaction pooler (statements of one connection ran in different server processes): migrate needs a session of its own for its lock; point DATABASE_URL at PostgreSQL directly for migrate (the service may stay pooled), or apply migrations/*.sql with psql';

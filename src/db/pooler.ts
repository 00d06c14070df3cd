// Is a connection string's session ours, or a transaction pooler's (PgBouncer pool_mode=transaction)? Through
// such a pooler every statement may run on another server session, so what lives in a session does not hold:
// a LISTEN delivers nothing (issue 24: listener_connected stayed 1 in 75 of 75 scrapes while no notification
// ever arrived), and `migrate`'s session advisory lock, set_config and lock_timeout serialize nothing (three at
// once failed with a deadlock and a duplicate pg_class row, and left the migrate lock on an idle pooled
// backend, which hung every later `migrate`).
//
// The probe: two connections open at the same time ask for their server process. A direct connection and a
// session pooler give each client its own server session, so the two pids differ. A transaction pooler hands
// the first one's server back to its pool as soon as that statement ends, and (PgBouncer reuses the most
// recently freed server first) gives it to the second: the same pid twice, from two open clients, can only
// be a transaction (or statement) pooler. A busy pooler may hand out another server and the probe says "not
// pooled": it never refuses a direct connection, and the LISTEN liveness ping stays the backstop.
import pg from 'pg';

/** What the probe found: null when the two sessions were distinct (direct, or a session pooler). */
export async function transactionPooled(connectionString: string): Promise<{ pid: number } | null> {
  const options = { connectionString, connectionTimeoutMillis: 10_000, query_timeout: 10_000 };
  const first = new pg.Client(options);
  const second = new pg.Client(options);
  // A connection that dies here is this probe's error, never an unhandled 'error' event.
  first.on('error', () => undefined);
  second.on('error', () => undefined);
  try {
    await Promise.all([first.connect(), second.connect()]);
    const pid = async (c: pg.Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    const a = await pid(first);
    const b = await pid(second);
    return a !== undefined && a === b ? { pid: a } : null;
  } finally {
    await Promise.all([first.end().catch(() => undefined), second.end().catch(() => undefined)]);
  }
}

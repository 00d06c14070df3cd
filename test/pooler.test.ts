// Issue 24, items 2 and 3: a transaction-mode PgBouncer between us and PostgreSQL. Through it LISTEN delivered
// nothing while every signal said "connected", and three `migrate` at once were not serialized (a deadlock, a
// duplicate pg_class row) and left the migrate lock on an idle pooled backend, which hung every later
// `migrate`. Both now refuse in one line before touching anything, naming the setting to change; a wait for
// the migrate lock says who holds it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { LOCK_KEYS } from '../src/db/locks.js';
import { MIGRATE_LOCK_WAIT, migrate, STALE_LOCK_FREED } from '../src/db/migrate.js';
import { tables } from '../src/db/tables.js';
import { transactionPooled } from '../src/db/pooler.js';
import { createLogger } from '../src/core/logger.js';
import { realTimers } from '../src/core/timers.js';
import { CHANNEL, Listener, NO_DELIVERY } from '../src/loop/listener.js';
import { LISTENING } from '../src/main.js';
import { spawnCli } from './support/child.js';
import { freshDatabase, serverUrl, type TestDb } from './support/db.js';
import { eventually, LogCapture } from './support/harness.js';
import { PGBOUNCER, startPgBouncer, type PgBouncer } from './support/pgbouncer.js';

const skip = PGBOUNCER ? false : 'pgbouncer is not installed (.ci/run installs it: apt-get install pgbouncer)';

/** The CLI's exit, or null if it was still running after `ms` (then it is stopped). */
async function exitWithin(c: ReturnType<typeof spawnCli>, ms: number): Promise<number | null> {
  const timer = new Promise<null>((r) => setTimeout(() => r(null), ms).unref());
  const result = await Promise.race([c.exited.then((e) => e.code), timer]);
  if (result === null) {
    c.proc.kill('SIGKILL');
    await c.exited;
  }
  return result;
}

describe('a transaction-mode PgBouncer in front of PostgreSQL', { skip }, () => {
  let bouncer: PgBouncer;
  let session: PgBouncer;
  let roundRobin: PgBouncer;
  let db: TestDb;
  before(async () => {
    bouncer = await startPgBouncer(serverUrl(), 'transaction');
    session = await startPgBouncer(serverUrl(), 'session');
    roundRobin = await startPgBouncer(serverUrl(), 'transaction', { roundRobin: true });
  });
  after(async () => {
    await bouncer?.stop();
    await session?.stop();
    await roundRobin?.stop();
    await db?.drop();
  });

  /** Several servers in the pooler's pool (as when other clients use it): round robin then spreads statements. */
  async function warm(url: string): Promise<void> {
    const clients = [1, 2, 3].map(() => new pg.Client({ connectionString: url }));
    await Promise.all(clients.map((c) => c.connect()));
    await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.2)')));
    await Promise.all(clients.map((c) => c.end()));
  }

  it('the probe tells it from a direct connection and from a session pooler', async () => {
    db = await freshDatabase();
    assert.equal(await transactionPooled(db.url), false, 'direct');
    assert.equal(await transactionPooled(session.url(db.name)), false, 'session pooling keeps a session per client');
    assert.equal(await transactionPooled(bouncer.url(db.name)), true, 'transaction pooling');
    // Issue 24's review: two connections at once got different servers from a round-robin (or busy) pooler
    // every time; one connection's statements moving between servers gives it away.
    await warm(roundRobin.url(db.name));
    assert.equal(await transactionPooled(roundRobin.url(db.name)), true, 'transaction pooling with server_round_robin');
  });

  it('a migrate past the probe notices the pooler before its first file, frees the lock it took, and refuses', async () => {
    const fresh = await freshDatabase(undefined, { migrate: false });
    const pooled = new pg.Pool({ connectionString: roundRobin.url(fresh.name), max: 1 });
    pooled.on('error', () => undefined);
    try {
      await warm(roundRobin.url(fresh.name));
      await assert.rejects(migrate(pooled, createLogger('silent'), tables('public')), (err: Error) =>
        err.message.includes(
          'goes through a transaction pooler (statements of one connection ran in different server processes)',
        ),
      );
      await eventually(
        async () =>
          (
            await fresh.pool.query(
              "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
          ).rowCount === 0,
        'the migrate lock freed',
        5000,
      );
      const applied = await migrate(fresh.pool, createLogger('silent'), tables('public'));
      assert.ok(applied.length > 0, 'a direct migrate afterwards applies every file');
    } finally {
      await pooled.end();
      await fresh.drop();
    }
  });

  it('a migrate lock left on an idle session is freed after the stale limit, and migrate goes on', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    holder.on('error', () => undefined);
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [LOCK_KEYS.migrate.toString()]);
    const logs = new LogCapture();
    try {
      await migrate(db.pool, createLogger('info', logs), tables('public'), { staleHolderSeconds: 1 });
      assert.equal(logs.count(MIGRATE_LOCK_WAIT), 1);
      assert.equal(logs.count(STALE_LOCK_FREED), 1);
    } finally {
      await holder.end().catch(() => undefined);
    }
  });

  it('run refuses in one line when LISTEN would go through it, naming LISTEN_DATABASE_URL', async () => {
    const pooled = spawnCli(['run'], { DATABASE_URL: bouncer.url(db.name), KUBECONFIG: '' });
    assert.equal(await exitWithin(pooled, 30_000), 1, 'it exits instead of listening to nothing');
    const last = pooled.stderr.at(-1) ?? '';
    assert.match(last, /goes through a transaction pooler and LISTEN_DATABASE_URL is not set/);
    assert.match(last, /set LISTEN_DATABASE_URL to a direct connection/);
    assert.doesNotMatch(pooled.stderr.join('\n'), /\n\s+at /, 'no stack trace');

    const listenPooled = spawnCli(['run'], {
      DATABASE_URL: db.url,
      LISTEN_DATABASE_URL: bouncer.url(db.name),
      KUBECONFIG: '',
    });
    assert.equal(await exitWithin(listenPooled, 30_000), 1);
    assert.match(
      listenPooled.stderr.at(-1) ?? '',
      /^training-controller: LISTEN_DATABASE_URL .* goes through a transaction pooler/,
    );

    // The pool may stay pooled when LISTEN has a direct connection.
    const split = spawnCli(['run'], {
      DATABASE_URL: bouncer.url(db.name),
      LISTEN_DATABASE_URL: db.url,
      KUBECONFIG: '',
    });
    await split.logs.waitForMsg(LISTENING, 30_000);
    split.proc.kill('SIGTERM');
    assert.equal((await split.exited).code, 0);
  });

  it('migrate through it refuses in one line, three at once, and leaves no lock: a direct migrate runs at once', async () => {
    const fresh = await freshDatabase(undefined, { migrate: false });
    try {
      const three = [1, 2, 3].map(() => spawnCli(['migrate'], { DATABASE_URL: bouncer.url(fresh.name) }));
      for (const m of three) {
        assert.equal(await exitWithin(m, 30_000), 1);
        assert.equal(m.stderr.length, 1, m.stderr.join('\n'));
        assert.match(
          m.stderr[0] ?? '',
          /goes through a transaction pooler .*point DATABASE_URL at PostgreSQL directly/,
        );
      }
      // This database's: the services of other test files hold their schema's presence lock on theirs.
      const locks = await fresh.pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      );
      assert.equal(locks.rows[0]?.n, 0, 'no advisory lock left on any backend');
      const direct = spawnCli(['migrate'], { DATABASE_URL: fresh.url });
      assert.equal(await exitWithin(direct, 60_000), 0, direct.stderr.join('\n'));
      assert.equal(direct.logs.count(MIGRATE_LOCK_WAIT), 0, 'nothing to wait for');
    } finally {
      await fresh.drop();
    }
  });

  it('a migrate that waits for the lock says who holds it, and goes on when it is free', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [LOCK_KEYS.migrate.toString()]);
      const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const waiting = spawnCli(['migrate'], { DATABASE_URL: db.url });
      const line = await waiting.logs.waitForMsg(MIGRATE_LOCK_WAIT, 30_000);
      assert.equal(line.holderPid, rows[0]?.pid);
      assert.equal(line.holderState, 'idle');
      assert.match(String(line.hint), /idle, not migrating.*pg_terminate_backend/);
      await holder.query('SELECT pg_advisory_unlock($1::bigint)', [LOCK_KEYS.migrate.toString()]);
      assert.equal(await exitWithin(waiting, 30_000), 0, waiting.stderr.join('\n'));
    } finally {
      await holder.end();
    }
  });

  it('a LISTEN through it that the startup probe missed is reported down, said once, and stays down', async () => {
    // The probe can miss a busy pooler; the liveness ping is the backstop. It used to re-subscribe every
    // interval and report each new subscription up (listener_connected 1 in 75 of 75 scrapes).
    const logs = new LogCapture();
    const events: string[] = [];
    const direct = new pg.Pool({ connectionString: db.url });
    const listener = new Listener(
      bouncer.url(db.name),
      createLogger('debug', logs),
      realTimers,
      {
        notification: () => undefined,
        control: () => undefined,
        connected: (initial, proven) => events.push(`connected initial=${initial} proven=${proven}`),
        disconnected: () => events.push('disconnected'),
        alive: () => events.push('alive'),
        ping: async (payload) => void (await direct.query('SELECT pg_notify($1, $2)', [CHANNEL, payload])),
      },
      200,
    );
    listener.start();
    try {
      await eventually(
        () => events.filter((e) => e === 'connected initial=false proven=false').length >= 3,
        'three replacements, none reported up',
        20_000,
      );
      assert.equal(events[0], 'connected initial=true proven=true');
      assert.ok(!events.includes('alive'), events.join(', '));
      const warnings = logs.lines.filter((l) => l.msg === NO_DELIVERY && l.level === 40);
      assert.equal(warnings.length, 1, 'the warning is said once, not at every replacement');
    } finally {
      await listener.stop();
      await direct.end();
    }
  });
});

// Issue 24, item 1: a database connection that dies while the controller holds it (checked out of the pool,
// between two statements of a transaction) is an error of that step: logged, shown on /readyz, retried. It
// never ends the process (it did: an unhandled 'error' event of a checked-out pg client, exit 1), and no
// transaction of ours stays open across a call to the API server, so a slow cluster cannot hold row locks or
// run into a DBA's idle_in_transaction_session_timeout.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { CONNECTION_LOST_IN_USE } from '../src/db/pool.js';
import { CLAIMING_IN_CHUNKS } from '../src/loop/dispatcher.js';
import { runRows, verifyNew, type TestDb } from './support/db.js';
import { eventually, startController, useEachRun, useOwnServer } from './support/harness.js';

/** The controller's pool connections (not its LISTEN one), ended as a failover or a DBA's kill would. */
async function terminateControllerBackends(pool: pg.Pool): Promise<number> {
  const { rowCount } = await pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'training-controller'`,
  );
  return rowCount ?? 0;
}

/** Waits for the one run to reach `state` with every annotation in it, and returns it. */
async function oneRun(db: TestDb, state: string, count: number, timeoutMs = 30_000) {
  return eventually(
    async () => {
      const runs = await runRows(db.pool);
      return runs.length === 1 && runs[0]?.state === state && runs[0].annotation_count === count && runs[0];
    },
    `one ${state} run of ${count} annotations`,
    timeoutMs,
  );
}

describe('connections that die: the process lives on and trains exactly once', () => {
  const s = useEachRun();

  it('a DBA idle_in_transaction_session_timeout of 1 s with every Job list answering in 1.5 s', async () => {
    // The dispatch transaction used to stay open across the list: PostgreSQL ended it (25P03) and the
    // process exited, three starts in a row.
    await s.db.pool.query(`ALTER DATABASE ${s.db.name} SET idle_in_transaction_session_timeout = '1s'`);
    s.c = await startController(s.db.url, s.kube, { KUBE_REQUEST_TIMEOUT_MS: '5000' });
    s.kube.inject({ verb: 'list', delayMs: 1500, times: 1000 });
    await verifyNew(s.db.pool, 50);
    await oneRun(s.db, 'running', 50);
    assert.equal(s.kube.creates.length, 1);
    const ended = await s.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`,
    );
    assert.equal(ended.rows[0]?.n, 0, 'no session of ours is left idle in a transaction');
    assert.equal(s.c.logs.count(CONNECTION_LOST_IN_USE), 0, 'PostgreSQL had no transaction of ours to end');
    s.kube.clearFaults();
  });

  it('its backends terminated again and again in the middle of a chunked claim', async () => {
    s.c = await startController(s.db.url, s.kube, { CHUNK_ROWS: '10' });
    const from = s.c.logs.lines.length;
    await verifyNew(s.db.pool, 3000);
    await s.c.logs.waitForMsg(CLAIMING_IN_CHUNKS, 10_000, from);
    let killed = 0;
    for (let i = 0; i < 5; i++) {
      killed += await terminateControllerBackends(s.db.pool);
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.ok(killed > 0, 'the test ended at least one of its connections');
    await oneRun(s.db, 'running', 3000);
    assert.equal(s.kube.creates.length, 1);
    assert.ok(s.c.logs.count(/failed; retrying$/) >= 1, 'the failed step was logged and retried');
    assert.ok(s.c.logs.count(CONNECTION_LOST_IN_USE) >= 1, 'the reason the connection ended was logged');
  });

  it('its backends terminated in the middle of a chunked settle', async () => {
    s.c = await startController(s.db.url, s.kube, { CHUNK_ROWS: '10' });
    await verifyNew(s.db.pool, 3000);
    await oneRun(s.db, 'running', 3000);
    const name = s.kube.creates[0]!.name;
    s.kube.setPhase(name, 'complete');
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'succeeded', 'the outcome to be recorded');
    let killed = 0;
    for (let i = 0; i < 5; i++) {
      killed += await terminateControllerBackends(s.db.pool);
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.ok(killed > 0, 'the test ended at least one of its connections');
    await eventually(
      async () =>
        (await s.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM annotations WHERE used_for_training'))
          .rows[0]?.n === 3000,
      'all 3,000 marked used',
      30_000,
    );
    assert.equal(s.kube.creates.length, 1);
  });
});

describe('connections that die: a PostgreSQL restart in the middle of a chunked claim', () => {
  const s = useOwnServer();

  it('the claim goes on after the restart and one Job holds all of it', async () => {
    s.c = await startController(s.db.url, s.kube, { CHUNK_ROWS: '10' });
    const from = s.c.logs.lines.length;
    await verifyNew(s.db.pool, 3000);
    await s.c.logs.waitForMsg(CLAIMING_IN_CHUNKS, 10_000, from);
    await s.server.stop();
    await s.server.start();
    await oneRun(s.db, 'running', 3000, 60_000);
    assert.equal(s.kube.creates.length, 1);
  });
});

// Issue 15: the gauges an operator alerts on are true when scraped, not as of the last (rare) event.
//  - training_controller_pending_annotations: with 10 pending and no recount (the gate sends no NOTIFY below
//    the threshold), `status` said 10 and the gauge 0.
//  - the LISTEN connection: the last notification grows old on a healthy service (the gate makes notifications
//    rare); listener_connected and listener_last_alive_timestamp_seconds are about the subscription.
// Issue 22: times are exported as `*_timestamp_seconds` (Prometheus' convention); the age is `time() - x` in the
// query, and `age()` here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../src/core/paths.js';
import pg from 'pg';
import { freshDatabase, runRows, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { counterValue, eventually, startController, type Running } from './support/harness.js';
import { TcpProxy } from './support/tcpProxy.js';
import { withoutTrainingName } from './support/metricsScrape.js';

/** Every sample of a scrape, by series as written (`name{labels}`). */
export async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    samples.set(withoutTrainingName(line.slice(0, i)), Number(line.slice(i + 1)));
  }
  return samples;
}

describe('metrics true at scrape time', () => {
  let db: TestDb;
  let kube: FakeKube;
  let proxy: TcpProxy;
  let listenProxy: TcpProxy;
  let c: Running;
  const metric = async (name: string) => (await scrape(c.service.httpPort)).get(name);
  /** Seconds since a `*_timestamp_seconds` gauge's time, as `time() - x` in a query. */
  const age = async (name: string) => Date.now() / 1000 - ((await metric(name)) ?? NaN);

  before(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    // The pool and the LISTEN connection each through a proxy the test can black-hole or cut.
    proxy = await TcpProxy.start(db.url);
    listenProxy = await TcpProxy.start(db.url);
    c = await startController(proxy.via(db.url), kube, {
      LISTEN_DATABASE_URL: listenProxy.via(db.url),
      POLL_INTERVAL_SECONDS: '0',
      LISTEN_CHECK_INTERVAL_MS: '500',
    });
  });
  after(async () => {
    await c?.stop();
    await proxy?.stop();
    await listenProxy?.stop();
    await kube?.stop();
    await db?.drop();
  });

  it('pending_annotations counts at scrape time, without a recount', async () => {
    const recounts = await counterValue(c, 'recounts');
    await verifyNew(db.pool, 10);
    assert.equal(await metric('training_controller_pending_annotations'), 10);
    await verifyNew(db.pool, 7);
    assert.equal(await metric('training_controller_pending_annotations'), 17);
    assert.equal(await counterValue(c, 'recounts'), recounts, 'no recount happened (the gate stayed quiet)');
    assert.equal(kube.creates.length, 0);
  });

  it('pending_annotations keeps its last value when the database does not answer, and /metrics still answers', async () => {
    proxy.blackHole();
    try {
      const started = Date.now();
      assert.equal(await metric('training_controller_pending_annotations'), 17);
      // Without the 1 s bound the scrape waits for the pool (10 s connect, 30 s query): 8 s allows a loaded CI.
      assert.ok(Date.now() - started < 8000, `the scrape took ${Date.now() - started} ms`);
    } finally {
      proxy.clearBlackHole();
    }
  });

  it('LISTEN backend killed (pg_terminate_backend): counted as lost, reconnected, alive again at once', async () => {
    // The black hole above cost the listener a liveness ping: it is up again once the next ping arrives.
    await eventually(async () => (await metric('training_controller_listener_connected')) === 1, 'connected', 40_000);
    // Pings every 0.5 s: one lands after this instant.
    const now = Date.now() / 1000;
    await eventually(
      async () => ((await metric('training_controller_listener_last_alive_timestamp_seconds')) ?? 0) > now,
      'a liveness ping',
      5_000,
    );
    const lost = (await metric('training_controller_listener_lost_total')) ?? NaN;
    const killedAt = Date.now() / 1000;
    const killed = await db.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'training-controller-listen public'",
    );
    assert.equal(killed.rowCount, 1);
    // pg-listen's first reconnect attempt is immediate: down for milliseconds, seen by the counter.
    await eventually(async () => (await metric('training_controller_listener_lost_total')) === lost + 1, 'lost + 1');
    await eventually(async () => (await metric('training_controller_listener_connected')) === 1, 'connected again');
    await eventually(
      async () => ((await metric('training_controller_listener_last_alive_timestamp_seconds')) ?? 0) > killedAt,
      'alive again after the reconnect',
      5_000,
    );
  });

  it('LISTEN unreachable: listener_connected 0 and its last alive time growing old, then 1 once it is back', async () => {
    await listenProxy.cut();
    try {
      await eventually(async () => (await metric('training_controller_listener_connected')) === 0, 'connected 0');
      // Older than three ping intervals (0.5 s): no ping while the LISTEN connection cannot connect.
      await eventually(
        async () => (await age('training_controller_listener_last_alive_timestamp_seconds')) > 1.5,
        'the last alive time to grow old while the LISTEN connection cannot connect',
        5_000,
      );
    } finally {
      await listenProxy.restore();
    }
    await eventually(async () => (await metric('training_controller_listener_connected')) === 1, 'connected 1', 20_000);
    assert.ok((await age('training_controller_listener_last_alive_timestamp_seconds')) < 1.1);
  });

  it('the last notification grows old on a healthy service (why it is no liveness signal)', async () => {
    const since = await age('training_controller_last_notification_timestamp_seconds');
    assert.ok(since > 2, `no notification for ${since} s, though 17 annotations were verified`);
    assert.equal(await metric('training_controller_listener_connected'), 1);
  });

  it('the metrics table of docs/operating.md lists exactly what /metrics exposes, and the default metrics keep their standard names', async () => {
    const readme = readFileSync(join(packageRoot(), 'docs', 'operating.md'), 'utf8');
    const documented = [...readme.matchAll(/^\| `(training_controller_\w+)/gm)].map((m) => m[1]).sort();
    const text = await (await fetch(`http://127.0.0.1:${c.service.httpPort}/metrics`)).text();
    const exposed = [...text.matchAll(/^# TYPE (training_controller_\w+) /gm)].map((m) => m[1]).sort();
    assert.deepEqual(documented, exposed);
    // Issue 22: the default metrics under their standard names, so standard Node.js dashboards find them.
    assert.match(text, /^# TYPE process_resident_memory_bytes gauge/m);
    assert.match(text, /^# TYPE nodejs_heap_size_used_bytes gauge/m);
  });

  it('the API server: cluster_reachable 1 while it answers, 0 once it is down', async () => {
    assert.equal(await metric('training_controller_cluster_reachable'), 1);
    assert.ok((await age('training_controller_cluster_last_answer_timestamp_seconds')) < 3);
    await kube.goDown();
    try {
      await eventually(async () => (await metric('training_controller_cluster_reachable')) === 0, 'reachable 0');
      await eventually(
        async () => (await age('training_controller_cluster_last_answer_timestamp_seconds')) > 1,
        'the last answer to grow old while the API server is down',
        5_000,
      );
    } finally {
      await kube.comeUp();
    }
    await eventually(async () => (await metric('training_controller_cluster_reachable')) === 1, 'reachable 1');
  });
});

// Issue 22, found by review: a run whose outcome was recorded but whose chunked settle a restart interrupted was
// counted by no process (the count came after the last chunk), so `TrainingRunFailed` never fired for it. Now
// the outcome is counted when it commits, and what it trained when the settle completes, wherever that is.
describe('a settle interrupted by a restart is counted once', () => {
  for (const phase of ['complete', 'failed'] as const)
    it(`Job ${phase}: the outcome counted by the process that recorded it, the training by the one that finished`, async () => {
      const db = await freshDatabase();
      const kube = await FakeKube.start();
      const triage = new pg.Client({ connectionString: db.url });
      let first: Running | null = null;
      let second: Running | null = null;
      try {
        first = await startController(db.url, kube, { CHUNK_ROWS: '10' });
        await verifyNew(db.pool, 50);
        const name = (await eventually(() => kube.creates[0], 'the Job'))!.name;
        await eventually(async () => (await runRows(db.pool))[0]?.state === 'running', 'the run running');
        // A Triage transaction holds a row of the third chunk: the settle stops there until the restart.
        await triage.connect();
        await triage.query('BEGIN');
        await triage.query('SELECT id FROM annotations WHERE id = 25 FOR UPDATE');
        kube.setPhase(name, phase);
        const state = phase === 'complete' ? 'succeeded' : 'failed';
        await eventually(
          async () =>
            (await db.pool.query('SELECT 1 FROM training_runs WHERE settle_pending AND state = $1', [state]))
              .rowCount === 1,
          'the outcome recorded, its settle pending',
        );
        assert.equal(await counterValue(first, 'runsFinished', { state }), 1, 'counted when recorded');
        await first.stop();
        await triage.query('ROLLBACK');
        second = await startController(db.url, kube, { CHUNK_ROWS: '10' });
        await eventually(
          async () => (await db.pool.query('SELECT 1 FROM training_runs WHERE NOT settle_pending')).rowCount === 1,
          'the settle finished',
        );
        assert.equal(await counterValue(second, 'runsFinished', { state }), 0, 'not counted twice');
        const trained = phase === 'complete' ? 50 : 0;
        assert.equal(
          (await counterValue(first, 'annotationsTrained')) + (await counterValue(second, 'annotationsTrained')),
          trained,
        );
      } finally {
        await first?.stop();
        await second?.stop();
        await triage.end().catch(() => undefined);
        await kube.stop();
        await db.drop();
      }
    });
});

// Found by review: with two replicas walking one chunked settle, each counted what it trained (40,000 for a
// run of 20,000). Only the process whose chunk completes the settle counts it now.
describe('two replicas settling one chunked run', () => {
  it('count its outcome once and what it trained once', async () => {
    const db = await freshDatabase();
    const kube = await FakeKube.start();
    const env = { TRAINING_THRESHOLD: '3000', CHUNK_ROWS: '50', RECONCILE_INTERVAL_SECONDS: '1' };
    const replicas: Running[] = [];
    try {
      replicas.push(await startController(db.url, kube, env), await startController(db.url, kube, env));
      await verifyNew(db.pool, 3000);
      const name = (await eventually(() => kube.creates[0], 'the Job', 60_000))!.name;
      await eventually(async () => (await runRows(db.pool))[0]?.state === 'running', 'the run running', 60_000);
      kube.setPhase(name, 'complete');
      await eventually(
        async () =>
          (await db.pool.query("SELECT 1 FROM training_runs WHERE state = 'succeeded' AND NOT settle_pending"))
            .rowCount === 1,
        'the settle done',
        60_000,
      );
      // Both replicas idle again: whatever pass was walking the settle has counted by now.
      for (const c of replicas) await c.service.controller.idle();
      const sum = async (name: Parameters<typeof counterValue>[1], labels = {}) =>
        (await counterValue(replicas[0]!, name, labels)) + (await counterValue(replicas[1]!, name, labels));
      assert.equal(await sum('annotationsTrained'), 3000);
      assert.equal(await sum('runsFinished', { state: 'succeeded' }), 1);
    } finally {
      for (const c of replicas) await c.stop();
      await kube.stop();
      await db.drop();
    }
  });
});

// /healthz, /readyz and /metrics of a running controller, and how they move with what happens.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { packageVersion } from '../src/core/paths.js';
import { freshDatabase, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, startController, type Running } from './support/harness.js';
import { TcpProxy } from './support/tcpProxy.js';
import { withoutTrainingName } from './support/metricsScrape.js';

describe('HTTP endpoints', () => {
  let db: TestDb;
  let kube: FakeKube;
  let proxy: TcpProxy;
  let c: Running;
  let base: string;
  const get = async (path: string) => {
    const res = await fetch(base + path);
    return { status: res.status, text: await res.text() };
  };
  const metric = async (name: string, labels = ''): Promise<number> => {
    const { text } = await get('/metrics');
    const line = text
      .split('\n')
      .map(withoutTrainingName)
      .find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
    return line ? Number(line.split(' ').at(-1)) : NaN;
  };

  before(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    proxy = await TcpProxy.start(db.url);
    c = await startController(db.url, kube, { LISTEN_DATABASE_URL: proxy.via(db.url) });
    base = `http://127.0.0.1:${c.service.httpPort}`;
    await eventually(() => c.service.health.cluster?.okAt, 'the cluster to answer once');
  });
  after(async () => {
    await c?.stop();
    await proxy?.stop();
    await kube?.stop();
    await db?.drop();
  });

  it('/healthz answers while the process lives', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, text: 'ok\n' });
  });

  it('/readyz is 200 when listening, recounted and the cluster answered', async () => {
    const r = await get('/readyz');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(JSON.parse(r.text), { ready: true, reasons: [] });
  });

  it('/readyz turns 503 with the reason when the listener is cut, and 200 again once it reconnects', async () => {
    await proxy.cut();
    await eventually(async () => (await get('/readyz')).status === 503, '/readyz to turn 503');
    const r = JSON.parse((await get('/readyz')).text) as { reasons: string[] };
    assert.ok(r.reasons.includes('listener not connected to PostgreSQL'), r.reasons.join('; '));
    assert.equal(await metric('training_controller_listener_connected'), 0);
    await proxy.restore();
    await eventually(async () => (await get('/readyz')).status === 200, '/readyz to recover', 20_000);
    assert.equal(await metric('training_controller_listener_connected'), 1);
    assert.ok((await metric('training_controller_recounts_total', '{cause="reconnect"}')) >= 1);
  });

  it('/readyz says the cluster is unreachable when the API server fails', async () => {
    await kube.goDown();
    try {
      c.service.controller.requestReconcile();
      await eventually(
        async () => (await get('/readyz')).text.includes('cluster unreachable'),
        '/readyz to name the cluster',
        10_000,
      );
      assert.equal((await get('/readyz')).status, 503);
    } finally {
      await kube.comeUp();
    }
    c.service.controller.requestReconcile();
    await eventually(async () => (await get('/readyz')).status === 200, '/readyz to recover', 10_000);
  });

  it('/metrics has every labelled counter series from the start, at 0 (an alert on increase() sees the first one)', async () => {
    const lines = (await get('/metrics')).text.split('\n').map(withoutTrainingName);
    for (const series of [
      'training_controller_runs_finished_total{state="failed"} 0',
      'training_controller_runs_finished_total{state="lost"} 0',
      'training_controller_dispatch_skips_total{reason="backoff"} 0',
      'training_controller_recounts_total{cause="claim-race"} 0',
    ]) {
      assert.ok(lines.includes(series), series);
    }
  });

  it('/metrics moves as annotations are verified, a run starts and finishes', async () => {
    assert.equal(await metric('training_controller_threshold'), 50);
    assert.equal(await metric('training_controller_last_success_timestamp_seconds'), 0, 'no run succeeded yet');
    const notificationsBefore = await metric('training_controller_notifications_total');
    await verifyNew(db.pool, 50);
    await eventually(() => kube.creates.length === 1, 'the Job');
    await eventually(async () => (await metric('training_controller_dispatches_total')) === 1, 'the dispatch counter');
    assert.ok((await metric('training_controller_notifications_total')) > notificationsBefore);
    assert.ok((await metric('training_controller_recounts_total', '{cause="notification"}')) >= 1);
    assert.equal(await metric('training_controller_job_create_seconds_count'), 1);
    assert.ok(Date.now() / 1000 - (await metric('training_controller_last_notification_timestamp_seconds')) < 5);
    await verifyNew(db.pool, 50);
    await eventually(
      async () => (await metric('training_controller_dispatch_skips_total', '{reason="in-progress"}')) >= 1,
      'an in-progress skip',
    );
    kube.setPhase(kube.creates[0]!.name, 'complete');
    await eventually(
      async () => (await metric('training_controller_runs_finished_total', '{state="succeeded"}')) === 1,
      'the finished run',
    );
    // Issue 22: what a dashboard shows of finished runs.
    assert.equal(await metric('training_controller_run_duration_seconds_count', '{state="succeeded"}'), 1);
    assert.equal(await metric('training_controller_run_duration_seconds_count', '{state="failed"}'), 0);
    assert.equal(await metric('training_controller_annotations_trained_total'), 50);
    const lastSuccess = await metric('training_controller_last_success_timestamp_seconds');
    assert.ok(Math.abs(Date.now() / 1000 - lastSuccess) < 10, `last success at ${lastSuccess}`);
    assert.equal(await metric('training_controller_build_info', `{version="${packageVersion()}"}`), 1);
    const { text } = await get('/metrics');
    assert.match(
      text,
      /^process_resident_memory_bytes\{training_name="sentinel-training"\} \d+/m,
      'default metrics, unprefixed',
    );
    assert.match(text, /^training_controller_pending_annotations\{training_name="sentinel-training"\} \d+/m);
  });

  it('answers 404 elsewhere and 405 to writes', async () => {
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await fetch(`${base}/readyz`, { method: 'POST' })).status, 405);
  });
});

// A run from claim to settlement, and every way it can go wrong on the way.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { IN_PROGRESS } from '../src/core/decide.js';
import { DEFAULT_INSTANCE, jobName } from '../src/core/instance.js';
import { LISTENING } from '../src/main.js';
import { ADOPTED } from '../src/loop/submit.js';
import { freshDatabase, invariantViolations, runRows, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, nextRecount, recountNow, startController, useEachRun } from './support/harness.js';
import { spawnCli } from './support/child.js';

const runs = (db: TestDb) => runRows(db.pool);

const stateOf = async (db: TestDb, id: number) =>
  (await db.pool.query('SELECT state FROM training_runs WHERE id = $1', [id])).rows[0]?.state as string | undefined;

describe('run lifecycle', () => {
  const s = useEachRun();

  it('success marks exactly the claimed annotations used, and the leftovers start the next run at the threshold', async () => {
    s.c = await startController(s.db.url, s.kube);
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.creates.length === 1, 'the first Job');
    await verifyNew(s.db.pool, 30); // verified during training: not part of this run
    s.kube.setPhase(s.kube.creates[0]!.name, 'running');
    s.kube.setPhase(s.kube.creates[0]!.name, 'complete');
    // The outcome is recorded first; the annotations are marked used after it, chunk by chunk (chunks.ts).
    const succeeded = await s.c.logs.waitForMsg('Training run succeeded: 50 annotations marked used');
    assert.equal((await runs(s.db))[0]?.state, 'succeeded');
    const used = await s.db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE used_for_training');
    assert.equal(used.rows[0].n, 50);
    // The end of a run asks for a recount: it sees the leftovers, and they are too few.
    const after = await nextRecount(s.c, s.c.logs.lines.indexOf(succeeded));
    assert.equal(after.pending, 30);
    assert.equal(s.kube.creates.length, 1, '30 leftovers are below the threshold');
    await verifyNew(s.db.pool, 20);
    await eventually(() => s.kube.creates.length === 2, 'the second Job at 30 + 20');
    await eventually(async () => (await runs(s.db))[1]?.state === 'running', 'the second run to be running');
    assert.deepEqual(
      (await runs(s.db)).map((r) => [r.state, r.annotation_count]),
      [
        ['succeeded', 50],
        ['running', 50],
      ],
    );
  });

  it('failure releases the annotations and the retry waits for the back-off', async () => {
    s.c = await startController(s.db.url, s.kube, { RETRY_BACKOFF_SECONDS: '2' });
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.creates.length === 1, 'the first Job');
    s.kube.setPhase(s.kube.creates[0]!.name, 'failed');
    const failedAt = Date.now();
    await eventually(async () => (await runs(s.db))[0]?.state === 'failed', 'the run to fail');
    await s.c.logs.waitForMsg('Training run failed: 50 annotations released');
    assert.match((await runs(s.db))[0]?.reason ?? '', /BackoffLimitExceeded/);
    const released = await s.db.pool.query(
      'SELECT count(*)::int AS n FROM annotations WHERE training_run_id IS NULL AND NOT used_for_training',
    );
    assert.equal(released.rows[0].n, 50);
    await s.c.logs.waitForMsg(/backing off after failed runs: next run in \d s/);
    await eventually(() => s.kube.creates.length === 2, 'the retry after the back-off', 10_000);
    const waited = Date.now() - failedAt;
    await eventually(async () => (await runs(s.db))[1]?.state === 'running', 'the retry to be running');
    assert.ok(waited >= 1500, `retried after ${waited} ms, before the 2 s back-off`);
    assert.deepEqual(
      (await runs(s.db)).map((r) => r.state),
      ['failed', 'running'],
    );
  });

  it('a Job deleted before it finished leaves the run lost and its annotations released', async () => {
    s.c = await startController(s.db.url, s.kube, { RETRY_BACKOFF_SECONDS: '60' });
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.creates.length === 1, 'the Job');
    s.kube.deleteJob(s.kube.creates[0]!.name);
    await eventually(async () => (await runs(s.db))[0]?.state === 'lost', 'the run to be lost');
    assert.match((await runs(s.db))[0]?.reason ?? '', /deleted before it finished/);
    const pending = await s.db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE training_run_id IS NULL');
    assert.equal(pending.rows[0].n, 50);
  });

  it('notices a finished Job through the watch alone, also after the watch expired (410) and listed again', async () => {
    s.c = await startController(s.db.url, s.kube, { RECONCILE_INTERVAL_SECONDS: '3600' }); // no periodic pass to help
    await verifyNew(s.db.pool, 50);
    await eventually(async () => (await runs(s.db))[0]?.state === 'running', 'the run to be running');
    const lists = s.kube.requests.filter((r) => r.verb === 'list').length;
    s.kube.expireWatches();
    await eventually(
      () => s.kube.requests.filter((r) => r.verb === 'list').length > lists,
      'a new list after 410 Expired',
    );
    // The completion must come through the new watch, opened from the list's resourceVersion.
    await eventually(() => s.kube.openWatches() === 1, 'the watch to be open again');
    s.kube.setPhase(s.kube.creates[0]!.name, 'complete');
    await eventually(
      async () => (await runs(s.db))[0]?.state === 'succeeded',
      'the run to succeed through the watch',
      5000,
    );
  });

  it('a create that gets 500 twice then 201 ends running with one Job', async () => {
    s.kube.inject({ verb: 'create', status: 500, times: 2 });
    s.c = await startController(s.db.url, s.kube, { KUBE_REQUEST_TIMEOUT_MS: '500' });
    await verifyNew(s.db.pool, 50);
    await eventually(async () => (await runs(s.db))[0]?.state === 'running', 'the run to be running', 15_000);
    assert.equal(s.kube.jobs.size, 1);
    assert.equal(s.kube.requests.filter((r) => r.verb === 'create').length, 3);
    const [run] = await runs(s.db);
    assert.equal(
      s.kube.creates[0]?.name,
      (await s.db.pool.query('SELECT job_name FROM training_runs')).rows[0].job_name,
      'the same name each time',
    );
    assert.equal(run?.annotation_count, 50);
  });

  it('a create slower than the timeout is retried under the same name, and the Job it created is adopted', async () => {
    // The server creates the Job 400 ms in, after the client gave up at 300 ms and before its retry
    // (lease: timeout + 250 ms): the retry gets 409 for a Job carrying its own run id.
    s.c = await startController(s.db.url, s.kube, { KUBE_REQUEST_TIMEOUT_MS: '300' });
    s.kube.inject({ verb: 'create', delayMs: 400 });
    await verifyNew(s.db.pool, 50);
    const failed = await s.c.logs.waitForMsg('Job create failed, will retry the same name');
    assert.match(String(failed.err), /timed out/);
    await s.c.logs.waitForMsg(ADOPTED, 10_000);
    assert.deepEqual(
      (await runs(s.db)).map((r) => r.state),
      ['running'],
    );
    assert.equal(s.kube.jobs.size, 1);
  });

  it('a 422 fails the run, releases its annotations and logs the API server message', async () => {
    s.c = await startController(s.db.url, s.kube, { RETRY_BACKOFF_SECONDS: '60' });
    s.kube.inject({ verb: 'create', status: 422 });
    await verifyNew(s.db.pool, 50);
    const line = await s.c.logs.waitForMsg('Job rejected by the API server; run failed, annotations released');
    assert.match(String(line.err), /HTTP 422 Invalid/);
    assert.deepEqual(
      (await runs(s.db)).map((r) => r.state),
      ['failed'],
    );
    assert.equal(s.kube.jobs.size, 0);
  });

  it('a 403 (RBAC) fails the run with the forbidden message', async () => {
    s.c = await startController(s.db.url, s.kube, { RETRY_BACKOFF_SECONDS: '60' });
    s.kube.inject({ verb: 'create', status: 403 });
    await verifyNew(s.db.pool, 50);
    await eventually(async () => (await runs(s.db))[0]?.state === 'failed', 'the run to fail');
    assert.match(
      (await runs(s.db))[0]?.reason ?? '',
      /forbidden: User "system:serviceaccount:default:training-controller" cannot create/,
    );
  });

  it("a name taken by another run's Job is a collision, not a success: the run is renamed", async () => {
    s.c = await startController(s.db.url, s.kube);
    // Somebody else's Jobs with the names our next run can get (one-second resolution).
    const now = Date.now();
    for (const offset of [0, 1, 2]) {
      s.kube.seed({
        metadata: {
          name: jobName(DEFAULT_INSTANCE, new Date(now + offset * 1000)),
          labels: { 'sentinel-training/run-id': '999' },
        },
        spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'x', image: 'x' }] } } },
      });
    }
    await verifyNew(s.db.pool, 50);
    await eventually(async () => (await runs(s.db))[0]?.state === 'running', 'the run to be running');
    const name = (await s.db.pool.query('SELECT job_name FROM training_runs')).rows[0].job_name as string;
    assert.match(name, /^sentinel-training-\d{8}-\d{6}-2$/);
    assert.equal(
      s.kube.jobs.get(`default/${name}`)?.metadata?.labels?.['sentinel-training/run-id'],
      String((await runs(s.db))[0]?.id),
    );
  });

  it('an unfinished app=sentinel-training Job of no run counts as in progress until it finishes', async () => {
    const foreign = s.kube.seed({
      metadata: { name: 'hand-made-training', labels: { app: 'sentinel-training' } },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'x', image: 'x' }] } } },
    });
    s.c = await startController(s.db.url, s.kube);
    await verifyNew(s.db.pool, 50);
    await s.c.logs.waitForMsg(IN_PROGRESS);
    // Asked again with everything visible: the hand-made Job still holds it back.
    assert.equal((await recountNow(s.c)).pending, 50);
    assert.equal(s.kube.creates.length, 0);
    s.kube.setPhase(foreign.metadata!.name!, 'complete');
    await eventually(() => s.kube.creates.length === 1, 'our Job once the hand-made one finished', 10_000);
  });
});

describe('crash between the claim and the create', () => {
  let db: TestDb;
  let kube: FakeKube;
  after(async () => {
    assert.deepEqual(await invariantViolations(db.pool), []);
    await kube.stop();
    await db.drop();
  });

  it('SIGKILL after the claim, then a restart: exactly one Job, nothing left claimed by a dead run', async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    // The first create hangs (and then fails), so the first process dies with the claim committed and no Job.
    kube.inject({ verb: 'create', delayMs: 4000, status: 503 });
    const env = { DATABASE_URL: db.url, KUBECONFIG: kube.kubeconfigPath, KUBE_REQUEST_TIMEOUT_MS: '1000' };
    const first = spawnCli(['run'], env);
    await first.logs.waitForMsg(LISTENING);
    await verifyNew(db.pool, 50);
    await first.logs.waitForMsg('Triggering training with 50 new images');
    first.proc.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    const open = (await db.pool.query('SELECT id::int, state FROM training_runs')).rows;
    assert.deepEqual(
      open.map((r) => r.state),
      ['submitting'],
    );
    assert.equal(kube.jobs.size, 0);

    const second = spawnCli(['run'], env);
    try {
      await eventually(
        async () => (await stateOf(db, open[0].id)) === 'running',
        'the restarted controller to create the Job',
        15_000,
      );
      assert.equal(kube.jobs.size, 1);
      assert.equal([...kube.jobs.values()][0]?.metadata?.labels?.['sentinel-training/run-id'], String(open[0].id));
      const claimed = await db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE training_run_id = $1', [
        open[0].id,
      ]);
      assert.equal(claimed.rows[0].n, 50);
    } finally {
      second.proc.kill('SIGTERM');
      assert.equal((await second.exited).code, 0);
    }
  });
});

// Issue #9: the loop must never go quiet with work pending. Each case is a way it once did: a count gone stale
// before the claim, a wait for writers that ignored the later ones, a skewed clock stretching the back-off,
// retries multiplying during an outage, and a listener left behind by every watch renewal.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setImmediate, setTimeout } from 'node:timers/promises';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { createJobsApi } from '../src/kube/jobs.js';
import { buildJob, defaultTemplate } from '../src/kube/jobTemplate.js';
import { DEFAULT_INSTANCE } from '../src/core/instance.js';
import { loadClusterConfig } from '../src/kube/clusterConfig.js';
import { RECONNECTED } from '../src/loop/listener.js';
import { realTimers, type Timers } from '../src/core/timers.js';
import { verifyNew } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { FakeTimers } from './support/fakeTimers.js';
import {
  counterValue,
  eventually,
  killListener,
  nextRecount,
  sleep,
  startController,
  useInfra,
  useStack,
} from './support/harness.js';

const runStates = async (pool: pg.Pool) =>
  (await pool.query<{ state: string }>('SELECT state FROM training_runs ORDER BY id')).rows.map((r) => r.state);

describe('no stall: a row un-verified between the recount and the claim', () => {
  // No periodic reconcile: its list must not take the delayed answer meant for the dispatch.
  const s = useStack({ POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: '50', RECONCILE_INTERVAL_SECONDS: '3600' });

  it('recounts after the claim found fewer, so the next verification still starts the run', async () => {
    // Issue #9 case 5: the claim race left the gate published from the stale count ("never").
    // The Job watch is open, so its first list is done: the delayed list below is the dispatch's.
    await eventually(() => s.kube.openWatches() === 1, 'the Job watch');
    const skipsBefore = await counterValue(s.c, 'skips', { reason: 'below-threshold' });
    // The dispatch lists Jobs between the recount and the claim (before its transaction: issue 24): the
    // test holds that answer until the row is un-verified, so the window is open whatever the machine's load.
    let release: () => void = () => undefined;
    s.kube.inject({ verb: 'list', until: new Promise<void>((resolve) => (release = resolve)) });
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.pendingFaults() === 0, "the dispatch's list to be in flight", 5000, 5);
    await s.db.pool.query(
      'UPDATE annotations SET verified = false WHERE id = (SELECT min(id) FROM annotations WHERE verified)',
    );
    release();
    await eventually(
      async () => (await counterValue(s.c, 'skips', { reason: 'below-threshold' })) > skipsBefore,
      'the claim to find 49 and roll back',
      5000,
    );
    await s.c.service.controller.idle();
    assert.equal(s.kube.creates.length, 0, '49 claimed: no Job');
    assert.equal(s.kube.pendingFaults(), 0, "the delayed list was the dispatch's");

    await verifyNew(s.db.pool, 1);
    await eventually(() => s.kube.creates.length === 1, 'the Job for the 50th pending (the poll is off)', 5000);
    assert.equal(s.c.logs.count(/^Only 49 pending at claim time/), 1);
  });
});

describe('no stall: a verifying transaction awaited beside a long unrelated writer', () => {
  const s = useStack({ POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: '50' });

  it('recounts when the verifier commits, while a relabelling transaction stays open', async () => {
    // Issue #9 case 6: the wait for writers covered only the first writers it saw, so one long writer hid the rest.
    await s.c.service.controller.idle();
    const { rows } = await s.db.pool.query<{ id: string }>(
      'INSERT INTO annotations (verified) VALUES (false) RETURNING id',
    );
    const relabel = new pg.Client({ connectionString: s.db.url });
    const b = new pg.Client({ connectionString: s.db.url });
    await relabel.connect();
    await b.connect();
    try {
      // A long writer on annotations that verifies nothing (its row is not pending, so the claim never waits on it).
      await relabel.query('BEGIN');
      await relabel.query("UPDATE annotations SET label = 'x' WHERE id = $1", [rows[0]!.id]);

      // A recount sees it (the one after a reconnect of the LISTEN connection), and starts waiting for it.
      const reconnected = s.c.logs.lines.length;
      assert.equal(await killListener(s.db.pool), 1);
      await s.c.logs.waitForMsg(RECONNECTED, 10_000, reconnected);
      await s.c.service.controller.idle();

      // B verifies a row with a gate number below the target and stays open; 49 more commit, the last one
      // notifies, and its recount sees 49 (B invisible) with two writers: the relabel and B.
      const notified = await counterValue(s.c, 'notifications');
      await b.query('BEGIN');
      await b.query('INSERT INTO annotations (verified) VALUES (true)');
      const from = s.c.logs.lines.length;
      await verifyNew(s.db.pool, 49);
      await eventually(async () => (await counterValue(s.c, 'notifications')) > notified, 'the gate notification');
      const recount = await nextRecount(s.c, from, 'notification');
      assert.deepEqual([recount.pending, recount.writers], [49, 2], 'B invisible, and two writers to wait for');
      assert.equal(s.kube.creates.length, 0, 'only 49 visible: no Job yet');

      // B commits: its gate number was below every target, so it sends nothing. The wait must notice it ended.
      await b.query('COMMIT');
      await eventually(() => s.kube.creates.length === 1, 'the Job for the 50th, with the relabel still open', 5000);
      assert.equal(
        (await relabel.query('SELECT txid_current_if_assigned() IS NOT NULL AS open')).rows[0].open,
        true,
        'the relabel was open throughout',
      );
    } finally {
      await b.query('ROLLBACK').catch(() => undefined);
      await relabel.query('ROLLBACK').catch(() => undefined);
      await b.end();
      await relabel.end();
    }
  });
});

describe('no stall: the controller clock 10 minutes behind the database', () => {
  const s = useInfra();

  it('retries a failed run after the 1 s back-off, not 10 minutes later', async () => {
    // Issue #9 case 7: the back-off end, a database time, was compared with the local clock.
    const skewed: Timers = { ...realTimers, now: () => Date.now() - 600_000 };
    const { service } = await startController(
      s.db.url,
      s.kube,
      { POLL_INTERVAL_SECONDS: '0', RETRY_BACKOFF_SECONDS: '1' },
      skewed,
    );
    try {
      await verifyNew(s.db.pool, 50);
      await eventually(() => s.kube.creates.length === 1, 'the first Job');
      s.kube.setPhase(s.kube.creates[0]!.name, 'failed');
      await eventually(async () => (await runStates(s.db.pool))[0] === 'failed', 'the run to fail');
      const failedAt = Date.now();
      await eventually(() => s.kube.creates.length === 2, 'the retry Job after the 1 s back-off', 5000);
      assert.ok(Date.now() - failedAt < 5000);
    } finally {
      await service.stop();
    }
  });
});

/**
 * Runs `clock` at `speed` times real time for `fakeMs`. Work (a reconcile, an HTTP answer) takes fake time
 * as it takes real time, so the timers it sets land between the ticks of the intervals, as in production.
 */
async function runClock(
  clock: FakeTimers,
  speed: number,
  fakeMs: number,
  onAdvance: (elapsedMs: number) => void,
): Promise<void> {
  const realStart = performance.now();
  const fakeStart = clock.t;
  for (let elapsed = 0; elapsed < fakeMs; ) {
    // Here the pause is the point: real time must pass for the work in flight to take its share of fake time.
    // 2 ms a tick at speed 20 is 40 fake ms, well under the 1 s reconcile interval the test counts.
    await sleep(2);
    elapsed = Math.min(fakeMs, Math.round((performance.now() - realStart) * speed));
    clock.advance(fakeStart + elapsed - clock.t);
    onAdvance(elapsed);
  }
}

describe('no stall: an API server answering 500 to every list', () => {
  const s = useInfra();

  it('keeps one retry pending, so the request rate does not grow while the outage lasts', async (t) => {
    // Issue #9 case 8: every failing reconcile tick started its own retry chain (1.1/s growing to 2.3/s in 45 s).
    s.kube.inject({ verb: 'list', status: 500, times: 100_000 });
    const clock = new FakeTimers();
    clock.t = Date.now();
    const { service } = await startController(s.db.url, s.kube, { RECONCILE_INTERVAL_SECONDS: '1' }, clock);
    const lists = () => s.kube.requests.filter((r) => r.verb === 'list').length;
    const at: Record<number, number> = { 0: lists() };
    try {
      await runClock(clock, 20, 80_000, (elapsed) => {
        for (const mark of [20_000, 60_000, 80_000]) if (elapsed >= mark) at[mark] ??= lists();
      });
      await service.controller.idle();
      const early = at[20_000]! - at[0]!;
      const late = at[80_000]! - at[60_000]!;
      t.diagnostic(`list requests: ${early} in fake seconds 0-20, ${late} in 60-80; ${clock.pending} timers pending`);
      assert.ok(early >= 15, `the reconcile ticked about once a fake second (${early} lists in 0-20 s)`);
      assert.ok(late <= early + 3, `${late} lists in fake seconds 60-80, ${early} in 0-20: the retries multiplied`);
      assert.ok(clock.pending <= 6, `${clock.pending} timers pending after 80 s of outage`);
    } finally {
      s.kube.clearFaults();
      await service.stop();
    }
  });
});

describe('no stall: watch renewals', () => {
  let kube: FakeKube;
  before(async () => (kube = await FakeKube.start()));
  after(async () => kube.stop());

  it('50 watches opened and aborted leave no listener behind (no MaxListenersExceededWarning)', async () => {
    // Issue #9 case 9: each watch added an abort listener to the Jobs API's long-lived signal and never removed it.
    const jobs = createJobsApi(loadClusterConfig(kube.kubeconfigPath, '', '')!, 2000, DEFAULT_INSTANCE);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 50; i++) {
        const h = await jobs.watch('default', 'app=sentinel-training', '', () => undefined);
        h.abort();
        await h.done;
      }
      await setImmediate(); // process.emitWarning emits on process.nextTick, which runs before setImmediate
    } finally {
      process.off('warning', onWarning);
      jobs.close();
    }
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    );
  });
});

// Found while chasing a flaky test: on Node 20 a timeout signal inside AbortSignal.any() can be garbage-collected
// before it fires (nodejs/node#57736), and a request to an API server that never answers then hangs forever.
describe('no stall: a Kubernetes request times out even when the garbage collector runs meanwhile', () => {
  let kube: FakeKube;
  before(async () => (kube = await FakeKube.start()));
  after(async () => kube.stop());

  it('a create the server holds fails as timed out after KUBE_REQUEST_TIMEOUT_MS', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let release: () => void = () => undefined;
    kube.inject({ verb: 'create', until: new Promise<void>((r) => (release = r)), times: 1 });
    const jobs = createJobsApi(loadClusterConfig(kube.kubeconfigPath, '', '')!, 300, DEFAULT_INSTANCE);
    try {
      const started = performance.now();
      const job = buildJob(
        defaultTemplate('alpine', 600),
        { name: 'sentinel-training-20260101-000000', namespace: 'default', runId: 1, annotationCount: 1 },
        DEFAULT_INSTANCE,
      );
      const creating = jobs.create(job).then(
        () => 'created',
        (err: unknown) => String(err),
      );
      for (let i = 0; i < 10; i++) {
        gc();
        await setTimeout(50);
      }
      const outcome = await Promise.race([creating, setTimeout(3000, 'still waiting after 3 s', { ref: false })]);
      assert.match(outcome, /create Job default\/sentinel-training-20260101-000000: timed out/);
      assert.ok(performance.now() - started < 3000);
    } finally {
      release();
      jobs.close();
    }
  });
});

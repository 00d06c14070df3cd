// The max wait (issue #11): a trickle below the threshold still trains, TRAINING_MAX_WAIT_SECONDS after the
// service first saw it pending, once TRAINING_MIN_BATCH are. The instant lives in the database (restarts keep
// it), the gate tells the service of the first pending verification (not one NOTIFY per row), a pause holds it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pause, resume } from '../src/db/control.js';
import { tables } from '../src/db/tables.js';
import { LISTENING } from '../src/main.js';
import { RECOUNTED } from '../src/loop/recountStep.js';
import { spawnCli } from './support/child.js';
import { verifyNew, type TestDb } from './support/db.js';
import { counterValue, eventually, startController, useEachRun } from './support/harness.js';

const t = tables('public');

const pendingSince = async (db: TestDb): Promise<Date | null> =>
  (await db.pool.query('SELECT pending_since FROM training_control')).rows[0].pending_since;

describe('max wait', () => {
  const s = useEachRun();

  it('starts a run below the threshold once the wait is over and TRAINING_MIN_BATCH are pending, one NOTIFY to start the clock', async () => {
    s.c = await startController(s.db.url, s.kube, {
      TRAINING_MAX_WAIT_SECONDS: '2',
      TRAINING_MIN_BATCH: '3',
      POLL_INTERVAL_SECONDS: '0',
    });
    await verifyNew(s.db.pool, 1);
    await eventually(() => pendingSince(s.db), 'the clock to start at the first pending verification');
    await s.c.service.controller.idle();
    await verifyNew(s.db.pool, 1); // the clock runs: the second is below every target, and says nothing
    await eventually(async () => (await counterValue(s.c!, 'recounts', { cause: 'max-wait' })) >= 1, 'the max wait');
    await s.c.service.controller.idle();
    assert.equal(s.kube.creates.length, 0, '2 pending, below TRAINING_MIN_BATCH=3: no run yet');
    assert.equal(await counterValue(s.c, 'notifications'), 1, 'one NOTIFY (the first pending), not one per row');

    await verifyNew(s.db.pool, 1); // the third: the gate now wakes the service at TRAINING_MIN_BATCH
    await eventually(() => s.kube.creates.length === 1, 'the max-wait run', 5_000);
    const run = (await s.db.pool.query('SELECT annotation_count, trigger_kind, trigger_reason FROM training_runs'))
      .rows[0];
    assert.deepEqual([run.annotation_count, run.trigger_kind], [3, 'max-wait']);
    assert.match(run.trigger_reason, /^3 pending since \S+, below the threshold of 50$/);
    assert.equal(await pendingSince(s.db), null, 'the run took them all: the clock stopped');
  });

  it('counts from when the service first saw a pending annotation, across a restart', async () => {
    const env = { TRAINING_MAX_WAIT_SECONDS: '4', POLL_INTERVAL_SECONDS: '0' };
    s.c = await startController(s.db.url, s.kube, env);
    await verifyNew(s.db.pool, 1);
    const seen = (await eventually(() => pendingSince(s.db), 'the clock to start')) as Date;
    await new Promise((r) => setTimeout(r, 1_500)); // restart part way through the wait: what is under test
    await s.c.stop();
    s.c = await startController(s.db.url, s.kube, env);
    const restarted = Date.now();
    assert.deepEqual(await pendingSince(s.db), seen, 'a restart keeps the instant');
    await eventually(() => s.kube.creates.length === 1, 'the max-wait run', 10_000);
    const fired = Date.now();
    // Due at seen + 4 s; a clock restarted with the service would fire at restarted + 4 s, ~1.5 s later.
    assert.ok(fired < seen.getTime() + 4_000 + 700, `fired ${fired - seen.getTime()} ms after the first sight`);
    assert.ok(fired < restarted + 4_000 - 700, `fired ${fired - restarted} ms after the restart`);
  });

  it('a pause holds it; resume starts the overdue run', async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_MAX_WAIT_SECONDS: '1', POLL_INTERVAL_SECONDS: '0' });
    await pause(s.db.pool, t, 'test', 'maintenance');
    await s.c.service.controller.idle();
    await verifyNew(s.db.pool, 2);
    // Paused, the gate is silent (nothing could start anyway): the poll's recount is what sees them.
    s.c.service.controller.requestRecount('poll');
    await s.c.service.controller.idle();
    assert.ok(await pendingSince(s.db), 'the clock runs during a pause');
    // The wait overdue without waiting for it: the service reads the instant and now() from the database.
    await s.db.pool.query("UPDATE training_control SET pending_since = pending_since - interval '1 hour'");
    s.c.service.controller.requestRecount('poll');
    await s.c.service.controller.idle();
    assert.equal(s.kube.creates.length, 0, 'paused: the overdue max wait starts nothing');
    await resume(s.db.pool, t);
    await eventually(() => s.kube.creates.length === 1, 'the run after resume', 5_000);
  });

  // Issue 21, item 7: Node replaces a timeout above 2^31−1 ms (24.8 days) with 1 ms, so a 30-day max wait was
  // re-armed every millisecond: ~2,000 recounts and ~8,000 commits per 5 s, and TimeoutOverflowWarning lines
  // on stderr that are not JSON. The service as deployed (its own process): the warning is process-wide.
  it('TRAINING_MAX_WAIT_SECONDS=2592000 (30 days): no recount loop, no TimeoutOverflowWarning', async () => {
    const child = spawnCli(['run'], {
      DATABASE_URL: s.db.url,
      KUBECONFIG: s.kube.kubeconfigPath,
      TRAINING_MAX_WAIT_SECONDS: '2592000',
      // Each poll recount arms the 30-day timer again: two of them span a second of the service's own time.
      POLL_INTERVAL_SECONDS: '1',
    });
    try {
      await child.logs.waitForMsg(LISTENING, 15_000);
      await verifyNew(s.db.pool, 1);
      // The recount that sees it pending arms the 30-day timer (its clock starts then).
      await child.logs.waitFor((l) => l.msg === RECOUNTED && l.pending === 1);
      await eventually(() => pendingSince(s.db), 'the clock to start');
      // What is under test is that nothing fires: the second poll recount after the clock started comes ≥ 1 s
      // after the timer was armed, a span that held ~220 max-wait recounts before the fix.
      const from = child.logs.lines.length;
      await child.logs.waitFor((l) => l.msg === RECOUNTED && l.cause === 'poll', 5_000, from);
      const first = child.logs.lines.length;
      await child.logs.waitFor((l) => l.msg === RECOUNTED && l.cause === 'poll', 5_000, first);
      const maxWait = child.logs.lines.filter((l) => l.msg === RECOUNTED && l.cause === 'max-wait').length;
      assert.equal(maxWait, 0, `${maxWait} max-wait recounts across two polls`);
      assert.deepEqual(child.stderr, [], 'stderr: nothing (a TimeoutOverflowWarning is not a JSON line)');
      assert.equal(s.kube.creates.length, 0);
    } finally {
      child.proc.kill('SIGTERM');
      await child.exited;
    }
  });
});

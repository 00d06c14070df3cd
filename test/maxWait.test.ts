// The max wait (issue #11): a trickle below the threshold still trains, TRAINING_MAX_WAIT_SECONDS after the
// service first saw it pending, once TRAINING_MIN_BATCH are. The instant lives in the database (restarts keep
// it), the gate tells the service of the first pending verification (not one NOTIFY per row), a pause holds it.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pause, resume } from '../src/control.js';
import { tables } from '../src/tables.js';
import { freshDatabase, invariantViolations, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { counterValue, eventually, startController, type Running } from './support/harness.js';

const t = tables('public');

const pendingSince = async (db: TestDb): Promise<Date | null> =>
  (await db.pool.query('SELECT pending_since FROM training_control')).rows[0].pending_since;

describe('max wait', () => {
  let db: TestDb;
  let kube: FakeKube;
  let c: Running | null = null;

  beforeEach(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
  });
  afterEach(async () => {
    await c?.stop();
    c = null;
    assert.deepEqual(await invariantViolations(db.pool), []);
    await kube.stop();
    await db.drop();
  });

  it('starts a run below the threshold once the wait is over and TRAINING_MIN_BATCH are pending, one NOTIFY to start the clock', async () => {
    c = await startController(db.url, kube, {
      TRAINING_MAX_WAIT_SECONDS: '2',
      TRAINING_MIN_BATCH: '3',
      POLL_INTERVAL_SECONDS: '0',
    });
    await verifyNew(db.pool, 1);
    await eventually(() => pendingSince(db), 'the clock to start at the first pending verification');
    await c.service.controller.idle();
    await verifyNew(db.pool, 1); // the clock runs: the second is below every target, and says nothing
    await eventually(async () => (await counterValue(c!, 'recounts', { cause: 'max-wait' })) >= 1, 'the max wait');
    await c.service.controller.idle();
    assert.equal(kube.creates.length, 0, '2 pending, below TRAINING_MIN_BATCH=3: no run yet');
    assert.equal(await counterValue(c, 'notifications'), 1, 'one NOTIFY (the first pending), not one per row');

    await verifyNew(db.pool, 1); // the third: the gate now wakes the service at TRAINING_MIN_BATCH
    await eventually(() => kube.creates.length === 1, 'the max-wait run', 5_000);
    const run = (await db.pool.query('SELECT annotation_count, trigger_kind, trigger_reason FROM training_runs'))
      .rows[0];
    assert.deepEqual([run.annotation_count, run.trigger_kind], [3, 'max-wait']);
    assert.match(run.trigger_reason, /^3 pending since \S+, below the threshold of 50$/);
    assert.equal(await pendingSince(db), null, 'the run took them all: the clock stopped');
  });

  it('counts from when the service first saw a pending annotation, across a restart', async () => {
    const env = { TRAINING_MAX_WAIT_SECONDS: '4', POLL_INTERVAL_SECONDS: '0' };
    c = await startController(db.url, kube, env);
    await verifyNew(db.pool, 1);
    const seen = (await eventually(() => pendingSince(db), 'the clock to start')) as Date;
    await new Promise((r) => setTimeout(r, 1_500)); // restart part way through the wait: what is under test
    await c.stop();
    c = await startController(db.url, kube, env);
    const restarted = Date.now();
    assert.deepEqual(await pendingSince(db), seen, 'a restart keeps the instant');
    await eventually(() => kube.creates.length === 1, 'the max-wait run', 10_000);
    const fired = Date.now();
    // Due at seen + 4 s; a clock restarted with the service would fire at restarted + 4 s, ~1.5 s later.
    assert.ok(fired < seen.getTime() + 4_000 + 700, `fired ${fired - seen.getTime()} ms after the first sight`);
    assert.ok(fired < restarted + 4_000 - 700, `fired ${fired - restarted} ms after the restart`);
  });

  it('a pause holds it; resume starts the overdue run', async () => {
    c = await startController(db.url, kube, { TRAINING_MAX_WAIT_SECONDS: '1', POLL_INTERVAL_SECONDS: '0' });
    await pause(db.pool, t, 'test', 'maintenance');
    await c.service.controller.idle();
    await verifyNew(db.pool, 2);
    // Paused, the gate is silent (nothing could start anyway): the poll's recount is what sees them.
    c.service.controller.requestRecount('poll');
    await c.service.controller.idle();
    assert.ok(await pendingSince(db), 'the clock runs during a pause');
    await new Promise((r) => setTimeout(r, 1_300)); // past the 1 s wait: the thing under test is that nothing fires
    c.service.controller.requestRecount('poll');
    await c.service.controller.idle();
    assert.equal(kube.creates.length, 0, 'paused: the overdue max wait starts nothing');
    await resume(db.pool, t);
    await eventually(() => kube.creates.length === 1, 'the run after resume', 5_000);
  });
});

// The notification gate: verifications notify only when the threshold may have been reached, and the crossing
// is still detected through the gate alone (fallback poll off), including by a transaction that took its gate
// number before a recount and committed after it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, sleep, startController, type Running } from './support/harness.js';

const notifications = async (c: Running) => (await c.service.metrics.notifications.get()).values[0]?.value ?? 0;

async function verifyOneByOne(pool: pg.Pool, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await pool.query('INSERT INTO annotations (verified) VALUES (true)');
}

describe('notification gate', () => {
  let db: TestDb;
  let kube: FakeKube;
  let c: Running;
  before(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    c = await startController(db.url, kube, { POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: '50' });
  });
  after(async () => {
    await c?.stop();
    await kube?.stop();
    await db?.drop();
  });

  it('sends no notification for the 49 verifications that cannot reach the threshold', async () => {
    await verifyOneByOne(db.pool, 49);
    await sleep(300);
    assert.equal(await notifications(c), 0);
    assert.equal(kube.creates.length, 0);
  });

  it('detects the crossing through the gate alone, with the fallback poll off', async () => {
    await verifyOneByOne(db.pool, 1);
    await eventually(() => kube.creates.length === 1, 'the Job for the 50th');
    assert.equal(await notifications(c), 1);
  });

  it('catches a verification that took its gate number before a recount and committed after it', async () => {
    // Finish the first run so the next one can start.
    const [name] = kube.unfinished();
    kube.setPhase(name as string, 'complete');
    await eventually(async () => (await db.pool.query("SELECT 1 FROM training_runs WHERE state = 'succeeded'")).rowCount === 1, 'the first run to succeed');
    await c.service.controller.idle();
    const before = await notifications(c);

    // Transaction A verifies a row (taking the next gate number, below the target) and stays open.
    const a = new pg.Client({ connectionString: db.url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query('INSERT INTO annotations (verified) VALUES (true)');
      // 49 more commit; the last reaches the target and notifies; the recount sees 49 (A is invisible).
      await verifyOneByOne(db.pool, 49);
      await eventually(async () => (await notifications(c)) > before, 'the gate notification');
      await sleep(300);
      await c.service.controller.idle();
      assert.equal(kube.creates.length, 1, 'only 49 visible: no second Job yet');
      // A commits: its own gate number was below every target, so it sends nothing.
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await eventually(() => kube.creates.length === 2, 'the second Job, found by the settle recount', 5000);
  });
});

// The notification gate: verifications notify only when the threshold may have been reached, and the crossing
// is still detected through the gate alone (fallback poll off), including by a transaction that took its gate
// number before a recount and committed after it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import {
  counterValue,
  eventually,
  killListener,
  nextRecount,
  notificationsSent,
  useStack,
  type Running,
} from './support/harness.js';

const notifications = (c: Running) => counterValue(c, 'notifications');

async function verifyOneByOne(pool: pg.Pool, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await pool.query('INSERT INTO annotations (verified) VALUES (true)');
}

describe('notification gate', () => {
  const s = useStack({ POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: '50' });

  it('sends no notification for the 49 verifications that cannot reach the threshold', async () => {
    const sent = await notificationsSent(s.db.url, () => verifyOneByOne(s.db.pool, 49));
    assert.deepEqual(sent, []);
    assert.equal(await notifications(s.c), 0);
    await s.c.service.controller.idle();
    assert.equal(s.kube.creates.length, 0);
  });

  it('detects the crossing through the gate alone, with the fallback poll off', async () => {
    await verifyOneByOne(s.db.pool, 1);
    await eventually(() => s.kube.creates.length === 1, 'the Job for the 50th');
    assert.equal(await notifications(s.c), 1);
  });

  it('catches a verification that took its gate number before a recount and committed after it', async () => {
    // Finish the first run so the next one can start.
    const [name] = s.kube.unfinished();
    s.kube.setPhase(name as string, 'complete');
    await eventually(
      async () => (await s.db.pool.query("SELECT 1 FROM training_runs WHERE state = 'succeeded'")).rowCount === 1,
      'the first run to succeed',
    );
    await s.c.service.controller.idle();
    const before = await notifications(s.c);

    // Transaction A verifies a row (taking the next gate number, below the target) and stays open.
    const a = new pg.Client({ connectionString: s.db.url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query('INSERT INTO annotations (verified) VALUES (true)');
      // 49 more commit; the last reaches the target and notifies; the recount sees 49 (A is invisible).
      const from = s.c.logs.lines.length;
      await verifyOneByOne(s.db.pool, 49);
      await eventually(async () => (await notifications(s.c)) > before, 'the gate notification');
      const recount = await nextRecount(s.c, from, 'notification');
      assert.equal(recount.pending, 49);
      assert.equal(s.kube.creates.length, 1, 'only 49 visible: no second Job yet');
      // A commits: its own gate number was below every target, so it sends nothing.
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    await eventually(() => s.kube.creates.length === 2, 'the second Job, found by the settle recount', 5000);
  });
});

describe('notification gate: a verifying transaction still open at a recount, holding the newest xid', () => {
  const s = useStack({ POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: '50' });

  it('is waited for, so the verification after it still notifies', async () => {
    await verifyOneByOne(s.db.pool, 48);
    await s.c.service.controller.idle();

    // A verifies the 49th (its gate number is below the target, 50) and stays open. No transaction that takes
    // an xid commits after it, so it is at or past the recount snapshot's xmax: PostgreSQL leaves such a
    // transaction out of the snapshot's xip list even though it is in progress.
    const a = new pg.Client({ connectionString: s.db.url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query('INSERT INTO annotations (verified) VALUES (true)');
      // A recount while A is open: the one that follows a reconnect of the LISTEN connection.
      const before = await counterValue(s.c, 'recounts', { cause: 'reconnect' });
      assert.equal(await killListener(s.db.pool), 1);
      await eventually(
        async () => (await counterValue(s.c, 'recounts', { cause: 'reconnect' })) > before,
        'the reconnect recount',
        10_000,
      );
      await s.c.service.controller.idle();
      await a.query('COMMIT');
    } finally {
      await a.end();
    }
    // 49 pending, and the 50th must notify: the recount that saw 48 (A invisible) must not leave the target at 51.
    await verifyOneByOne(s.db.pool, 1);
    await eventually(() => s.kube.creates.length === 1, 'the Job for the 50th', 5000);
  });
});

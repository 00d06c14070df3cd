// The acceptance cases of the original QA guide, end to end: real PostgreSQL, real client-node, the fake
// kube-apiserver over HTTPS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { IN_PROGRESS } from '../src/core/decide.js';
import { DEFAULT_INSTANCE } from '../src/core/instance.js';
import { freshDatabase, invariantViolations, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, recountNow, startController, useStack, type Running } from './support/harness.js';

describe('from verified annotations to exactly one training Job', () => {
  const s = useStack();

  it('does not submit a Job at 49 verified annotations, even when it recounts', async () => {
    await verifyNew(s.db.pool, 49);
    // Whatever the verifications set off is folded into this recount, which sees them all.
    const recount = await recountNow(s.c);
    assert.equal(recount.pending, 49);
    assert.equal(s.kube.creates.length, 0);
    assert.equal(s.c.logs.count(/^Triggering training/), 0);
  });

  it('submits exactly one Job when the 50th is verified, and logs it with 50', async () => {
    await s.db.pool.query('INSERT INTO annotations (verified) VALUES (false)');
    // The 50th verification as the Triage API does it: an UPDATE of an existing, unverified row.
    await s.db.pool.query('UPDATE annotations SET verified = true WHERE NOT verified');
    await eventually(() => s.kube.creates.length === 1, 'one Job create');
    const line = await s.c.logs.waitForMsg('Triggering training with 50 new images');
    assert.equal(line.msg, 'Triggering training with 50 new images');
    const [job] = [...s.kube.jobs.values()];
    assert.ok(job);
    assert.match(job.metadata?.name ?? '', /^sentinel-training-\d{8}-\d{6}$/);
    assert.equal(job.metadata?.labels?.app, 'sentinel-training');
    assert.equal(job.spec?.template.metadata?.labels?.app, 'sentinel-training');
    const runId = job.metadata?.labels?.[DEFAULT_INSTANCE.runIdLabel];
    const env = job.spec?.template.spec?.containers[0]?.env ?? [];
    assert.deepEqual(
      env.filter((e) => e.name.startsWith('TRAINING_')).map((e) => [e.name, e.value]),
      [
        ['TRAINING_RUN_ID', runId],
        ['TRAINING_ANNOTATION_COUNT', '50'],
      ],
    );
    assert.equal(job.spec?.template.spec?.restartPolicy, 'Never');
    assert.equal(job.spec?.ttlSecondsAfterFinished, 3600);
    // The run turns `running` when the create's answer arrives, just after the request reached the server.
    await eventually(
      async () => (await s.db.pool.query("SELECT 1 FROM training_runs WHERE state = 'running'")).rowCount === 1,
      'the run to be running',
    );
    const { rows } = await s.db.pool.query('SELECT state, annotation_count FROM training_runs');
    assert.deepEqual(rows, [{ state: 'running', annotation_count: 50 }]);
    const claimed = await s.db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE training_run_id = $1', [
      Number(runId),
    ]);
    assert.equal(claimed.rows[0].n, 50);
  });

  it('does not submit a second Job for 60 more while the first is active, and says why', async () => {
    const from = s.c.logs.lines.length;
    await verifyNew(s.db.pool, 60);
    await s.c.logs.waitForMsg(IN_PROGRESS, 5000, from);
    // Asked again with all 60 visible (the count stops at the threshold): still the one Job.
    assert.equal((await recountNow(s.c)).pending, 50);
    assert.equal(s.kube.creates.length, 1);
    assert.deepEqual(s.kube.unfinished().length, 1);
    assert.deepEqual(await invariantViolations(s.db.pool), []);
  });
});

describe('three controllers, 300 verifications from 20 concurrent sessions', () => {
  let db: TestDb;
  let kube: FakeKube;
  const controllers: Running[] = [];

  before(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    for (let i = 0; i < 3; i++) controllers.push(await startController(db.url, kube, { TRAINING_THRESHOLD: '50' }));
  });
  after(async () => {
    await Promise.all(controllers.map((c) => c.stop()));
    await kube?.stop();
    await db?.drop();
  });

  it('submits exactly one Job', async () => {
    await db.pool.query('INSERT INTO annotations (verified) SELECT false FROM generate_series(1, 300)');
    const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM annotations ORDER BY id');
    const ids = rows.map((r) => r.id);
    const sessions = Array.from({ length: 20 }, () => new pg.Client({ connectionString: db.url }));
    await Promise.all(sessions.map((s) => s.connect()));
    try {
      await Promise.all(
        sessions.map(async (s, i) => {
          for (let k = i; k < ids.length; k += sessions.length)
            await s.query('UPDATE annotations SET verified = true WHERE id = $1', [ids[k]]);
        }),
      );
    } finally {
      await Promise.all(sessions.map((s) => s.end()));
    }
    await eventually(() => kube.creates.length >= 1, 'a Job create');
    // Each controller in turn looks at everything committed (a recount folds in any it had debounced) and
    // must find the run open: one at a time, so none of these recounts finds another holding the dispatch lock.
    for (const c of controllers) await recountNow(c);
    assert.equal(kube.creates.length, 1);
    assert.equal(kube.jobs.size, 1);
    const runs = await db.pool.query('SELECT state FROM training_runs');
    assert.deepEqual(runs.rows, [{ state: 'running' }]);
    assert.deepEqual(await invariantViolations(db.pool), []);
    const claimed = await db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE training_run_id IS NOT NULL');
    assert.ok(claimed.rows[0].n >= 50, `claimed ${claimed.rows[0].n}`);
  });
});

// Issue 23: two controllers in one namespace, each on its own schema of one database (another model, another
// annotations table). Before TRAINING_NAME both labelled their Jobs app=sentinel-training: the second saw the
// first one's Job as a run in progress and trained nothing until it finished, and either could take the other's
// finalizer off. With a name each, each lists, watches, counts and lets go of its own Jobs only.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IN_PROGRESS } from '../src/core/decide.js';
import { instanceNamed } from '../src/core/instance.js';
import { runCli } from './support/child.js';
import { createRole, readmeGrants } from './support/roles.js';
import { listenSessions } from '../src/db/pool.js';
import { presenceHolders } from '../src/db/presence.js';
import { tables } from '../src/db/tables.js';
import { uninstallRefusal } from '../src/db/uninstall.js';
import { freshDatabase, runRows, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, startController, useEachRun, type Running } from './support/harness.js';

const MODELS = ['ranker', 'detector'] as const;
type Model = (typeof MODELS)[number];

describe('two instances (TRAINING_NAME) in one namespace, on two schemas of one database', () => {
  let db: TestDb;
  let kube: FakeKube;
  const c = {} as Record<Model, Running>;
  const jobOf = (model: Model) => [...kube.jobs.values()].filter((j) => j.metadata?.labels?.app === model);
  const runs = async (model: Model) =>
    (await db.pool.query(`SELECT state, annotation_count FROM ${model}.training_runs ORDER BY id`)).rows;
  const verify = (model: Model, n: number) =>
    db.pool.query(`INSERT INTO ${model}.annotations (verified) SELECT true FROM generate_series(1, $1)`, [n]);

  before(async () => {
    db = await freshDatabase();
    kube = await FakeKube.start();
    for (const model of MODELS) {
      await db.pool.query(`CREATE SCHEMA ${model}`);
      await db.pool.query(
        `CREATE TABLE ${model}.annotations (id bigserial PRIMARY KEY, verified boolean NOT NULL DEFAULT false)`,
      );
      const migrated = await runCli(['migrate'], { DATABASE_URL: db.url, ANNOTATIONS_SCHEMA: model });
      assert.equal(migrated.code, 0, migrated.stderr);
      c[model] = await startController(db.url, kube, {
        TRAINING_NAME: model,
        ANNOTATIONS_SCHEMA: model,
        POLL_INTERVAL_SECONDS: '0',
      });
    }
  });
  after(async () => {
    for (const model of MODELS) await c[model]?.stop();
    await kube?.stop();
    await db?.drop();
  });

  it('each trains its own batch, while the other one is training, under its own names', async () => {
    await verify('ranker', 50);
    await eventually(() => jobOf('ranker').length === 1, "the ranker's Job");
    await verify('detector', 50);
    // Before: the detector saw the ranker's unfinished Job as a run in progress and waited for it.
    await eventually(() => jobOf('detector').length === 1, "the detector's Job, while the ranker's runs");
    assert.equal(kube.creates.length, 2);
    for (const model of MODELS) {
      const [job] = jobOf(model);
      const names = instanceNamed(model);
      assert.match(job?.metadata?.name ?? '', new RegExp(`^${model}-\\d{8}-\\d{6}$`));
      assert.deepEqual(job?.metadata?.finalizers, [names.finalizer]);
      assert.equal(job?.metadata?.labels?.[names.runIdLabel], '1', 'each schema numbers its own runs');
      assert.equal(c[model].logs.count(new RegExp(`^${IN_PROGRESS}`)), 0, `${model} waited for no Job`);
    }
  });

  it("each settles its own run and lets its own Job go, never the other's", async () => {
    const ranker = jobOf('ranker')[0]?.metadata?.name ?? '';
    const detector = jobOf('detector')[0]?.metadata?.name ?? '';
    kube.setPhase(ranker, 'complete');
    await eventually(async () => (await runs('ranker'))[0]?.state === 'succeeded', "the ranker's run succeeded");
    await eventually(() => (jobOf('ranker')[0]?.metadata?.finalizers ?? []).length === 0, "the ranker's finalizer off");
    // Run 1 of the detector is open: its Job keeps its finalizer through the ranker's reconcile passes.
    c.ranker.service.controller.requestReconcile();
    await c.ranker.service.controller.idle();
    assert.deepEqual(jobOf('detector')[0]?.metadata?.finalizers, [instanceNamed('detector').finalizer]);
    assert.deepEqual(await runs('detector'), [{ state: 'running', annotation_count: 50 }]);
    kube.setPhase(detector, 'complete');
    await eventually(async () => (await runs('detector'))[0]?.state === 'succeeded', "the detector's run succeeded");
    assert.deepEqual(await runs('ranker'), [{ state: 'succeeded', annotation_count: 50 }]);
  });

  // Renaming with a run open would judge its Job (labelled with the old name) gone: the run `lost`, its
  // annotations released while the Job still trains them, and trained again by the next run.
  it('refuses to start under another name while a run of the old name is open, in one line', async () => {
    await verify('ranker', 50);
    await eventually(() => jobOf('ranker').length === 2, "the ranker's second Job");
    await eventually(async () => (await runs('ranker'))[1]?.state === 'running', 'its run running');
    await c.ranker.stop();
    await assert.rejects(
      startController(db.url, kube, { TRAINING_NAME: 'ranker-v2', ANNOTATIONS_SCHEMA: 'ranker' }),
      /^StartupError: run #2 \(Job ranker-\d{8}-\d{6}(-\d+)?\) is running under another TRAINING_NAME than "ranker-v2": start the controller with its old name/,
    );
    assert.equal((await runs('ranker'))[1]?.state, 'running', 'the run is left as it was');
    // Found by review: `uninstall` of one schema was refused while the other schema's service ran (its LISTEN
    // connection was taken for this one's). Each is told apart by its application_name now.
    assert.equal((await listenSessions(db.pool, 'ranker')).length, 0, 'no service of ranker connected');
    assert.equal((await listenSessions(db.pool, 'detector')).length, 1, "detector's service connected");
    const refusal = await uninstallRefusal(db.pool, tables('ranker'));
    assert.match(refusal ?? '', /^run 2 \(ranker-/, "refused for ranker's open run, not for detector's service");
  });
});

// Found by review: nothing kept two names off one schema, and a rename right after a cancel whose Job delete the
// API server had not yet accepted left that Job training, its finalizer on, while the new name trained its batch
// again. One schema serves one name; a new name takes over once nothing of the old one is left.
describe('one schema serves one TRAINING_NAME', () => {
  const s = useEachRun();

  it('a second name on a schema whose service runs is refused in one line, and trains nothing', async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' });
    await assert.rejects(
      startController(s.db.url, s.kube, { TRAINING_NAME: 'detector' }),
      /^StartupError: ANNOTATIONS_SCHEMA=public is served by TRAINING_NAME "ranker", still running \(pid \d+\): one schema serves one name/,
    );
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.creates.length === 1, "ranker's Job");
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'running', 'its run running');
    s.kube.setPhase(s.kube.creates[0]!.name, 'complete');
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'succeeded', 'its run succeeded');
    assert.equal(s.kube.creates.length, 1);
  });

  // Found by review: the check looked for the LISTEN connection's application_name, which a URL can set, and
  // two names starting at one instant both passed it. Each service holds a lock on its schema now.
  it('a service whose URL sets its own application_name still keeps a second name off its schema', async () => {
    const url = new URL(s.db.url);
    url.searchParams.set('application_name', 'training-controller');
    s.c = await startController(url.toString(), s.kube, { TRAINING_NAME: 'ranker' });
    await assert.rejects(
      startController(s.db.url, s.kube, { TRAINING_NAME: 'detector' }),
      /^StartupError: ANNOTATIONS_SCHEMA=public is served by TRAINING_NAME "ranker", still running/,
    );
  });

  it('a service whose schema lock is lost (a killed session) takes it again', async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' });
    const [held] = await presenceHolders(s.db.pool, 'public', null);
    assert.ok(held, 'the lock is held');
    await s.db.pool.query('SELECT pg_terminate_backend($1)', [held]);
    await eventually(async () => {
      const now = await presenceHolders(s.db.pool, 'public', null);
      return now.length === 1 && now[0] !== held;
    }, 'the lock taken again by a new session');
    await assert.rejects(
      startController(s.db.url, s.kube, { TRAINING_NAME: 'detector' }),
      /one schema serves one name/,
    );
  });

  // Found by review: a second name that started while the first's connections were down (a database restart)
  // trained the same batch as the first once it was back, and nothing noticed a presence connection gone dead.
  it('a second name that got on while the first was away: neither starts a run until one is stopped', async () => {
    const fast = { LISTEN_CHECK_INTERVAL_MS: '300' };
    const role = await createRole(s.db, readmeGrants);
    s.onCleanup(role.drop);
    s.c = await startController(role.url, s.kube, { ...fast, TRAINING_NAME: 'ranker' });
    // Its role may not log in for a moment, and its sessions end: the lock and the LISTEN connection are gone.
    await s.db.pool.query(`ALTER ROLE ${role.name} NOLOGIN`);
    await s.db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role.name]);
    const detector = await startController(s.db.url, s.kube, { ...fast, TRAINING_NAME: 'detector' });
    s.onCleanup(() => detector.stop());
    await s.db.pool.query(`ALTER ROLE ${role.name} LOGIN`);
    for (const c of [s.c, detector])
      await eventually(() => c.service.health.failing.presence !== undefined, 'the conflict seen by both');
    await verifyNew(s.db.pool, 50);
    for (const c of [s.c, detector])
      await c.logs.waitFor((l) => l.msg === 'Dispatch failed; retrying' && /another TRAINING_NAME/.test(String(l.err)));
    assert.equal(s.kube.creates.length, 0, 'no run while both hold the schema');
    await detector.stop();
    await eventually(() => s.c?.service.health.failing.presence === undefined, 'the conflict cleared');
    await eventually(() => s.kube.creates.length === 1, "ranker's Job, once alone");
    assert.match(s.kube.creates[0]!.name, /^ranker-/);
  });

  it("an open run of another name is not this one's to settle: the reconcile fails, the run is left as it is", async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' });
    await verifyNew(s.db.pool, 50);
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'running', 'the run running');
    // As if a detector had started it while this service was away (the case above, before it was refused).
    await s.db.pool.query("UPDATE training_runs SET job_name = 'detector-20260101-000000'");
    await eventually(
      () => /started under another TRAINING_NAME/.test(s.c?.service.health.failing.reconcile ?? ''),
      'the refusal',
    );
    assert.equal((await runRows(s.db.pool))[0]?.state, 'running', 'not judged lost');
    await s.db.pool.query('UPDATE training_runs SET job_name = $1', [s.kube.creates[0]!.name]);
    await eventually(() => s.c?.service.health.failing.reconcile === undefined, 'the reconcile back');
  });

  it('two names starting at the same instant: never both', async () => {
    const starts = await Promise.allSettled(
      ['ranker', 'detector'].map((name) => startController(s.db.url, s.kube, { TRAINING_NAME: name })),
    );
    const running = starts.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const c of running) await c.stop();
    assert.ok(running.length <= 1, `${running.length} started`);
    for (const r of starts) if (r.status === 'rejected') assert.match(String(r.reason), /one schema serves one name/);
  });

  it('a rename waits until the old name has let its Jobs go, then takes over', async () => {
    s.c = await startController(s.db.url, s.kube);
    await verifyNew(s.db.pool, 50);
    const job = (await eventually(() => s.kube.creates[0], 'the Job'))!.name;
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'running', 'the run running');
    // Paused, so no new run starts under the old name; the cancel is recorded, but the API server does not accept
    // the Job's delete yet (a webhook, an outage).
    const cli = { DATABASE_URL: s.db.url, KUBECONFIG: s.kube.kubeconfigPath };
    assert.equal((await runCli(['pause'], cli)).code, 0);
    s.kube.inject({ verb: 'delete', status: 503, times: 1000 });
    const cancel = await runCli(['cancel'], cli);
    assert.equal(cancel.code, 0, cancel.stderr);
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'cancelled', 'the run cancelled');
    await s.c.stop();
    s.kube.clearFaults();
    await assert.rejects(
      startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' }),
      new RegExp(
        `^StartupError: Job default/${job} of TRAINING_NAME "sentinel-training" still carries its finalizer sentinel-training.io/settle: start the controller as "sentinel-training" until it lets the Job go`,
      ),
    );
    // The old name deletes it and lets it go; then the new name starts and trains the batch once.
    s.c = await startController(s.db.url, s.kube);
    await eventually(() => !s.kube.jobs.has(`default/${job}`), 'the cancelled Job gone');
    await s.c.stop();
    s.c = await startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' });
    assert.equal(s.c.logs.count('TRAINING_NAME changed'), 1);
    assert.equal((await runCli(['resume'], cli)).code, 0);
    await eventually(() => s.kube.creates.length === 2, "ranker's Job");
    assert.match(s.kube.creates[1]!.name, /^ranker-/);
    assert.deepEqual(s.kube.unfinished(), [s.kube.creates[1]!.name]);
  });

  // Found by review: settings published by a version that did not record the name (the first with TRAINING_NAME)
  // were read as sentinel-training, so a rename from ranker passed ranker's Job still holding its finalizer.
  it("a schema that published no name is known by its newest Job's name", async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker' });
    await verifyNew(s.db.pool, 50);
    const job = (await eventually(() => s.kube.creates[0], 'the Job'))!.name;
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'running', 'the run running');
    await s.c.stop();
    await s.db.pool.query("UPDATE training_control SET settings = settings - 'trainingName' WHERE id");
    // The run is open: refused for that, whatever the name it is judged by.
    await assert.rejects(startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker-v2' }), /is running under another/);
    // Ended while the service was away, its Job still holds the finalizer: refused, naming ranker's Job.
    await s.db.pool.query("UPDATE training_runs SET state = 'failed', finished_at = now()");
    await s.db.pool.query('UPDATE annotations SET training_run_id = NULL');
    await assert.rejects(
      startController(s.db.url, s.kube, { TRAINING_NAME: 'ranker-v2' }),
      new RegExp(`^StartupError: Job default/${job} of TRAINING_NAME "ranker" still carries its finalizer`),
    );
  });
});

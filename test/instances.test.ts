// Issue 23: two controllers in one namespace, each on its own schema of one database (another model, another
// annotations table). Before TRAINING_NAME both labelled their Jobs app=sentinel-training: the second saw the
// first one's Job as a run in progress and trained nothing until it finished, and either could take the other's
// finalizer off. With a name each, each lists, watches, counts and lets go of its own Jobs only.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IN_PROGRESS } from '../src/core/decide.js';
import { instanceNamed } from '../src/core/instance.js';
import { runCli } from './support/child.js';
import { freshDatabase, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, startController, type Running } from './support/harness.js';

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
  });
});

// `training-controller uninstall` and migrations/uninstall/*.sql (issue 23): on a database migrated over a
// Triage-shaped table, it leaves the table as it was (its writes work, no trigger, function, sequence, index,
// constraint or table of ours), refuses while a run is open, and `migrate` installs everything again after it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { migrationsDir } from '../src/core/paths.js';
import { missingSchema } from '../src/db/schemaCheck.js';
import { tables } from '../src/db/tables.js';
import { UNINSTALL_FILES } from '../src/db/uninstall.js';
import { runCli } from './support/child.js';
import { freshDatabase, runRows, verifyNew, type TestDb } from './support/db.js';
import { eventually, startController, useEachRun } from './support/harness.js';
import type { FakeKube } from './support/fakeKube.js';
import { instanceNamed } from '../src/core/instance.js';

const exec = promisify(execFile);

const cli = (db: TestDb, ...args: string[]) => runCli(args, { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });

/** Every object in the database that is ours (by name), and the columns of annotations. */
async function ours(db: TestDb): Promise<{ objects: string[]; columns: string[] }> {
  const objects = await db.pool.query<{ name: string }>(`
    SELECT relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND (relname LIKE 'training%' OR relname LIKE 'annotations\\_%')
    UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'training%'
    UNION ALL SELECT conname FROM pg_constraint WHERE conname LIKE 'annotations_training%'
    UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'training%' ORDER BY 1`);
  const columns = await db.pool.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = 'annotations'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
  );
  return { objects: objects.rows.map((r) => r.name), columns: columns.rows.map((r) => r.name) };
}

/** The Triage API's table before our migrations, with a row of its own. */
async function triageDatabase(): Promise<TestDb> {
  const db = await freshDatabase(undefined, { migrate: false });
  await db.pool.query(
    'CREATE TABLE annotations (id bigserial PRIMARY KEY, image_uri text NOT NULL, label text, verified boolean NOT NULL DEFAULT false)',
  );
  await db.pool.query("INSERT INTO annotations (image_uri, verified) VALUES ('s3://a', true)");
  return db;
}

/** A Job of TRAINING_NAME `name` whose run ended while the service was gone: its finalizer is still on it. */
function heldJob(kube: FakeKube, name: string): void {
  const { appLabel, appValue, finalizer, jobPrefix } = instanceNamed(name);
  const job = `${jobPrefix}20260101-000000`;
  kube.jobs.set(`default/${job}`, {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: job,
      namespace: 'default',
      labels: { [appLabel]: appValue },
      finalizers: [finalizer],
      resourceVersion: '1',
    },
    spec: { template: { spec: { containers: [], restartPolicy: 'Never' } } },
  });
}
describe('uninstall', () => {
  it('dry by default; --yes leaves the Triage table as before (its writes work), and migrate installs again', async () => {
    const db = await triageDatabase();
    try {
      const before = await ours(db);
      assert.equal((await cli(db, 'migrate')).code, 0);
      const installed = await ours(db);
      assert.ok(installed.objects.length > 5, String(installed.objects));

      const dry = await cli(db, 'uninstall');
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(
        dry.stdout,
        /^Would remove \(run again with --yes\):\n {2}trigger training_controller_verified_insert/,
      );
      assert.match(dry.stdout, /Keeps: the columns used_for_training and training_run_id/);
      assert.match(dry.stdout, /No Kubernetes configuration: Jobs were not checked/);
      assert.deepEqual(await ours(db), installed, 'the dry run changed nothing');

      const done = await cli(db, 'uninstall', '--yes', '--drop-columns');
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, /^Removed \d+ object\(s\):/);
      assert.deepEqual(await ours(db), before, 'nothing of ours is left');
      // The Triage API's writes: an insert and a verification, with no trigger of ours to call.
      await db.pool.query("INSERT INTO annotations (image_uri, verified) VALUES ('s3://b', true)");
      await db.pool.query("UPDATE annotations SET verified = true, label = 'cat' WHERE image_uri = 's3://a'");

      assert.equal((await cli(db, 'migrate')).code, 0);
      assert.deepEqual(await missingSchema(db.pool, tables('public')), [], 'migrate installs it again');
    } finally {
      await db.drop();
    }
  });

  it('--keep-history keeps training_runs and, without --drop-columns, the columns; psql -f gives the same', async () => {
    const viaCli = await triageDatabase();
    const viaPsql = await triageDatabase();
    try {
      for (const db of [viaCli, viaPsql]) assert.equal((await cli(db, 'migrate')).code, 0);
      assert.equal((await cli(viaCli, 'uninstall', '--yes', '--keep-history')).code, 0);
      // The README's psql form: 001 only (002 is the history, 003 the columns).
      await exec('psql', [
        viaPsql.url,
        '-X',
        '-q',
        '-v',
        'ON_ERROR_STOP=1',
        '-f',
        join(migrationsDir(), 'uninstall', UNINSTALL_FILES[0]),
      ]);
      for (const db of [viaCli, viaPsql]) {
        const left = await ours(db);
        assert.deepEqual(
          left.objects.filter((o) => !o.startsWith('annotations_')), // the Triage table's own key and sequence
          [
            'training_runs',
            'training_runs_finished_at',
            'training_runs_id_seq',
            'training_runs_job_name_key',
            'training_runs_one_open',
            'training_runs_pkey',
          ],
        );
        assert.ok(left.columns.includes('used_for_training') && left.columns.includes('training_run_id'));
      }
    } finally {
      await viaCli.drop();
      await viaPsql.drop();
    }
  });
});

describe('uninstall after runs trained', () => {
  const s = useEachRun();

  it('--yes alone is refused: the history cannot go while the columns that refer to it stay', async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_THRESHOLD: '5' });
    await verifyNew(s.db.pool, 5);
    const job = (await eventually(() => s.kube.creates[0], 'the run'))!;
    s.kube.setPhase(job.name, 'complete');
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'succeeded', 'the settle');
    await s.c.stop();
    s.c = null;
    const plain = await cli(s.db, 'uninstall', '--yes');
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /uninstall refused: choose what happens to the data: --keep-history .* --drop-columns/);
    // Kept history: migrate installs again over the trained rows (their run ids still point at their runs).
    assert.equal((await cli(s.db, 'uninstall', '--yes', '--keep-history')).code, 0);
    const again = await cli(s.db, 'migrate');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await missingSchema(s.db.pool, tables('public')), []);
  });
});

describe('uninstall while a run is open', () => {
  const s = useEachRun();

  it('refuses in one line while the service runs, then while its run is open, and removes nothing', async () => {
    s.c = await startController(s.db.url, s.kube, { TRAINING_THRESHOLD: '5' });
    await verifyNew(s.db.pool, 5);
    await eventually(() => s.kube.creates.length === 1, 'the run');
    const before = await ours(s.db);
    const running = await cli(s.db, 'uninstall', '--yes', '--drop-columns');
    assert.equal(running.code, 1);
    assert.equal(running.stderr.trim().split('\n').length, 1, running.stderr);
    assert.match(
      running.stderr,
      /uninstall refused: a training-controller service is still connected .*scale it to 0 first/,
    );
    await s.c.stop();
    s.c = null;
    const open = await cli(s.db, 'uninstall', '--yes', '--drop-columns');
    assert.equal(open.code, 1);
    assert.match(
      open.stderr,
      /uninstall refused: run 1 \(sentinel-training-\S+\) is running: .*`training-controller cancel`/,
    );
    assert.deepEqual(await ours(s.db), before);
  });

  it('refuses while a Job of ours still carries the finalizer, when a cluster is configured', async () => {
    assert.equal((await cli(s.db, 'migrate')).code, 0);
    // A Job whose run ended while the service was gone: the finalizer is still on it.
    heldJob(s.kube, 'sentinel-training');
    const r = await runCli(['uninstall', '--yes', '--drop-columns'], {
      DATABASE_URL: s.db.url,
      KUBECONFIG: s.kube.kubeconfigPath,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Job default\/sentinel-training-20260101-000000 still carries the finalizer/);
    assert.ok((await ours(s.db)).objects.includes('training_controller_verified_seq'), 'nothing removed');
  });

  // Found in review: a shell without the service's TRAINING_NAME looked for the default name's finalizer only.
  it("checks the finalizer of the name the schema's service last ran under, whatever this shell's is", async () => {
    assert.equal((await cli(s.db, 'migrate')).code, 0);
    await s.db.pool.query(
      `UPDATE training_control SET settings = '{"trainingName": "ranker"}', settings_at = now() WHERE id`,
    );
    heldJob(s.kube, 'ranker');
    const r = await runCli(['uninstall', '--yes', '--drop-columns'], {
      DATABASE_URL: s.db.url,
      KUBECONFIG: s.kube.kubeconfigPath,
    });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /Job default\/ranker-20260101-000000 still carries the finalizer/);
    assert.ok((await ours(s.db)).objects.includes('training_controller_verified_seq'), 'nothing removed');
  });
});

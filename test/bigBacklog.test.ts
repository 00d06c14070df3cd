// Big backlogs (issue #14): claims and settles go chunk by chunk, each chunk its own short transaction, so a
// Triage write never waits on a whole run; a crash between chunks loses nothing, and the Job is created only
// once the claim is complete, with the final count. CHUNK_ROWS is small here so 100 rows make 10 chunks;
// the 1,000,000-row case is in the bench.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { V1Job } from '@kubernetes/client-node';
import pg from 'pg';
import { CLAIMING_IN_CHUNKS } from '../src/loop/dispatcher.js';
import { PENDING } from '../src/db/annotations.js';
import { FINISHING_CLAIM, FINISHING_UNFINISHED } from '../src/loop/reconciler.js';
import { cliPath, spawnCli, type ChildController } from './support/child.js';
import { freshDatabase, invariantViolations, runRows, triageWrite, verifyNew, type TestDb } from './support/db.js';
import { eventually, startController, useInfra } from './support/harness.js';

const exec = promisify(execFile);

const annotationCountOf = (job: V1Job | undefined): string | undefined =>
  job?.spec?.template?.spec?.containers?.[0]?.env?.find((e) => e.name === 'TRAINING_ANNOTATION_COUNT')?.value;

async function run(db: TestDb, id: number): Promise<Record<string, unknown>> {
  const { rows } = await db.pool.query(
    'SELECT state, annotation_count, claim_pending, claim_cursor, settle_pending, settle_cursor, trained_count FROM training_runs WHERE id = $1',
    [id],
  );
  return rows[0] as Record<string, unknown>;
}

async function count(db: TestDb, where: string): Promise<number> {
  return (await db.pool.query(`SELECT count(*)::int AS n FROM annotations WHERE ${where}`)).rows[0].n as number;
}

const relabel = (db: TestDb, id: number) =>
  triageWrite(db.url, "UPDATE annotations SET label = 'relabelled' WHERE id = $1", [id]);

async function status(db: TestDb): Promise<string> {
  return (
    await exec(process.execPath, [cliPath(), 'status'], { env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url } })
  ).stdout;
}

async function stop(c: ChildController, signal: NodeJS.Signals): Promise<void> {
  c.proc.kill(signal);
  await c.exited;
}

describe('a batch larger than one chunk', () => {
  const s = useInfra();

  it('is claimed in chunks, and the Job is given the final count', async () => {
    const { db, kube } = s;
    const c = await startController(db.url, kube, { CHUNK_ROWS: '7' });
    try {
      await verifyNew(db.pool, 53);
      await eventually(() => kube.creates.length === 1, 'the Job');
      assert.equal(annotationCountOf([...kube.jobs.values()][0]), '53');
      assert.equal(c.logs.count(CLAIMING_IN_CHUNKS), 1);
      await eventually(async () => (await runRows(db.pool))[0]?.state === 'running', 'the run to be running');
      assert.equal((await runRows(db.pool))[0]?.annotation_count, 53);
      assert.deepEqual(await invariantViolations(db.pool), []);
    } finally {
      await c.stop();
    }
  });
});

describe('SIGKILL in the middle of a chunked claim, then a restart', () => {
  const s = useInfra();
  let holder: pg.Client;
  before(async () => {
    holder = new pg.Client({ connectionString: s.db.url });
    holder.on('error', () => undefined); // useInfra's after() drops the database (FORCE) first
    await holder.connect();
  });
  after(async () => {
    await holder.end();
  });

  it('finishes the claim it finds half done before it creates the one Job, with every row in it', async () => {
    const { db, kube } = s;
    await verifyNew(db.pool, 100);
    // A trigger of the Triage API's that waits for a lock another session holds (an audit log, say): the claim's
    // chunk that reaches row 55 keeps timing out on it, so the claim stops part way, at a known place.
    await db.pool.query(`CREATE FUNCTION triage_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.id = 55 THEN PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NEW; END $$`);
    await db.pool.query(
      'CREATE TRIGGER triage_audit BEFORE UPDATE ON annotations FOR EACH ROW EXECUTE FUNCTION triage_audit()',
    );
    await holder.query('SELECT pg_advisory_lock(4242)');
    const env = { DATABASE_URL: db.url, KUBECONFIG: kube.kubeconfigPath, CHUNK_ROWS: '10' };

    const first = spawnCli(['run'], env);
    await first.logs.waitForMsg(CLAIMING_IN_CHUNKS);
    await eventually(async () => (await run(db, 1)).claim_cursor === '50', 'the claim to stop before row 55');
    // Part way through the claim, Triage writes go through: a row already claimed, a row not reached yet.
    await relabel(db, 3);
    await relabel(db, 80);
    assert.match(
      await status(db),
      /^claim in progress: +50 claimed so far, through id 50 of 100 \(the Job is created when it completes\)$/m,
    );
    await stop(first, 'SIGKILL');

    assert.deepEqual(await run(db, 1), {
      state: 'submitting',
      annotation_count: 50,
      claim_pending: true,
      claim_cursor: '50',
      settle_pending: false,
      settle_cursor: null,
      trained_count: null,
    });
    assert.equal(kube.jobs.size, 0, 'no Job before the claim is complete');
    assert.deepEqual(await invariantViolations(db.pool), []);

    await holder.query('SELECT pg_advisory_unlock(4242)');
    const second = spawnCli(['run'], env);
    try {
      await eventually(
        async () => (await run(db, 1)).state === 'running',
        'the restarted controller to finish the claim and create the Job',
        15_000,
      );
      await second.logs.waitForMsg(FINISHING_CLAIM);
      assert.equal(kube.jobs.size, 1);
      assert.equal(annotationCountOf([...kube.jobs.values()][0]), '100');
      assert.equal((await run(db, 1)).annotation_count, 100);
      assert.deepEqual(await invariantViolations(db.pool), []);
    } finally {
      await stop(second, 'SIGTERM');
    }
  });
});

describe('SIGKILL in the middle of a chunked settle, then a restart', () => {
  const s = useInfra();
  let triage: pg.Client;
  before(async () => {
    triage = new pg.Client({ connectionString: s.db.url });
    triage.on('error', () => undefined); // useInfra's after() drops the database (FORCE) first
    await triage.connect();
  });
  after(async () => {
    await triage.end();
  });

  it('finishes marking the run used, and lets the Job go', async () => {
    const { db, kube } = s;
    await verifyNew(db.pool, 100);
    const env = { DATABASE_URL: db.url, KUBECONFIG: kube.kubeconfigPath, CHUNK_ROWS: '10' };
    const first = spawnCli(['run'], env);
    await eventually(() => kube.creates.length === 1, 'the Job');
    const name = kube.creates[0]!.name;
    // A Triage transaction holds row 55 of the batch: the settle reaches it and keeps retrying there.
    await triage.query('BEGIN');
    await triage.query("UPDATE annotations SET label = 'under review' WHERE id = 55");
    kube.setPhase(name, 'complete');
    await eventually(async () => (await run(db, 1)).settle_cursor === '50', 'the settle to stop before row 55');
    assert.equal(await count(db, 'used_for_training'), 50);
    assert.deepEqual(await invariantViolations(db.pool), []);
    await relabel(db, 90); // a row of the batch the settle has not reached: not blocked by it
    assert.match(
      await status(db),
      /^settle in progress: run #1 succeeded: 50 of 100 annotations marked used or released$/m,
    );
    await stop(first, 'SIGKILL');

    assert.deepEqual(await run(db, 1), {
      state: 'succeeded',
      annotation_count: 100,
      claim_pending: false,
      claim_cursor: '100',
      settle_pending: true,
      settle_cursor: '50',
      trained_count: 50,
    });
    assert.deepEqual(await invariantViolations(db.pool), []);
    await triage.query('COMMIT');

    const second = spawnCli(['run'], env);
    try {
      await eventually(
        async () => (await run(db, 1)).settle_pending === false,
        'the restarted controller to finish the settle',
        15_000,
      );
      await second.logs.waitForMsg(FINISHING_UNFINISHED);
      assert.equal((await run(db, 1)).trained_count, 100);
      assert.equal(await count(db, 'used_for_training'), 100);
      assert.deepEqual(await invariantViolations(db.pool), []);
      await eventually(
        () => !kube.jobs.get(`default/${name}`)?.metadata?.finalizers?.length,
        'the finalizer to come off',
      );
    } finally {
      await stop(second, 'SIGTERM');
    }
  });
});

async function baseline(
  db: TestDb,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [cliPath(), 'baseline', ...args], {
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, CHUNK_ROWS: '7', ...env },
    });
    return { code: 0, ...r };
  } catch (err: unknown) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('training-controller baseline', () => {
  let db: TestDb;
  const cli = (args: string[], env: Record<string, string> = {}) => baseline(db, args, env);
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('without --yes says what it would do and changes nothing', async () => {
    await verifyNew(db.pool, 30);
    const r = await cli([]);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /^Would mark the 30 annotations pending now as used without training them, .* run again with --yes to do it\.\n$/,
    );
    assert.deepEqual(await runRows(db.pool), []);
    assert.equal(await count(db, 'used_for_training'), 0);
  });

  it('--before needs a verified_at column, and says so in one line', async () => {
    const r = await cli(['--before', '2026-01-01T00:00:00Z', '--yes']);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^training-controller: "public"\.annotations has no verified_at column: --before needs when each annotation was verified/,
    );
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.deepEqual(await runRows(db.pool), []);
  });

  it('--yes marks them used in chunks, recorded as one baseline run with no Job', async () => {
    const r = await cli(['--yes']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^Baseline run #1: 30 annotations marked used without training \(baseline-\d{8}-\d{6}-\d+\)\.\n$/,
    );
    assert.deepEqual(
      (await runRows(db.pool)).map((x) => [x.state, x.annotation_count]),
      [['baseline', 30]],
    );
    assert.equal(await count(db, 'used_for_training AND training_run_id = 1'), 30);
    assert.deepEqual(await invariantViolations(db.pool), []);
    assert.match(await status(db), /^pending annotations: 0 /m);
  });

  it('--before takes only the annotations verified before that instant', async () => {
    await db.pool.query('ALTER TABLE annotations ADD COLUMN verified_at timestamptz');
    await db.pool.query(
      "INSERT INTO annotations (verified, verified_at) SELECT true, '2025-06-01' FROM generate_series(1, 12)",
    );
    await db.pool.query(
      "INSERT INTO annotations (verified, verified_at) SELECT true, '2026-06-01' FROM generate_series(1, 5)",
    );
    assert.match(
      (await cli(['--before', '2026-01-01T00:00:00Z'])).stdout,
      /^Would mark the 12 annotations verified before 2026-01-01T00:00:00.000Z \("public"\.annotations\.verified_at\)/,
    );
    const r = await cli(['--before', '2026-01-01T00:00:00Z', '--yes']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Baseline run #2: 12 annotations verified before 2026-01-01T00:00:00\.000Z marked used /);
    assert.deepEqual(
      (await runRows(db.pool)).map((x) => [x.state, x.annotation_count]),
      [
        ['baseline', 30],
        ['baseline', 12],
      ],
    );
    assert.equal(await count(db, PENDING), 5);
  });

  it('is refused while a run is open', async () => {
    await db.pool.query(
      "INSERT INTO training_runs (job_name, namespace, state, annotation_count) VALUES ('sentinel-training-x', 'default', 'running', 0)",
    );
    const r = await cli(['--yes']);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /run #3 \(sentinel-training-x\) is running: a baseline cannot take annotations from an open run/,
    );
  });

  it('a bad --before is a usage error', async () => {
    const r = await cli(['--before', 'yesterday']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^training-controller: baseline: --before must be an ISO 8601 timestamp with an offset, such as 2026-01-02T00:00:00Z or 2026-01-02T09:00:00\+09:00 \(got "yesterday"\) \(usage: training-controller baseline \[--before TIMESTAMP\] \[--yes\]\)\n$/,
    );
  });
});

// Issue 21, item 8: `--before 2026-01-01T00:00:00` was read in the time zone of the machine running the command
// (under TZ=Asia/Tokyo: "Nothing pending" with 2 pending), and `12` or `1/2/2026` were taken as dates. README
// "Big backlogs": the result does not depend on that machine's time zone.
describe('baseline --before names one instant, whatever the TZ of the machine running it', () => {
  let db: TestDb;
  before(async () => {
    db = await freshDatabase();
    await db.pool.query('ALTER TABLE annotations ADD COLUMN verified_at timestamptz');
    await db.pool.query(`INSERT INTO annotations (verified, verified_at) VALUES
      (true, '2025-12-31T22:00:00Z'), (true, '2025-12-31T23:30:00Z'), (true, '2026-01-01T00:30:00Z')`);
  });
  after(async () => {
    await db.drop();
  });

  it('refuses a cut-off without an offset, and prints the one it resolved in UTC, the same under UTC and Asia/Tokyo', async () => {
    const seen: Record<string, string[]> = {};
    for (const TZ of ['UTC', 'Asia/Tokyo']) {
      const lines: string[] = [];
      for (const before of ['2026-01-01T00:00:00', '12', '1/2/2026']) {
        const r = await baseline(db, ['--before', before], { TZ });
        assert.equal(r.code, 2, `TZ=${TZ} --before ${before}: ${r.stdout}`);
        assert.equal(r.stderr.split('\n').length, 2, 'one line');
        assert.match(
          r.stderr,
          new RegExp(
            `^training-controller: baseline: --before must be an ISO 8601 timestamp with an offset, such as 2026-01-02T00:00:00Z .*\\(got "${before}`,
          ),
        );
        lines.push(r.stderr);
      }
      for (const before of ['2026-01-01T09:00:00+09:00', '2026-01-01T00:00:00Z', '2025-12-31T00:00:00Z']) {
        const r = await baseline(db, ['--before', before], { TZ });
        assert.equal(r.code, 0, r.stderr);
        lines.push(r.stdout);
      }
      seen[TZ] = lines;
    }
    assert.deepEqual(seen['Asia/Tokyo'], seen.UTC);
    const [offset, utc, none] = seen.UTC!.slice(3);
    assert.match(offset!, /^Would mark the 2 annotations verified before 2026-01-01T00:00:00\.000Z /);
    assert.equal(utc, offset);
    assert.equal(none, 'Nothing pending was verified before 2025-12-31T00:00:00.000Z: no baseline needed.\n');
    assert.deepEqual(await runRows(db.pool), [], 'nothing changed');
  });
});

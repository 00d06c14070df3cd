// Edges of the chunked claim that a review found (issue #14): ids that are not positive integers (0, a
// uuid primary key), a `timestamp without time zone` verified_at read the same from any TZ, and a SIGTERM in
// the middle of a long claim, which must stop between chunks, not run into the shutdown watchdog.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CLAIMING_IN_CHUNKS } from '../src/loop/dispatcher.js';
import { cliPath, spawnCli } from './support/child.js';
import { freshDatabase, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { eventually, startController, useEachRun, useInfra } from './support/harness.js';
import { COMMIT_TARGET_MS, MIN_CHUNK_ROWS } from '../src/core/pace.js';

const exec = promisify(execFile);

describe('Triage ids the chunked claim cannot walk', () => {
  let kube: FakeKube;
  before(async () => {
    kube = await FakeKube.start();
  });
  after(async () => {
    await kube.stop();
  });

  it('an annotation with id 0 is claimed with the others (no claim-race loop)', async () => {
    const db = await freshDatabase();
    try {
      await db.pool.query('INSERT INTO annotations (id, verified) VALUES (0, true)');
      await verifyNew(db.pool, 49);
      const c = spawnCli(['run'], { DATABASE_URL: db.url, KUBECONFIG: kube.kubeconfigPath, LOG_LEVEL: 'info' });
      try {
        // Logged before the create, after any claim race: the lines before it are all in.
        await c.logs.waitForMsg('Triggering training with 50 new images', 15_000);
        const races = c.logs.lines.filter((l) => String(l.msg).startsWith('Only 49 pending at claim time')).length;
        assert.equal(races, 0, 'claim-race dispatch transactions before the Job');
        await eventually(() => kube.creates.length === 1, 'one Job for the 50 pending annotations');
      } finally {
        c.proc.kill('SIGKILL');
        await c.exited;
      }
    } finally {
      await db.drop();
    }
  });

  it('a Triage table with uuid ids trains (it did before the chunked claim)', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      await db.pool.query(
        'CREATE TABLE annotations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), verified boolean NOT NULL DEFAULT false, label text)',
      );
      await exec(process.execPath, [cliPath(), 'migrate'], {
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url },
      });
      await db.pool.query('INSERT INTO annotations (verified) SELECT true FROM generate_series(1, 50)');
      const before = kube.creates.length;
      for (const j of kube.creates) kube.setPhase(j.name, 'complete'); // the previous test's Job: not in our way
      const c = spawnCli(['run'], { DATABASE_URL: db.url, KUBECONFIG: kube.kubeconfigPath, LOG_LEVEL: 'info' });
      try {
        await eventually(() => kube.creates.length === before + 1, 'the Job', 15_000).catch((err: unknown) => {
          throw new Error(`${String(err)}; log: ${c.logs.raw.slice(-3).join('\n')} ${c.stderr.join('\n')}`);
        });
      } finally {
        c.proc.kill('SIGKILL');
        await c.exited;
      }
    } finally {
      await db.drop();
    }
  });
});

describe('baseline --before on a timestamp without time zone column', () => {
  let db: TestDb;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('takes the same rows whatever the TZ of the process running it', async () => {
    await db.pool.query('ALTER TABLE annotations ADD COLUMN verified_at timestamp');
    await db.pool.query("SET TIME ZONE 'UTC'");
    await db.pool.query(`INSERT INTO annotations (verified, verified_at) VALUES
      (true, '2025-12-31 22:00'), (true, '2025-12-31 23:30'), (true, '2026-01-01 00:30'), (true, '2026-01-01 03:00')`);
    const counts: Record<string, string> = {};
    for (const tz of ['UTC', 'America/New_York', 'Asia/Tokyo']) {
      const r = await exec(process.execPath, [cliPath(), 'baseline', '--before', '2026-01-01T00:00:00Z'], {
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, TZ: tz },
      });
      counts[tz] = /Would mark the (\d+)/.exec(r.stdout)?.[1] ?? r.stdout.trim();
    }
    assert.deepEqual(counts, { UTC: '2', 'America/New_York': '2', 'Asia/Tokyo': '2' });
  });
});

describe('SIGTERM during a chunked claim', () => {
  const s = useInfra();

  it('stops between chunks and exits 0 within SHUTDOWN_TIMEOUT_MS (README Deploying: SIGTERM)', async () => {
    const { db, kube } = s;
    await verifyNew(db.pool, 100_000);
    const c = spawnCli(['run'], {
      DATABASE_URL: db.url,
      KUBECONFIG: kube.kubeconfigPath,
      CHUNK_ROWS: '20',
      SHUTDOWN_TIMEOUT_MS: '2000',
      LOG_LEVEL: 'info',
    });
    await c.logs.waitForMsg(CLAIMING_IN_CHUNKS, 15_000);
    // A chunk after the dispatch's first is committed: the walk is under way (5,000 chunks of 20 to go).
    const claimed = async () =>
      (
        await db.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM annotations WHERE training_run_id IS NOT NULL',
        )
      ).rows[0]!.n;
    await eventually(async () => (await claimed()) > 20, 'a second chunk claimed', 10_000);
    c.proc.kill('SIGTERM');
    await c.logs.waitForMsg(/^Shutting down: the claim of run \d+ stops between chunks/, 5000);
    const exit = await c.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, c.logs.raw.slice(-3).join('\n'));
    assert.ok((await claimed()) < 100_000, 'the claim stopped part way');
  });
});

describe('a disk whose commits are slow (issue 21: pace the bulk writes)', () => {
  const s = useEachRun();

  it('the claim halves its chunks while our commits take longer than COMMIT_TARGET_MS, down to MIN_CHUNK_ROWS', async () => {
    // Every chunk updates the run's row once; a deferred trigger on it sleeps at COMMIT, as a slow WAL flush would.
    await s.db.pool.query(`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(${(COMMIT_TARGET_MS + 15) / 1000}); RETURN NULL; END $$`);
    await s.db.pool.query(`CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON training_runs
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`);
    // The size of each claim statement, in the order they ran.
    await s.db.pool.query('CREATE TABLE chunk_sizes (at serial, claimed int)');
    await s.db.pool.query(`CREATE FUNCTION log_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO chunk_sizes (claimed) SELECT count(*) FROM claimed WHERE training_run_id IS NOT NULL;
      RETURN NULL; END $$`);
    await s.db.pool.query(`CREATE TRIGGER log_chunk AFTER UPDATE ON annotations REFERENCING NEW TABLE AS claimed
      FOR EACH STATEMENT EXECUTE FUNCTION log_chunk()`);
    await verifyNew(s.db.pool, 1700);
    s.c = await startController(s.db.url, s.kube, { CHUNK_ROWS: '400' });
    await eventually(() => s.kube.creates.length === 1, 'the Job for all 1,700', 30_000);
    const sizes = (await s.db.pool.query('SELECT claimed FROM chunk_sizes ORDER BY at')).rows.map((r) => r.claimed);
    // The dispatch's first chunk, then the paced walk: each slow commit halves the next chunk.
    assert.deepEqual(sizes.slice(0, 4), [400, 400, 200, MIN_CHUNK_ROWS]);
    assert.ok(
      sizes.slice(4).every((n) => n <= MIN_CHUNK_ROWS),
      String(sizes),
    );
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      1700,
    );
  });
});

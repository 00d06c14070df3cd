// Migrating the Triage API's live table (issue #10): a long Triage transaction must make the migration wait,
// never the verifications behind it; an interrupted concurrent index build is repaired, and reported until it is.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../src/core/logger.js';
import { LOCK_BUSY, migrate, readMigrations } from '../src/db/migrate.js';
import { migrationsDir } from '../src/core/paths.js';
import { PENDING } from '../src/db/annotations.js';
import { invalidIndexWarning, missingSchema } from '../src/db/schemaCheck.js';
import { tables } from '../src/db/tables.js';
import { realTimers } from '../src/core/timers.js';
import { cliPath, spawnCli } from './support/child.js';
import { freshDatabase, triageWrite, type TestDb } from './support/db.js';
import { LogCapture } from './support/harness.js';

const exec = promisify(execFile);
const t = tables('public');

const psqlAvailable = (() => {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The Triage API's table as it is before we ever migrate: 1,000 rows, half verified. */
async function triageTable(db: TestDb): Promise<void> {
  await db.pool.query(`CREATE TABLE annotations (id bigserial PRIMARY KEY, image_uri text NOT NULL DEFAULT '', label text NOT NULL DEFAULT '',
    verified boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now())`);
  await db.pool.query('INSERT INTO annotations (verified) SELECT g % 2 = 0 FROM generate_series(1, 1000) g');
}

/** A Triage transaction that stays open: it has updated row 1 and holds ROW EXCLUSIVE on annotations. */
async function openTriageTransaction(db: TestDb): Promise<{ finish(): Promise<void> }> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query('BEGIN');
  await c.query("UPDATE annotations SET label = 'relabelled' WHERE id = 1");
  return {
    async finish() {
      await c.query('COMMIT');
      await c.end();
    },
  };
}

const verify = (db: TestDb, id: number) =>
  triageWrite(db.url, 'UPDATE annotations SET verified = true WHERE id = $1', [id]);

async function psqlFile(db: TestDb, file: string): Promise<void> {
  await exec('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', join(migrationsDir(), file)]);
}

async function indexValid(db: TestDb, name: string): Promise<boolean | null> {
  const { rows } = await db.pool.query('SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)', [name]);
  return rows[0]?.indisvalid ?? null;
}

/** What an interrupted CREATE INDEX CONCURRENTLY leaves: the build is cancelled while it waits for an old transaction. */
async function interruptedPendingIndexBuild(db: TestDb): Promise<void> {
  await db.pool.query('DROP INDEX annotations_pending');
  const old = await openTriageTransaction(db);
  const builder = new pg.Client({ connectionString: db.url });
  await builder.connect();
  builder.on('error', () => undefined);
  try {
    const pid = (await builder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const build = builder.query(`CREATE INDEX CONCURRENTLY annotations_pending ON annotations (id) WHERE ${PENDING}`);
    build.catch(() => undefined);
    for (;;) {
      const { rows } = await db.pool.query('SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rows[0]?.wait_event_type === 'Lock') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await db.pool.query('SELECT pg_cancel_backend($1)', [pid]);
    await assert.rejects(build, /canceling statement/);
  } finally {
    await builder.end();
    await old.finish();
  }
  assert.equal(await indexValid(db, 'annotations_pending'), false, 'the interrupted build left an INVALID index');
}

describe('migrating a live annotations table', () => {
  let db: TestDb;
  before(async () => {
    db = await freshDatabase(undefined, { migrate: false });
  });
  after(async () => {
    await db.drop();
  });

  it('`migrate` waits for a long Triage transaction by retrying, while other verifications go through', async () => {
    await triageTable(db);
    const old = await openTriageTransaction(db);
    const logs = new LogCapture();
    const migrating = migrate(db.pool, createLogger('info', logs), t, {
      timers: { ...realTimers, setTimeout: (fn, ms) => setTimeout(fn, Math.min(ms, 200)) },
    });
    migrating.catch(() => undefined);
    try {
      await logs.waitForMsg(LOCK_BUSY);
      // Verifications keep going while the migration keeps asking for its lock.
      for (let id = 2; id <= 40; id += 2) await verify(db, id + 1);
      assert.ok(logs.count(LOCK_BUSY) >= 1);
    } finally {
      await old.finish();
    }
    assert.equal((await migrating).length, (await readMigrations()).length);
    assert.deepEqual(await missingSchema(db.pool, t), []);
  });
});

describe('migrating with psql', { skip: psqlAvailable ? false : 'psql is not installed' }, () => {
  let db: TestDb;
  before(async () => {
    db = await freshDatabase(undefined, { migrate: false });
    await triageTable(db);
  });
  after(async () => {
    await db.drop();
  });

  it('a file that cannot get its lock fails fast instead of queueing verifications, and applies again later', async () => {
    await psqlFile(db, '001_annotations.sql');
    const old = await openTriageTransaction(db);
    try {
      await assert.rejects(psqlFile(db, '002_training_runs.sql'), /lock timeout/);
      await verify(db, 3);
    } finally {
      await old.finish();
    }
    for (const m of (await readMigrations()).slice(1)) await psqlFile(db, m.name);
    assert.deepEqual(await missingSchema(db.pool, t), []);
  });

  it('applying 003 again rebuilds an INVALID annotations_pending', async () => {
    await interruptedPendingIndexBuild(db);
    await psqlFile(db, '003_pending_index.sql');
    assert.equal(await indexValid(db, 'annotations_pending'), true);
  });
});

describe('an INVALID annotations_pending (an interrupted concurrent build)', () => {
  let db: TestDb;
  before(async () => {
    db = await freshDatabase();
    await interruptedPendingIndexBuild(db);
  });
  after(async () => {
    await db.drop();
  });

  it('is named by `run` at startup and by `status`', async () => {
    assert.match(
      (await invalidIndexWarning(db.pool, t)) ?? '',
      /index public\.annotations_pending is INVALID .*run `training-controller migrate` to rebuild it/,
    );
    // No cluster configured (print mode): a bad KUBECONFIG now stops `run` before it reads the database (issue 15).
    const run = spawnCli(['run'], { DATABASE_URL: db.url, HOME: '/nonexistent', HTTP_PORT: '0' });
    try {
      const line = await run.logs.waitForMsg(/annotations_pending is INVALID/);
      assert.equal(line.level, 40, 'a warning');
    } finally {
      run.proc.kill('SIGTERM');
      await run.exited;
    }
    const { stdout } = await exec(process.execPath, [cliPath(), 'status'], {
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url },
    });
    assert.match(stdout, /^warning: +index public\.annotations_pending is INVALID/m);
  });

  it('is rebuilt by `migrate`, though its migration is recorded as applied', async () => {
    const logs = new LogCapture();
    const applied = await migrate(db.pool, createLogger('info', logs), t);
    assert.deepEqual(applied, ['003_pending_index.sql']);
    assert.equal(logs.count(/Rebuilding INVALID index annotations_pending/), 1);
    assert.equal(await indexValid(db, 'annotations_pending'), true);
    assert.equal(await invalidIndexWarning(db.pool, t), null);
  });
});

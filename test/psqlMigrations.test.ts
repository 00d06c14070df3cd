// The ops team applies migrations/*.sql with psql (docs/migrations.md): each file must run as plain psql
// input, twice, with the schema given as `-v schema=…` or defaulted to public, and leave what `migrate` leaves.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { readMigrations } from '../src/db/migrate.js';
import { forSchema } from '../src/db/psqlScript.js';
import { migrationsDir } from '../src/core/paths.js';
import { tables } from '../src/db/tables.js';
import { missingSchema } from '../src/db/schemaCheck.js';
import { runCli } from './support/child.js';
import { freshDatabase, type TestDb } from './support/db.js';

const exec = promisify(execFile);

function psqlAvailable(): boolean {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function applyWithPsql(db: TestDb, vars: string[]): Promise<void> {
  for (const m of await readMigrations()) {
    await exec('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', ...vars, '-f', join(migrationsDir(), m.name)]);
  }
}

describe('migrate interpolates the schema as psql does', () => {
  it('quotes it as an identifier and a literal, keeping every character (a `$$` in the name stays `$$`)', () => {
    assert.equal(
      forSchema('CREATE TABLE :"schema".t (); SELECT :\'schema\';', 'a$$b'),
      'CREATE TABLE "a$$b".t (); SELECT \'a$$b\';',
    );
    assert.equal(forSchema('\\if :{?schema}\nSELECT 1;', 'x'), 'SELECT 1;');
  });
});

describe('migrations applied with psql', { skip: psqlAvailable() ? false : 'psql is not installed' }, () => {
  it('default schema: applies twice and leaves every object run needs', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      await applyWithPsql(db, []);
      await applyWithPsql(db, []);
      assert.deepEqual(await missingSchema(db.pool, tables('public')), []);
    } finally {
      await db.drop();
    }
  });

  it('-v schema=triage: every object lands in triage', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      await db.pool.query('CREATE SCHEMA triage');
      await db.pool.query('CREATE TABLE triage.annotations (id bigserial PRIMARY KEY, verified boolean)');
      await applyWithPsql(db, ['-v', 'schema=triage']);
      await applyWithPsql(db, ['-v', 'schema=triage']);
      assert.deepEqual(await missingSchema(db.pool, tables('triage')), []);
      assert.equal((await db.pool.query("SELECT to_regclass('public.annotations') AS t")).rows[0].t, null);
    } finally {
      await db.drop();
    }
  });
});

describe('a partitioned annotations table (issue 21)', {
  skip: psqlAvailable() ? false : 'psql is not installed',
}, () => {
  // What the migrations would have added: any of these left behind is a half-applied migration.
  const ours = async (db: TestDb) =>
    (
      await db.pool.query<{ name: string }>(
        `SELECT relname AS name FROM pg_class WHERE relname LIKE 'training%' OR relname LIKE 'annotations_%'
         UNION ALL SELECT attname FROM pg_attribute
          WHERE attrelid = 'annotations'::regclass AND attname IN ('used_for_training', 'training_run_id')`,
      )
    ).rows.map((r) => r.name);

  /** `migrate` exits 1 with one line matching `want`, and psql -f of the files stops with the same. */
  const bothRefuse = async (db: TestDb, want: RegExp) => {
    const migrated = await runCli(['migrate'], { DATABASE_URL: db.url });
    assert.equal(migrated.code, 1);
    assert.equal(migrated.stderr.trim().split('\n').length, 1, migrated.stderr);
    assert.match(migrated.stderr, want);
    const psql = await applyWithPsql(db, []).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(psql, want);
  };

  it('migrate and psql both refuse in the same one line, and nothing of ours is left behind', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      await db.pool.query(`CREATE TABLE annotations (id bigserial, verified boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)`);
      await db.pool.query(`CREATE TABLE annotations_2026 PARTITION OF annotations
        FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
      const before = await ours(db);
      const want =
        /^.*annotations in schema public is a partitioned table, which the migrations do not support: .*nothing was changed \(docs\/migrations\.md "Partitioned annotations"\)$/m;

      await bothRefuse(db, want);
      assert.deepEqual(await ours(db), before, 'nothing added by either');
    } finally {
      await db.drop();
    }
  });

  it('inheritance children: refused by both in one line naming them, and by run if added after the migrations', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      await db.pool.query(
        'CREATE TABLE annotations (id bigserial PRIMARY KEY, verified boolean NOT NULL DEFAULT false)',
      );
      await db.pool.query('CREATE TABLE annotations_2026 () INHERITS (annotations)');
      const before = await ours(db);
      const want =
        /^.*annotations in schema public has inheritance children \(annotations_2026\), which the migrations do not support: .*nothing was changed/m;
      await bothRefuse(db, want);
      assert.deepEqual(await ours(db), before, 'nothing added by either');
    } finally {
      await db.drop();
    }
    const migratedFirst = await freshDatabase();
    try {
      await migratedFirst.pool.query('CREATE TABLE annotations_2027 () INHERITS (annotations)');
      const run = await runCli(['run'], { DATABASE_URL: migratedFirst.url, HTTP_PORT: '0' }, 20_000);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /has inheritance children \(annotations_2027\).*the service does not start/);
    } finally {
      await migratedFirst.drop();
    }
  });
});

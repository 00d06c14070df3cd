// The ops team applies migrations/*.sql with psql (README "Migrations"): each file must run as plain psql
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

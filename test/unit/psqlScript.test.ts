// `migrate` runs the migration files the way psql does: statement by statement, with \gexec.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readMigrations, serverTooOld } from '../../src/db/migrate.js';
import { concurrentIndexes, splitStatements } from '../../src/db/psqlScript.js';
import { CONCURRENT_INDEXES } from '../../src/db/schemaCheck.js';

const sqls = (script: string) => splitStatements(script).map((s) => s.sql);

describe('splitStatements cuts a script where psql would', () => {
  it('at top-level semicolons, dropping comment-only pieces', () => {
    assert.deepEqual(sqls('SELECT 1;\n-- a comment; with a semicolon\nSELECT 2;\n/* x; */\n'), [
      'SELECT 1',
      '-- a comment; with a semicolon\nSELECT 2',
    ]);
  });

  it('never inside quotes, quoted identifiers or dollar-quoted bodies', () => {
    const script = `SELECT 'a;b', 'it''s;';\nSELECT "x;y" FROM t;\nDO $$ BEGIN PERFORM 1; END $$;\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;`;
    assert.deepEqual(sqls(script), [
      `SELECT 'a;b', 'it''s;'`,
      'SELECT "x;y" FROM t',
      'DO $$ BEGIN PERFORM 1; END $$',
      'CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql',
    ]);
  });

  it('a positional parameter is not a dollar quote', () => {
    assert.deepEqual(sqls('SELECT $1; SELECT 2;'), ['SELECT $1', 'SELECT 2']);
  });

  it('ends a statement at a \\gexec line and marks it', () => {
    assert.deepEqual(splitStatements("SELECT format('DROP INDEX %I', 'x')\n\\gexec\nCREATE INDEX i ON t (a);"), [
      { sql: "SELECT format('DROP INDEX %I', 'x')", gexec: true },
      { sql: 'CREATE INDEX i ON t (a)', gexec: false },
    ]);
  });
});

describe('the migrations', () => {
  it('build every index on annotations CONCURRENTLY (a plain build blocks verifications for the whole scan)', async () => {
    for (const m of await readMigrations()) {
      for (const s of splitStatements(m.sql)) {
        const plain = /CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)[\s\S]*\bON\s+:"schema"\.annotations\b/i.test(
          s.sql.replace(/--[^\n]*/g, ''),
        );
        assert.equal(plain, false, `${m.name}: ${s.sql.split('\n').find((l) => /INDEX/.test(l))}`);
      }
    }
  });

  it('build concurrently exactly the indexes run and status check for INVALID', async () => {
    const built = (await readMigrations()).flatMap((m) => concurrentIndexes(m.sql));
    assert.deepEqual([...built].sort(), [...CONCURRENT_INDEXES].sort());
  });

  it('set a lock_timeout before every ALTER TABLE or CREATE TRIGGER on annotations, and reset it before a concurrent build', async () => {
    for (const m of await readMigrations()) {
      let timeout = false;
      for (const s of splitStatements(m.sql).map((x) => x.sql.replace(/--[^\n]*/g, '').trim())) {
        if (/^SET lock_timeout/i.test(s)) timeout = true;
        if (/^RESET lock_timeout/i.test(s)) timeout = false;
        if (/^(ALTER TABLE\s+:"schema"\.annotations\s+ADD|CREATE (OR REPLACE )?TRIGGER)/i.test(s))
          assert.ok(timeout, `${m.name}: ${s.split('\n')[0]}`);
        if (/CONCURRENTLY|VALIDATE CONSTRAINT/i.test(s)) assert.ok(!timeout, `${m.name}: ${s.split('\n')[0]}`);
      }
      assert.equal(timeout, false, `${m.name} leaves a lock_timeout set for the next file in the same psql session`);
    }
  });
});

describe('serverTooOld', () => {
  it('names the version needed for a server before 14, and passes 14 and later', () => {
    assert.match(
      serverTooOld(130016, '13.16') ?? '',
      /PostgreSQL 13\.16 is too old: the migrations need PostgreSQL 14 or newer/,
    );
    assert.equal(serverTooOld(140000, '14.0'), null);
    assert.equal(serverTooOld(180001, '18.1'), null);
  });
});

// A fresh database per test on the server in DATABASE_URL (npm test provides one). A migrated one is a copy of
// a template that run-tests.ts migrates once per run (CREATE DATABASE … TEMPLATE, as graphile-worker does): a
// copy costs the same as an empty CREATE DATABASE, while migrating from scratch adds every migration's DDL to
// each of the suite's ~70 databases. Without the template (a test file run with node --test directly, or a
// server of the test's own) each database is migrated from scratch as before.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger } from '../../src/core/logger.js';
import { migrate } from '../../src/db/migrate.js';
import { tables } from '../../src/db/tables.js';

export interface TestDb {
  url: string;
  name: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** Names every test database starts with; dropStaleDatabases() looks for leftovers by it. */
const TEST_PREFIX = 'tc_test_';
const TEMPLATE_PREFIX = 'tc_template_';

/** The environment variable through which run-tests.ts names the migrated template to the test processes. */
export const TEMPLATE_ENV = 'TC_TEST_TEMPLATE';

export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url)
    throw new Error('DATABASE_URL is not set: run the tests with `npm test`, which starts an embedded PostgreSQL');
  return url;
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function onServer<T>(server: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: server });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * A new database. Migrated (the default, public schema) it is a copy of the run's template when there is one
 * on this server; `migrate: false` gives an empty one, for tests that shape the Triage tables themselves,
 * apply old migrations or migrate it live.
 */
export async function freshDatabase(
  server: string = serverUrl(),
  options: { migrate?: boolean; schema?: string } = {},
): Promise<TestDb> {
  const name = `${TEST_PREFIX}${randomBytes(5).toString('hex')}`;
  const migrated = options.migrate !== false;
  const template =
    migrated && (options.schema ?? 'public') === 'public' && server === process.env.DATABASE_URL
      ? process.env[TEMPLATE_ENV]
      : undefined;
  await onServer(server, (c) => c.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`));
  const url = withDatabase(server, name);
  const pool = new pg.Pool({ connectionString: url, max: 25 });
  pool.on('error', () => undefined);
  if (migrated && !template) await migrate(pool, createLogger('silent'), tables(options.schema ?? 'public'));
  return {
    url,
    name,
    pool,
    async drop() {
      await pool.end();
      await onServer(server, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

export interface Template {
  name: string;
  drop(): Promise<void>;
}

/**
 * Migrates the run's template on `server`. Its name carries the pid, so two runs against one shared server
 * (two engineers, or CI beside a developer) never share or drop each other's. It refuses connections once
 * migrated: CREATE DATABASE … TEMPLATE fails while anyone else is connected to the template, and this way nobody
 * can be (autovacuum skips it too).
 */
export async function createTemplate(server: string): Promise<Template> {
  const name = `${TEMPLATE_PREFIX}${process.pid}_${randomBytes(3).toString('hex')}`;
  await onServer(server, (c) => c.query(`CREATE DATABASE ${name}`));
  const pool = new pg.Pool({ connectionString: withDatabase(server, name), max: 1 });
  try {
    await migrate(pool, createLogger('silent'), tables('public'));
  } finally {
    await pool.end();
  }
  await onServer(server, (c) => c.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`));
  return {
    name,
    async drop() {
      await onServer(server, (c) => c.query(`DROP DATABASE IF EXISTS ${name}`));
    },
  };
}

/**
 * Drops test databases and templates that crashed or killed runs left behind: those created over
 * `olderThanMs` ago that nobody is connected to. A shared server may be running another engineer's suite
 * right now, so "older than this run" is not enough; a database in use makes DROP (without FORCE) fail and
 * is left alone. The creation time is that of the database's PG_VERSION file, written once by CREATE
 * DATABASE; reading it takes superuser (or pg_read_server_files): without that, nothing is dropped.
 * Returns the names dropped.
 */
export async function dropStaleDatabases(server: string, olderThanMs: number): Promise<string[]> {
  return onServer(server, async (c) => {
    let stale: string[];
    try {
      const { rows } = await c.query<{ datname: string }>(
        `SELECT datname FROM pg_database d
          WHERE (starts_with(datname, $1) OR starts_with(datname, $2))
            AND (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification
                < now() - $3 * interval '1 millisecond'
            AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)`,
        [TEST_PREFIX, TEMPLATE_PREFIX, olderThanMs],
      );
      stale = rows.map((r) => r.datname);
    } catch {
      return []; // not allowed to read the data directory: leave everything as it is
    }
    const dropped: string[] = [];
    for (const name of stale) {
      try {
        await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)}`);
        dropped.push(name);
      } catch {
        // Somebody connected since the query above: not stale after all.
      }
    }
    return dropped;
  });
}

export interface RunRow {
  id: number;
  state: string;
  namespace: string;
  annotation_count: number;
  trained_count: number | null;
  reason: string | null;
}

/** Every run in training_runs, oldest first. */
export async function runRows(pool: pg.Pool): Promise<RunRow[]> {
  return (
    await pool.query<RunRow>(
      'SELECT id::int, state, namespace, annotation_count, trained_count, reason FROM training_runs ORDER BY id',
    )
  ).rows;
}

/**
 * One write by another Triage API session. Its statement_timeout turns "queued behind the controller or a
 * migration until some long transaction ends" into an error; 5 s is far above any wait we allow (~50 ms).
 */
export async function triageWrite(url: string, sql: string, params: unknown[] = []): Promise<void> {
  const c = new pg.Client({ connectionString: url, statement_timeout: 5000 });
  await c.connect();
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** Verifies `n` new annotations in one statement (one transaction). */
export async function verifyNew(pool: pg.Pool, n: number): Promise<void> {
  await pool.query('INSERT INTO annotations (verified) SELECT true FROM generate_series(1, $1)', [n]);
}

/**
 * The invariant: every verified annotation is pending, claimed by exactly one open run (or one whose outcome is
 * recorded and whose chunked settle is under way), or used by exactly one succeeded or baseline run; no
 * annotation is marked used unless it was verified when its run succeeded; at most one run is open; an open
 * run's count is what it claimed, and a Job exists only for a run whose claim is complete. Returns the
 * violations (empty when it holds). The tests never un-verify a used row, so a used row that is not verified
 * can only have been marked used while un-verified. A claimed row may be un-verified (a correction while its
 * batch trains): its run releases it when it ends.
 */
export async function invariantViolations(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ problem: string }>(`
    SELECT 'annotation ' || a.id || ': used_for_training but run ' || coalesce(r.id::text, 'none') || ' is ' || coalesce(r.state, 'missing') AS problem
      FROM annotations a LEFT JOIN training_runs r ON r.id = a.training_run_id
     WHERE a.used_for_training AND (r.id IS NULL OR r.state NOT IN ('succeeded', 'baseline'))
    UNION ALL
    SELECT 'annotation ' || a.id || ': claimed by run ' || r.id || ' which is ' || r.state
      FROM annotations a JOIN training_runs r ON r.id = a.training_run_id
     WHERE NOT a.used_for_training AND r.state NOT IN ('submitting', 'running') AND NOT r.settle_pending
    UNION ALL
    SELECT 'annotation ' || a.id || ': used_for_training but not verified'
      FROM annotations a WHERE a.used_for_training AND a.verified IS NOT TRUE
    UNION ALL
    SELECT 'succeeded run ' || r.id || ' has ' || r.trained_count || ' annotations recorded as trained but ' || count(a.id) || ' used'
      FROM training_runs r LEFT JOIN annotations a ON a.training_run_id = r.id AND a.used_for_training
     WHERE r.state = 'succeeded' AND NOT r.settle_pending GROUP BY r.id HAVING count(a.id) <> r.trained_count
    UNION ALL
    SELECT 'settled run ' || r.id || ' was given ' || r.annotation_count || ' annotations but trained ' || r.trained_count || ' and released ' || r.released_count
      FROM training_runs r WHERE r.state = 'succeeded' AND NOT r.settle_pending AND r.trained_count + r.released_count <> r.annotation_count
    UNION ALL
    SELECT 'open run ' || r.id || ' says ' || r.annotation_count || ' annotations but claims ' || count(a.id)
      FROM training_runs r LEFT JOIN annotations a ON a.training_run_id = r.id
     WHERE r.state IN ('submitting', 'running') AND NOT r.claim_pending GROUP BY r.id HAVING count(a.id) <> r.annotation_count
    UNION ALL
    SELECT 'run ' || id || ' is running with its claim incomplete' FROM training_runs WHERE state = 'running' AND claim_pending
    UNION ALL
    SELECT count(*) || ' open runs' FROM training_runs WHERE state IN ('submitting', 'running') HAVING count(*) > 1`);
  return rows.map((r) => r.problem);
}

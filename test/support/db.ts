// A fresh, migrated database per test file on the server in DATABASE_URL (npm test provides one).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/migrate.js';
import { tables } from '../../src/tables.js';

export interface TestDb {
  url: string;
  name: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

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

export async function freshDatabase(
  server: string = serverUrl(),
  options: { migrate?: boolean; schema?: string } = {},
): Promise<TestDb> {
  const name = `tc_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(server, name);
  const pool = new pg.Pool({ connectionString: url, max: 25 });
  pool.on('error', () => undefined);
  if (options.migrate !== false) await migrate(pool, createLogger('silent'), tables(options.schema ?? 'public'));
  return {
    url,
    name,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: server });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
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

// training_runs and the annotations a run claims: every statement that changes a run's state, each naming its
// tables qualified (tables.ts).
// Each settle statement is guarded by `state IN ('submitting','running')`, so two replicas (or a watch event
// racing the periodic pass) settle a run once: the loser updates no row and rolls back.
import type { Pool, PoolClient } from './db.js';
import { withTransaction } from './db.js';
import { PENDING } from './pending.js';
import type { FailureHistory } from './backoff.js';
import type { Tables } from './tables.js';

type Queryable = Pool | PoolClient;

export type RunState = 'submitting' | 'running' | 'succeeded' | 'failed' | 'lost';

export interface Run {
  id: number;
  jobName: string;
  namespace: string;
  state: RunState;
  annotationCount: number;
  createAttempts: number;
  createdAt: Date;
  submittedAt: Date | null;
  finishedAt: Date | null;
  reason: string | null;
}

const COLUMNS = `id::int, job_name, namespace, state, annotation_count, create_attempts, created_at, submitted_at, finished_at, reason`;

interface RunRow {
  id: number;
  job_name: string;
  namespace: string;
  state: RunState;
  annotation_count: number;
  create_attempts: number;
  created_at: Date;
  submitted_at: Date | null;
  finished_at: Date | null;
  reason: string | null;
}

const toRun = (r: RunRow): Run => ({
  id: r.id,
  jobName: r.job_name,
  namespace: r.namespace,
  state: r.state,
  annotationCount: r.annotation_count,
  createAttempts: r.create_attempts,
  createdAt: r.created_at,
  submittedAt: r.submitted_at,
  finishedAt: r.finished_at,
  reason: r.reason,
});

export async function openRun(q: Queryable, t: Tables): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(`SELECT ${COLUMNS} FROM ${t.runs} WHERE state IN ('submitting', 'running') LIMIT 1`);
  return rows[0] ? toRun(rows[0]) : null;
}

export async function recentRuns(q: Queryable, t: Tables, limit: number): Promise<Run[]> {
  const { rows } = await q.query<RunRow>(`SELECT ${COLUMNS} FROM ${t.runs} ORDER BY id DESC LIMIT $1`, [limit]);
  return rows.map(toRun);
}

export async function failureHistory(q: Queryable, t: Tables): Promise<FailureHistory> {
  const { rows } = await q.query<{ failures: number; last: Date | null; now: Date }>(`
    SELECT count(*)::int AS failures, max(finished_at) AS last, now() AS now FROM ${t.runs}
    WHERE state IN ('failed', 'lost')
      AND finished_at > coalesce((SELECT max(finished_at) FROM ${t.runs} WHERE state = 'succeeded'), '-infinity')`);
  const row = rows[0];
  return { consecutiveFailures: row?.failures ?? 0, lastFailureAt: row?.last ? row.last.getTime() : null, now: (row?.now ?? new Date()).getTime() };
}

/** Job names already used by runs that start with `base` (one-second names repeat in quick succession). */
export async function namesLike(q: Queryable, t: Tables, base: string): Promise<Set<string>> {
  const { rows } = await q.query<{ job_name: string }>(`SELECT job_name FROM ${t.runs} WHERE job_name = $1 OR job_name LIKE $1 || '-%'`, [base]);
  return new Set(rows.map((r) => r.job_name));
}

/**
 * Inserts a `submitting` run and claims every pending annotation for it, in the caller's transaction.
 * Returns the run with its exact annotation count.
 */
export async function insertAndClaim(client: PoolClient, t: Tables, jobName: string, namespace: string): Promise<Run> {
  const inserted = await client.query<{ id: number }>(
    `INSERT INTO ${t.runs} (job_name, namespace, state, annotation_count, create_attempts, last_attempt_at)
     VALUES ($1, $2, 'submitting', 0, 1, now()) RETURNING id::int`,
    [jobName, namespace],
  );
  const id = inserted.rows[0]?.id;
  if (id === undefined) throw new Error('insert into training_runs returned no id');
  const claimed = await client.query(`UPDATE ${t.annotations} SET training_run_id = $1 WHERE ${PENDING}`, [id]);
  const { rows } = await client.query<RunRow>(`UPDATE ${t.runs} SET annotation_count = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, claimed.rowCount ?? 0]);
  return toRun(rows[0] as RunRow);
}

/** Exact pending count, for a dry run (which claims nothing). */
export async function countPendingExact(q: Queryable, t: Tables): Promise<number> {
  const { rows } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.annotations} WHERE ${PENDING}`);
  return rows[0]?.n ?? 0;
}

export async function markRunning(q: Queryable, t: Tables, id: number, jobUid: string | undefined): Promise<boolean> {
  const r = await q.query(
    `UPDATE ${t.runs} SET state = 'running', submitted_at = coalesce(submitted_at, now()), job_uid = $2
     WHERE id = $1 AND state = 'submitting'`,
    [id, jobUid ?? null],
  );
  return r.rowCount === 1;
}

export async function rename(q: Queryable, t: Tables, id: number, jobName: string): Promise<boolean> {
  const r = await q.query(`UPDATE ${t.runs} SET job_name = $2 WHERE id = $1 AND state = 'submitting'`, [id, jobName]);
  return r.rowCount === 1;
}

/**
 * A lease on one create attempt for a `submitting` run: granted only when the previous attempt started more
 * than `leaseMs` ago (database time), so a replica never re-posts a run another is still creating.
 */
export async function leaseCreateAttempt(q: Queryable, t: Tables, id: number, leaseMs: number): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(
    `UPDATE ${t.runs} SET create_attempts = create_attempts + 1, last_attempt_at = now()
     WHERE id = $1 AND state = 'submitting' AND (last_attempt_at IS NULL OR last_attempt_at < now() - make_interval(secs => $2::float8 / 1000))
     RETURNING ${COLUMNS}`,
    [id, leaseMs],
  );
  return rows[0] ? toRun(rows[0]) : null;
}

/**
 * Job Complete, in one transaction: the run succeeded, and of its annotations those still verified become
 * used; any a reviewer un-verified while the Job trained are released (training_run_id = NULL), never marked
 * used. The training container reads `WHERE training_run_id = $TRAINING_RUN_ID AND verified`, so it also
 * skipped rows un-verified before it read them. Returns how many were marked used, or null when another
 * settle got there first.
 */
export async function settleSucceeded(pool: Pool, t: Tables, id: number, reason: string): Promise<{ trained: number; released: number } | null> {
  return withTransaction(pool, async (client) => {
    const run = await client.query(
      `UPDATE ${t.runs} SET state = 'succeeded', finished_at = now(), reason = $2 WHERE id = $1 AND state IN ('submitting', 'running')`,
      [id, reason],
    );
    if (run.rowCount !== 1) return null;
    const used = await client.query(`UPDATE ${t.annotations} SET used_for_training = true WHERE training_run_id = $1 AND verified IS TRUE`, [id]);
    const released = await client.query(`UPDATE ${t.annotations} SET training_run_id = NULL WHERE training_run_id = $1 AND verified IS NOT TRUE`, [id]);
    const trained = used.rowCount ?? 0;
    await client.query(`UPDATE ${t.runs} SET trained_count = $2 WHERE id = $1`, [id, trained]);
    return { trained, released: released.rowCount ?? 0 };
  });
}

export interface ReleaseGuard {
  /** Only a `submitting` run whose last create attempt started longer ago than this (database time). */
  submittingQuietForMs?: number;
}

/** Job Failed, gone, or never creatable: the run ends and its annotations are pending again. */
export async function settleReleased(pool: Pool, t: Tables, id: number, state: 'failed' | 'lost', reason: string, guard: ReleaseGuard = {}): Promise<boolean> {
  return withTransaction(pool, async (client) => {
    const quiet = guard.submittingQuietForMs;
    const run = await client.query(
      `UPDATE ${t.runs} SET state = $2, finished_at = now(), reason = $3
        WHERE id = $1 AND state IN ('submitting', 'running')
          AND ($4::float8 IS NULL OR (state = 'submitting' AND last_attempt_at < now() - make_interval(secs => $4::float8 / 1000)))`,
      [id, state, reason.slice(0, 2000), quiet ?? null],
    );
    if (run.rowCount !== 1) return false;
    await client.query(`UPDATE ${t.annotations} SET training_run_id = NULL WHERE training_run_id = $1 AND NOT used_for_training`, [id]);
    return true;
  });
}

/**
 * Namespaces of the open run and the latest runs: where a Job of ours may still carry our finalizer (a run
 * that ended in team-a after TRAINING_NAMESPACE moved to team-b).
 */
export async function recentNamespaces(q: Queryable, t: Tables): Promise<string[]> {
  const { rows } = await q.query<{ namespace: string }>(`SELECT DISTINCT namespace FROM (SELECT namespace FROM ${t.runs} ORDER BY id DESC LIMIT 20) r`);
  return rows.map((r) => r.namespace);
}

/** States of these runs (ids absent from the result do not exist in this database). */
export async function runStates(q: Queryable, t: Tables, ids: number[]): Promise<Map<number, RunState>> {
  const { rows } = await q.query<{ id: number; state: RunState }>(`SELECT id::int, state FROM ${t.runs} WHERE id = ANY($1::bigint[])`, [ids]);
  return new Map(rows.map((r) => [r.id, r.state]));
}

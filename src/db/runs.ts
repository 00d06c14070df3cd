// training_runs and the annotations a run claims: every statement that changes a run's state, each naming its
// tables qualified (tables.ts).
// Each settle statement is guarded by `state IN ('submitting','running')`, so two replicas (or a watch event
// racing the periodic pass) settle a run once: the loser updates no row and rolls back.
import { claimChunk, finishSettle, settleStep, type ChunkDeps, type SettleStep } from './chunks.js';
import { isLockTimeout } from './locks.js';
import type { Pool, PoolClient } from './pool.js';
import { withTransaction } from './pool.js';
import { PENDING } from './pending.js';
import type { FailureHistory } from '../core/backoff.js';
import type { Tables } from './tables.js';
import type { ReleasedState, Run, RunState } from '../core/run.js';
import type { TriggerKind } from '../core/triggers.js';

type Queryable = Pool | PoolClient;

export async function openRun(q: Queryable, t: Tables): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(
    `SELECT ${COLUMNS} FROM ${t.runs} WHERE state IN ('submitting', 'running') LIMIT 1`,
  );
  return rows[0] ? toRun(rows[0]) : null;
}

export async function runById(q: Queryable, t: Tables, id: number): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(`SELECT ${COLUMNS} FROM ${t.runs} WHERE id = $1`, [id]);
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
  return {
    consecutiveFailures: row?.failures ?? 0,
    lastFailureAt: row?.last ? row.last.getTime() : null,
    now: (row?.now ?? new Date()).getTime(),
  };
}

/** Job names already used by runs that start with `base` (one-second names repeat in quick succession). */
export async function namesLike(q: Queryable, t: Tables, base: string): Promise<Set<string>> {
  const { rows } = await q.query<{ job_name: string }>(
    `SELECT job_name FROM ${t.runs} WHERE job_name = $1 OR job_name LIKE $1 || '-%'`,
    [base],
  );
  return new Set(rows.map((r) => r.job_name));
}

/**
 * Inserts a `submitting` run and claims the first chunk of the pending annotations for it, in the caller's
 * transaction. The claim covers the pending ids up to the highest one now; `complete` says the first chunk
 * took them all (the common case: a batch of a few hundred). Otherwise finishClaim (chunks.ts) takes the rest,
 * each chunk in its own transaction, before the Job is created.
 */
export async function insertAndClaim(
  client: PoolClient,
  t: Tables,
  jobName: string,
  namespace: string,
  chunkRows: number,
  trigger: { kind: TriggerKind; reason: string | null } = { kind: 'threshold', reason: null },
): Promise<{ run: Run; complete: boolean }> {
  const inserted = await client.query<{ id: number; through: string | null }>(
    `INSERT INTO ${t.runs} (job_name, namespace, state, annotation_count, create_attempts, last_attempt_at, claim_through, claim_pending,
                            trigger_kind, trigger_reason)
     VALUES ($1, $2, 'submitting', 0, 1, now(), (SELECT id::text AS top FROM ${t.annotations} WHERE ${PENDING} ORDER BY id DESC LIMIT 1), true, $3, $4)
     RETURNING id::int, claim_through::text AS through`,
    [jobName, namespace, trigger.kind, trigger.reason],
  );
  const row = inserted.rows[0];
  if (row === undefined) throw new Error('insert into training_runs returned no id');
  const first = await claimChunk(client, t, row.id, null, row.through, chunkRows);
  const complete = first.seen < chunkRows;
  const { rows } = await client.query<RunRow>(
    `UPDATE ${t.runs} SET annotation_count = $2, claim_cursor = $3, claim_pending = NOT $4 WHERE id = $1 RETURNING ${COLUMNS}`,
    [row.id, first.done, first.last, complete],
  );
  return { run: toRun(rows[0] as RunRow), complete };
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
 * Records a run's outcome, guarded so two replicas (or a watch event racing the periodic pass) record it once,
 * and settles its annotations: those still verified become used on success, the rest are released. A run
 * that fits in one chunk (most runs) is settled in this same transaction; a larger one is recorded with
 * settle_pending and finished chunk by chunk (finishSettle), each chunk its own transaction. A claim still in
 * progress stops here: what it took is released. Returns the totals, or null when another settle got there first.
 */
async function settle(
  deps: ChunkDeps,
  id: number,
  state: 'succeeded' | ReleasedState,
  reason: string,
  guard: ReleaseGuard = {},
): Promise<SettleStep | null> {
  const t = deps.tables;
  const first = await withTransaction(deps.pool, async (client) => {
    const quiet = guard.submittingQuietForMs;
    const run = await client.query(
      `UPDATE ${t.runs} SET state = $2, finished_at = now(), reason = $3, claim_pending = false,
              settle_pending = true, settle_cursor = NULL, released_count = 0, trained_count = CASE WHEN $2 = 'succeeded' THEN 0 END
        WHERE id = $1 AND state IN ('submitting', 'running')
          AND ($4::float8 IS NULL OR (state = 'submitting' AND last_attempt_at < now() - make_interval(secs => $4::float8 / 1000)))`,
      [id, state, reason.slice(0, 2000), quiet ?? null],
    );
    if (run.rowCount !== 1) return null;
    await client.query('SAVEPOINT first_chunk');
    try {
      return await settleStep(client, t, id, state === 'succeeded', null, deps.chunkRows);
    } catch (err: unknown) {
      if (!isLockTimeout(err)) throw err;
      // A Triage transaction holds a row of the first chunk: record the outcome now, settle in chunks after.
      await client.query('ROLLBACK TO SAVEPOINT first_chunk');
      return { complete: false, trained: 0, released: 0 };
    }
  });
  if (first === null || first.complete) return first;
  const totals = await finishSettle(deps, id);
  return totals ? { complete: true, ...totals } : first;
}

/**
 * Job Complete: the run succeeded, and of its annotations those still verified become used; any a reviewer
 * un-verified while the Job trained are released (training_run_id = NULL), never marked used. The training
 * container reads `WHERE training_run_id = $TRAINING_RUN_ID AND verified`, so it also skipped rows un-verified
 * before it read them. Returns how many were marked used and released, or null when another settle got there first.
 */
export async function settleSucceeded(
  deps: ChunkDeps,
  id: number,
  reason: string,
): Promise<{ trained: number; released: number } | null> {
  return settle(deps, id, 'succeeded', reason);
}

export interface ReleaseGuard {
  /** Only a `submitting` run whose last create attempt started longer ago than this (database time). */
  submittingQuietForMs?: number;
}

/** Job Failed, gone, or never creatable: the run ends and its annotations are pending again. */
export async function settleReleased(
  deps: ChunkDeps,
  id: number,
  state: ReleasedState,
  reason: string,
  guard: ReleaseGuard = {},
): Promise<boolean> {
  return (await settle(deps, id, state, reason, guard)) !== null;
}

/**
 * A run whose chunked work a crash (or a lost connection) left unfinished: a settle whose outcome is recorded,
 * or a baseline part way. Nothing new starts until it is finished (README "Big backlogs").
 */
export async function unfinishedRun(q: Queryable, t: Tables): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(
    `SELECT ${COLUMNS} FROM ${t.runs} WHERE settle_pending OR (state = 'baseline' AND claim_pending) ORDER BY id LIMIT 1`,
  );
  return rows[0] ? toRun(rows[0]) : null;
}

/**
 * A run cancelled while its Job create had not answered (no Job confirmed), its last attempt less than
 * `quietMs` ago: a slow API server (an admission webhook) may still persist that Job, so the next run waits
 * until then (the reconciler deletes such a Job when it appears). `untilMs` is on the database clock.
 */
export async function cancelledInFlight(
  q: Queryable,
  t: Tables,
  quietMs: number,
): Promise<(Run & { untilMs: number }) | null> {
  const { rows } = await q.query<RunRow & { until_ms: number }>(
    `SELECT ${COLUMNS}, (extract(epoch FROM last_attempt_at) * 1000 + $1)::float8 AS until_ms FROM ${t.runs}
      WHERE state = 'cancelled' AND submitted_at IS NULL AND create_attempts > 0
        AND last_attempt_at > now() - make_interval(secs => $1::float8 / 1000)
      ORDER BY id DESC LIMIT 1`,
    [quietMs],
  );
  return rows[0] ? { ...toRun(rows[0]), untilMs: rows[0].until_ms } : null;
}

/**
 * Namespaces of the open run and the latest runs: where a Job of ours may still carry our finalizer (a run
 * that ended in team-a after TRAINING_NAMESPACE moved to team-b).
 */
export async function recentNamespaces(q: Queryable, t: Tables): Promise<string[]> {
  const { rows } = await q.query<{ namespace: string }>(
    `SELECT DISTINCT namespace FROM (SELECT namespace FROM ${t.runs} WHERE state <> 'baseline' ORDER BY id DESC LIMIT 20) r`,
  );
  return rows.map((r) => r.namespace);
}

/** States of these runs (ids absent from the result do not exist in this database). */
export async function runStates(q: Queryable, t: Tables, ids: number[]): Promise<Map<number, RunState>> {
  const { rows } = await q.query<{ id: number; state: RunState }>(
    `SELECT id::int, state FROM ${t.runs} WHERE id = ANY($1::bigint[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r.state]));
}

// The columns every query on training_runs selects, and their mapping to Run.
const COLUMNS = `id::int, job_name, namespace, state, annotation_count, create_attempts, created_at, submitted_at, finished_at, reason,
  claim_pending, claim_cursor, claim_through, settle_pending, trained_count, released_count,
  coalesce(trigger_kind, 'threshold') AS trigger_kind, trigger_reason, cancel_requested_at, cancel_by, cancel_reason`;

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
  claim_pending: boolean;
  claim_cursor: string | null;
  claim_through: string | null;
  settle_pending: boolean;
  trained_count: number | null;
  released_count: number | null;
  trigger_kind: TriggerKind;
  trigger_reason: string | null;
  cancel_requested_at: Date | null;
  cancel_by: string | null;
  cancel_reason: string | null;
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
  claimPending: r.claim_pending,
  claimCursor: r.claim_cursor,
  claimThrough: r.claim_through,
  settlePending: r.settle_pending,
  trainedCount: r.trained_count,
  releasedCount: r.released_count,
  triggerKind: r.trigger_kind,
  triggerReason: r.trigger_reason,
  cancelRequestedAt: r.cancel_requested_at,
  cancelBy: r.cancel_by,
  cancelReason: r.cancel_reason,
});

/** A baseline run (`training-controller baseline`): no Job; its claim marks everything pending (before `before`) used. */
export async function insertBaseline(
  client: PoolClient,
  t: Tables,
  before: Date | null,
  reason: string,
): Promise<number> {
  const { rows } = await client.query<{ id: number }>(
    `INSERT INTO ${t.runs} (job_name, namespace, state, annotation_count, reason, claim_through, claim_pending, baseline_before)
     VALUES ('baseline-' || to_char(clock_timestamp(), 'YYYYMMDD-HH24MISS-US'), '', 'baseline', 0, $2,
             (SELECT id::text AS top FROM ${t.annotations} WHERE ${PENDING} ORDER BY id DESC LIMIT 1), true, $1)
     RETURNING id::int`,
    [before, reason],
  );
  return rows[0]!.id;
}

/** `training-controller cancel`: recorded on the open run, for the service to carry out. */
export async function requestCancel(
  q: Queryable,
  t: Tables,
  id: number,
  by: string,
  reason: string | null,
): Promise<void> {
  await q.query(
    `UPDATE ${t.runs} SET cancel_requested_at = coalesce(cancel_requested_at, now()), cancel_by = $2, cancel_reason = $3
      WHERE id = $1 AND state IN ('submitting', 'running')`,
    [id, by, reason],
  );
}

/** The newest run's id (0 when none): `trigger` waits for a manual run after it. */
export async function lastRunId(q: Queryable, t: Tables): Promise<number> {
  const { rows } = await q.query<{ last: number }>(`SELECT coalesce(max(id), 0)::int AS last FROM ${t.runs}`);
  return rows[0]?.last ?? 0;
}

/** The first manually triggered run after `after`, if one started. */
export async function manualRunAfter(q: Queryable, t: Tables, after: number): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(
    `SELECT ${COLUMNS} FROM ${t.runs} WHERE id > $1 AND trigger_kind = 'manual' ORDER BY id LIMIT 1`,
    [after],
  );
  return rows[0] ? toRun(rows[0]) : null;
}

/**
 * Writes (or clears) a pod problem as the open run's reason (loop/runPods.ts). Only an open run, and a clear
 * only removes a reason written this way (podProblem.ts problemText), so it never erases another. True when a
 * row changed.
 */
export async function setPodProblem(q: Queryable, t: Tables, runId: number, text: string | null): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE ${t.runs} SET reason = $2
     WHERE id = $1 AND state IN ('submitting', 'running')
       AND ($2::text IS NOT NULL OR reason LIKE 'pod cannot start (%')`,
    [runId, text?.slice(0, 2000) ?? null],
  );
  return (rowCount ?? 0) > 0;
}

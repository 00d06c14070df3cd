// Every statement on training_runs, each naming its tables qualified (tables.ts). chunks.ts walks a claim or a
// settle with these and the annotation statements of annotations.ts, a chunk per transaction.
import type { Pool, PoolClient } from './pool.js';
import { PENDING } from './annotations.js';
import type { FailureHistory } from '../core/backoff.js';
import type { Tables } from './tables.js';
import type { Run, RunState } from '../core/run.js';
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

/** The Job name of the newest run that had one (baseline runs have none of a Job), or null. */
export async function lastJobName(q: Queryable, t: Tables): Promise<string | null> {
  const { rows } = await q.query<{ job_name: string }>(
    `SELECT job_name FROM ${t.runs} WHERE state <> 'baseline' ORDER BY id DESC LIMIT 1`,
  );
  return rows[0]?.job_name ?? null;
}

/** When the last run succeeded (ms since the epoch), null if none ever: the last_success_timestamp_seconds gauge. */
export async function lastSuccessAt(q: Queryable, t: Tables): Promise<number | null> {
  const { rows } = await q.query<{ last: Date | null }>(
    `SELECT max(finished_at) AS last FROM ${t.runs} WHERE state = 'succeeded'`,
  );
  return rows[0]?.last ? rows[0].last.getTime() : null;
}

/** Job names already used by runs that start with `base` (one-second names repeat in quick succession). */
export async function namesLike(q: Queryable, t: Tables, base: string): Promise<Set<string>> {
  const { rows } = await q.query<{ job_name: string }>(
    `SELECT job_name FROM ${t.runs} WHERE job_name = $1 OR job_name LIKE $1 || '-%'`,
    [base],
  );
  return new Set(rows.map((r) => r.job_name));
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
 * Stamps a create attempt as sent now, right before its request goes out: a run cancelled while that create is
 * unanswered holds the next run for lateCreateWindowMs from this instant (cancelledInFlight), and a run is given
 * up only that long after it (recordOutcome), so the stamp must not come before anything slow (a chunked claim,
 * a read by name). False when the run is no longer to be created: it ended (another replica), or a cancel was
 * requested, which the reconciler carries out; no create is sent then.
 */
export async function stampCreateSent(q: Queryable, t: Tables, id: number): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE ${t.runs} SET last_attempt_at = now() WHERE id = $1 AND state = 'submitting' AND cancel_requested_at IS NULL`,
    [id],
  );
  return rowCount === 1;
}

/**
 * A run whose chunked work a crash (or a lost connection) left unfinished: a settle whose outcome is recorded,
 * or a baseline part way. Nothing new starts until it is finished (docs/migrations.md "Big backlogs").
 */
export async function unfinishedRun(q: Queryable, t: Tables): Promise<Run | null> {
  const { rows } = await q.query<RunRow>(
    `SELECT ${COLUMNS} FROM ${t.runs} WHERE settle_pending OR (state = 'baseline' AND claim_pending) ORDER BY id LIMIT 1`,
  );
  return rows[0] ? toRun(rows[0]) : null;
}

/**
 * A run cancelled while its Job create had not answered (no Job confirmed), its last create sent less than
 * `quietMs` ago (stampCreateSent): a slow API server (an admission webhook) may still persist that Job, so the
 * next run waits until then (the reconciler deletes such a Job when it appears). `untilMs` is on the database
 * clock.
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

/**
 * A new `submitting` run, its Job name fixed now, claiming the pending ids up to the highest one now
 * (claim_through); chunks.ts claims them. Returns its id and that bound.
 */
export async function insertSubmitting(
  client: PoolClient,
  t: Tables,
  jobName: string,
  namespace: string,
  trigger: { kind: TriggerKind; reason: string | null },
): Promise<{ id: number; through: string | null }> {
  const { rows } = await client.query<{ id: number; through: string | null }>(
    `INSERT INTO ${t.runs} (job_name, namespace, state, annotation_count, create_attempts, last_attempt_at, claim_through, claim_pending,
                            trigger_kind, trigger_reason)
     VALUES ($1, $2, 'submitting', 0, 1, now(), (SELECT id::text AS top FROM ${t.annotations} WHERE ${PENDING} ORDER BY id DESC LIMIT 1), true, $3, $4)
     RETURNING id::int, claim_through::text AS through`,
    [jobName, namespace, trigger.kind, trigger.reason],
  );
  const row = rows[0];
  if (row === undefined) throw new Error('insert into training_runs returned no id');
  return row;
}

export interface ClaimProgress {
  state: RunState;
  cursor: string | null;
  through: string | null;
  baselineBefore: Date | null;
}

/** The progress of a claim (or baseline) still under way, its row locked for this chunk; null when none is. */
export async function lockClaimProgress(client: PoolClient, t: Tables, id: number): Promise<ClaimProgress | null> {
  const { rows } = await client.query<ClaimProgress>(
    `SELECT state, claim_cursor AS cursor, claim_through AS through, baseline_before AS "baselineBefore"
       FROM ${t.runs} WHERE id = $1 AND claim_pending FOR UPDATE`,
    [id],
  );
  return rows[0] ?? null;
}

/** One claim chunk recorded: the cursor moves on, the count grows; a baseline ends with its last chunk. */
export async function advanceClaim(
  client: PoolClient,
  t: Tables,
  id: number,
  last: string | null,
  claimed: number,
  complete: boolean,
): Promise<Run> {
  const { rows } = await client.query<RunRow>(
    `UPDATE ${t.runs} SET claim_cursor = coalesce($2, claim_cursor), claim_pending = NOT $4, annotation_count = annotation_count + $3,
            finished_at = CASE WHEN $4 AND state = 'baseline' THEN now() ELSE finished_at END
      WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, last, claimed, complete],
  );
  return toRun(rows[0] as RunRow);
}

/** The progress of a settle still under way, its row locked for this chunk; null when none is. */
export async function lockSettleProgress(
  client: PoolClient,
  t: Tables,
  id: number,
): Promise<{ state: RunState; cursor: string | null } | null> {
  const { rows } = await client.query<{ state: RunState; cursor: string | null }>(
    `SELECT state, settle_cursor AS cursor FROM ${t.runs} WHERE id = $1 AND settle_pending FOR UPDATE`,
    [id],
  );
  return rows[0] ?? null;
}

/** One settle chunk recorded; returns the run's totals so far. */
export async function advanceSettle(
  client: PoolClient,
  t: Tables,
  id: number,
  chunk: { last: string | null; done: number; released: number },
  complete: boolean,
): Promise<{ trained: number; released: number }> {
  const { rows } = await client.query<{ trained: number | null; released: number }>(
    `UPDATE ${t.runs} SET settle_cursor = coalesce($2, settle_cursor), settle_pending = NOT $5,
            trained_count = trained_count + $3, released_count = released_count + $4
      WHERE id = $1 RETURNING trained_count AS trained, released_count AS released`,
    [id, chunk.last, chunk.done, chunk.released, complete],
  );
  return { trained: rows[0]?.trained ?? 0, released: rows[0]?.released ?? 0 };
}

/**
 * A run's outcome, recorded once: guarded by `state IN ('submitting','running')` (and, with quietForMs, a
 * `submitting` run's last create attempt older than that), so two replicas or a watch event racing the
 * periodic pass record it once. Its settle starts (settle_pending). False when another got there first.
 */
export async function recordOutcome(
  client: PoolClient,
  t: Tables,
  id: number,
  state: RunState,
  reason: string,
  quietForMs: number | null,
): Promise<boolean> {
  const { rowCount } = await client.query(
    `UPDATE ${t.runs} SET state = $2, finished_at = now(), reason = $3, claim_pending = false,
            settle_pending = true, settle_cursor = NULL, released_count = 0, trained_count = CASE WHEN $2 = 'succeeded' THEN 0 END
      WHERE id = $1 AND state IN ('submitting', 'running')
        AND ($4::float8 IS NULL OR (state = 'submitting' AND last_attempt_at < now() - make_interval(secs => $4::float8 / 1000)))`,
    [id, state, reason.slice(0, 2000), quietForMs],
  );
  return rowCount === 1;
}

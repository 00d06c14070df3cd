// Claims, settles, releases and baselines in chunks (issue #14). One UPDATE of 1,000,000 annotations held its
// row locks for ~25 s, so a Triage relabel of a row in the batch waited 23 s. Here each chunk of `rows`
// annotations (CHUNK_ROWS, 2,000 by default: ~30-60 ms here, see docs/performance.md) is its own transaction,
// and the run's row in training_runs records how far the work got in that same transaction, so a crash
// between chunks loses nothing: a restart continues from the cursor. After the first chunk the walk is paced
// (core/pace.ts): a chunk whose COMMIT was slow halves the next, and each chunk is followed by a pause as long
// as its commit took, so a Triage writer's commit never queues long behind our WAL flush on a real disk.
//
// A claim skips rows a Triage transaction holds (they stay pending). A settle must reach every row of its run,
// so it waits, but at most LOCK_TIMEOUT_MS, then rolls back and tries again: a Triage writer never waits on us
// longer than one chunk, and we are never the side that holds on in a deadlock (lock_timeout is far below
// deadlock_timeout's 1 s). Every chunk runs under that lock_timeout, so neither queues writers behind a
// table-level lock request either.
//
// The walk is by id from the cursor: a claim or baseline through annotations_pending (id), a settle or
// release through annotations_run_claims (training_run_id, id), so a chunk is an index range scan of about
// `rows` entries and the whole walk is linear. The UPDATE repeats the chunk's id range: joined to the chunk
// alone, the planner, whose statistics still said "no row has a run" right after a claim, scanned all of the
// run's rows once per chunk row (a 200,000-row settle did not finish in 60 s).
import type { Pool, PoolClient } from './pool.js';
import { withTransaction } from './pool.js';
import type { Logger } from '../core/logger.js';
import { Pace } from '../core/pace.js';
import { realTimers, sleep, type Timers } from '../core/timers.js';
import { isLockTimeout, retryOnLockTimeout } from './locks.js';
import { claimChunk, refuseRowSecurity, settleChunk } from './annotations.js';
import {
  advanceClaim,
  advanceSettle,
  insertSubmitting,
  lockClaimProgress,
  lockSettleProgress,
  recordOutcome,
} from './runs.js';
import type { ReleasedState, Run } from '../core/run.js';
import type { TriggerKind } from '../core/triggers.js';
import type { Tables } from './tables.js';

// After a lock timeout: 10 ms doubling to 1 s before the chunk is tried again. A row locked for longer than
// STUCK_WARN_MS is worth a warning (a Triage transaction left open), never a failure.
const RETRY_FIRST_MS = 10;
const RETRY_MAX_MS = 1_000;
const STUCK_WARN_MS = 10_000;

export interface ChunkDeps {
  pool: Pool;
  tables: Tables;
  logger: Logger;
  /** Annotations per chunk transaction (CHUNK_ROWS). */
  chunkRows: number;
  /** The clock of the waits after a lock timeout; the real one when absent. */
  timers?: Timers;
  /** True once the service is shutting down: the walk stops between chunks (the restart finishes it). */
  stopping?: () => boolean;
}

/**
 * Thrown between two chunks when the service is shutting down: a 1,000,000-row claim takes ~25 s, longer than
 * SHUTDOWN_TIMEOUT_MS. What is done is committed and recorded; the restarted service finishes the rest.
 */
export class ChunkInterrupted extends Error {
  constructor(what: string) {
    super(`Shutting down: the ${what} stops between chunks; the restarted service finishes it`);
  }
}

/**
 * Finishes the chunked claim (or baseline) of a run from where it stands. Each chunk locks the run's row
 * first, so two processes finishing the same claim take turns. Returns false when there was no claim in
 * progress (another process finished it).
 */
export async function finishClaim(
  deps: ChunkDeps,
  runId: number,
  onChunk?: (claimed: number) => void,
): Promise<boolean> {
  const t = deps.tables;
  const pace = new Pace(deps.chunkRows);
  let worked = false;
  for (;;) {
    if (deps.stopping?.()) throw new ChunkInterrupted(`claim of run ${runId}`);
    const { value: step, commitMs } = await chunkWithRetry(deps, `claim of run ${runId}`, async (client) => {
      const p = await lockClaimProgress(client, t, runId);
      if (!p) return 'none';
      const rows = pace.rows;
      const r = await claimChunk(client, t, runId, p.cursor, p.through, rows, {
        used: p.state === 'baseline',
        before: p.baselineBefore,
      });
      const complete = r.seen < rows; // fewer than asked for: that was the end
      await advanceClaim(client, t, runId, r.last, r.done, complete);
      onChunk?.(r.done);
      return complete ? 'complete' : 'more';
    });
    if (step === 'none') return worked;
    worked = true;
    if (step === 'complete') return true;
    await pause(deps, pace.committed(commitMs));
  }
}

/**
 * Finishes the settle of a run whose outcome is recorded (settle_pending). Returns its totals when a chunk of
 * this process completed it, or null when another process did (two replicas walk the same settle one chunk
 * at a time: only the one that commits the last chunk counts what it trained).
 */
export async function finishSettle(
  deps: ChunkDeps,
  runId: number,
): Promise<{ trained: number; released: number } | null> {
  const t = deps.tables;
  const pace = new Pace(deps.chunkRows);
  for (;;) {
    if (deps.stopping?.()) throw new ChunkInterrupted(`settle of run ${runId}`);
    const { value: step, commitMs } = await chunkWithRetry(deps, `settle of run ${runId}`, async (client) => {
      const p = await lockSettleProgress(client, t, runId);
      if (!p) return null;
      return settleStep(client, t, runId, p.state === 'succeeded', p.cursor, pace.rows);
    });
    if (step === null) return null; // none pending, or another process finished it
    if (step.complete) return { trained: step.trained, released: step.released };
    await pause(deps, pace.committed(commitMs));
  }
}

/** The pause between two chunks (core/pace.ts), on the walk's clock. */
async function pause(deps: ChunkDeps, ms: number): Promise<void> {
  if (ms > 0) await sleep(deps.timers ?? realTimers, ms);
}

export interface SettleStep {
  complete: boolean;
  trained: number;
  released: number;
}

/** One settle chunk and the run's progress, in the caller's transaction (the run's row locked or just updated). */
export async function settleStep(
  client: PoolClient,
  t: Tables,
  runId: number,
  succeeded: boolean,
  cursor: string | null,
  rows: number,
): Promise<SettleStep> {
  const r = await settleChunk(client, t, runId, succeeded, cursor, rows);
  // Fewer rows than asked for: that was the end (so a run of one chunk settles in one transaction).
  const complete = r.seen < rows;
  return { complete, ...(await advanceSettle(client, t, runId, r, complete)) };
}

/**
 * Inserts a `submitting` run and claims the first chunk of the pending annotations for it, in the caller's
 * transaction. The claim covers the pending ids up to the highest one now; `complete` says the first chunk
 * took them all (the common case: a batch of a few hundred). Otherwise finishClaim takes the rest, each
 * chunk in its own transaction, before the Job is created.
 */
export async function insertAndClaim(
  client: PoolClient,
  t: Tables,
  jobName: string,
  namespace: string,
  chunkRows: number,
  trigger: { kind: TriggerKind; reason: string | null } = { kind: 'threshold', reason: null },
): Promise<{ run: Run; complete: boolean }> {
  await refuseRowSecurity(client, t);
  const { id, through } = await insertSubmitting(client, t, jobName, namespace, trigger);
  const first = await claimChunk(client, t, id, null, through, chunkRows);
  const complete = first.seen < chunkRows;
  return { run: await advanceClaim(client, t, id, first.last, first.done, complete), complete };
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
    // Before the outcome: a settle that a policy lets see none of its rows would record it and strand them.
    await refuseRowSecurity(client, t);
    if (!(await recordOutcome(client, t, id, state, reason, guard.submittingQuietForMs ?? null))) return null;
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
  if (first === null) return null;
  // Committed: the outcome is recorded whatever happens to the chunks after it (a restart finishes them).
  guard.onRecorded?.();
  if (first.complete) return first;
  const totals = await finishSettle(deps, id);
  return totals ? { complete: true, ...totals } : first; // first: complete false, another process finished it
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
  guard: ReleaseGuard = {},
): Promise<SettleStep | null> {
  return settle(deps, id, 'succeeded', reason, guard);
}

export interface ReleaseGuard {
  /** Only a `submitting` run whose last create attempt started longer ago than this (database time). */
  submittingQuietForMs?: number;
  /**
   * Called once the outcome is committed, before a chunked settle goes on: a restart in the middle of the
   * chunks must not lose the count of a recorded outcome (runs_finished_total, the TrainingRunFailed alert).
   */
  onRecorded?: () => void;
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
 * Runs one chunk in its own transaction, again after a lock timeout (see the header). Returns its result and
 * how long its COMMIT took (the pace's signal).
 */
async function chunkWithRetry<T>(
  deps: ChunkDeps,
  what: string,
  fn: (client: PoolClient) => Promise<T>,
): Promise<{ value: T; commitMs: number }> {
  const clock = deps.timers ?? realTimers;
  let bodyDoneAt = 0;
  let warned = false;
  const body = async (client: PoolClient) => {
    await refuseRowSecurity(client, deps.tables);
    const value = await fn(client);
    bodyDoneAt = clock.now();
    return value;
  };
  const value = await retryOnLockTimeout(() => withTransaction(deps.pool, body), {
    firstMs: RETRY_FIRST_MS,
    maxMs: RETRY_MAX_MS,
    timers: deps.timers ?? realTimers,
    onRetry: (_attempt, _wait, waitedMs) => {
      if (deps.stopping?.()) throw new ChunkInterrupted(what); // a row kept locked must not hold the shutdown
      if (!warned && waitedMs > STUCK_WARN_MS) {
        warned = true;
        deps.logger.warn({ what, waitedMs }, CHUNK_STUCK);
      }
    },
  });
  return { value, commitMs: clock.now() - bodyDoneAt };
}

/** Logged once when a chunk has waited STUCK_WARN_MS for rows another transaction keeps locked. */
export const CHUNK_STUCK = 'A transaction has kept rows of this chunk locked for over 10 s: still retrying';

// Claims, settles, releases and baselines in chunks (issue #14). One UPDATE of 1,000,000 annotations held its
// row locks for ~25 s, so a Triage relabel of a row in the batch waited 23 s. Here each chunk of `rows`
// annotations (CHUNK_ROWS, 2,000 by default: ~30-60 ms here, see README "Performance") is its own transaction,
// and the run's row in training_runs records how far the work got in that same transaction, so a crash
// between chunks loses nothing: a restart continues from the cursor.
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
import { realTimers, type Timers } from '../core/timers.js';
import { retryOnLockTimeout } from './locks.js';
import { PENDING, VERIFIED_AT } from './pending.js';
import type { Tables } from './tables.js';

export const LOCK_TIMEOUT_MS = 50;
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

export interface ChunkResult {
  /** The highest id the chunk looked at; null when there was nothing left (the walk is complete). */
  last: string | null;
  /** Rows claimed, or (settle) marked used. */
  done: number;
  /** Rows a settle released. */
  released: number;
  /** Rows the chunk looked at: fewer than asked for means it reached the end. */
  seen: number;
}

/**
 * A claim (or, with `used`, a baseline): pending rows with ids in (cursor, through], taken for `runId`. A row
 * a Triage transaction is writing at that instant is skipped (SKIP LOCKED), never waited for: it stays
 * pending, for the next run.
 */
export async function claimChunk(
  client: PoolClient,
  t: Tables,
  runId: number,
  cursor: string | null,
  through: string | null,
  rows: number,
  opts: { used?: boolean; before?: Date | null } = {},
): Promise<ChunkResult> {
  await client.query(`SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}`);
  const p = new Params(runId, rows);
  // Ids are compared in their own type (bigint, uuid, text: $n takes the column's type), never as numbers.
  const after = cursor === null ? null : p.add(cursor);
  const upTo = p.add(through);
  const range = (id: string) => `${after === null ? '' : `AND ${id} > ${after}`} AND ${id} <= ${upTo}`;
  const before = opts.before ? `AND ${VERIFIED_AT} < ${p.add(opts.before.toISOString())}::timestamptz` : '';
  const { rows: r } = await client.query<{ last: string | null; done: number; seen: number }>(
    `WITH c AS (
       SELECT id FROM ${t.annotations} WHERE ${PENDING} ${range('id')} ${before} ORDER BY id LIMIT $2
       FOR UPDATE SKIP LOCKED
     ), u AS (
       UPDATE ${t.annotations} a SET training_run_id = $1${opts.used ? ', used_for_training = true' : ''}
         WHERE a.id = ANY (ARRAY(SELECT id FROM c)) ${range('a.id')} AND a.id <= (SELECT id FROM c ORDER BY id DESC LIMIT 1)
           AND ${PENDING} ${before} RETURNING 1
     )
     SELECT (SELECT id FROM c ORDER BY id DESC LIMIT 1)::text AS last, (SELECT count(*) FROM u)::int AS done, (SELECT count(*) FROM c)::int AS seen`,
    p.values,
  );
  return { last: r[0]?.last ?? null, done: r[0]?.done ?? 0, released: 0, seen: r[0]?.seen ?? 0 };
}

/** Numbered query parameters: $1 and $2 are always the run id and the chunk size. */
class Params {
  readonly values: unknown[];
  constructor(...first: unknown[]) {
    this.values = first;
  }
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * A settle: the run's annotations not yet used, from the cursor on. Succeeded: those still verified become
 * used, any a reviewer un-verified while it trained are released. Failed or lost: all are released.
 */
export async function settleChunk(
  client: PoolClient,
  t: Tables,
  runId: number,
  succeeded: boolean,
  cursor: string | null,
  rows: number,
): Promise<ChunkResult> {
  await client.query(`SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}`);
  const used = succeeded ? 'a.verified IS TRUE' : 'false';
  const p = new Params(runId, rows);
  const after = cursor === null ? null : p.add(cursor);
  const from = (id: string) => (after === null ? '' : `AND ${id} > ${after}`);
  const { rows: r } = await client.query<{ last: string | null; done: number; released: number; seen: number }>(
    `WITH c AS (
       SELECT id FROM ${t.annotations} WHERE training_run_id = $1 AND NOT used_for_training ${from('id')} ORDER BY training_run_id, id LIMIT $2
     ), u AS (
       UPDATE ${t.annotations} a SET used_for_training = ${used}, training_run_id = CASE WHEN ${used} THEN a.training_run_id END
         WHERE a.id = ANY (ARRAY(SELECT id FROM c)) AND a.training_run_id = $1 ${from('a.id')}
           AND a.id <= (SELECT id FROM c ORDER BY id DESC LIMIT 1) AND NOT a.used_for_training RETURNING a.used_for_training AS used
     )
     SELECT (SELECT id FROM c ORDER BY id DESC LIMIT 1)::text AS last, count(*) FILTER (WHERE used)::int AS done,
            count(*) FILTER (WHERE NOT used)::int AS released, (SELECT count(*) FROM c)::int AS seen FROM u`,
    p.values,
  );
  return { last: r[0]?.last ?? null, done: r[0]?.done ?? 0, released: r[0]?.released ?? 0, seen: r[0]?.seen ?? 0 };
}

interface ClaimProgress {
  state: string;
  claim_cursor: string | null;
  claim_through: string | null;
  baseline_before: Date | null;
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
  let worked = false;
  for (;;) {
    if (deps.stopping?.()) throw new ChunkInterrupted(`claim of run ${runId}`);
    const step = await chunkWithRetry(deps, `claim of run ${runId}`, async (client) => {
      const { rows } = await client.query<ClaimProgress>(
        `SELECT state, claim_cursor, claim_through, baseline_before FROM ${t.runs} WHERE id = $1 AND claim_pending FOR UPDATE`,
        [runId],
      );
      const p = rows[0];
      if (!p) return 'none';
      const baseline = p.state === 'baseline';
      const r = await claimChunk(client, t, runId, p.claim_cursor, p.claim_through, deps.chunkRows, {
        used: baseline,
        before: p.baseline_before,
      });
      const complete = r.seen < deps.chunkRows; // fewer than asked for: that was the end
      await client.query(
        `UPDATE ${t.runs} SET claim_cursor = coalesce($2, claim_cursor), claim_pending = NOT $4, annotation_count = annotation_count + $3,
                finished_at = CASE WHEN $4 AND state = 'baseline' THEN now() ELSE finished_at END
          WHERE id = $1`,
        [runId, r.last, r.done, complete],
      );
      onChunk?.(r.done);
      return complete ? 'complete' : 'more';
    });
    if (step === 'none') return worked;
    worked = true;
    if (step === 'complete') return true;
  }
}

/** Finishes the settle of a run whose outcome is recorded (settle_pending). Returns its totals, or null if this process settled nothing. */
export async function finishSettle(
  deps: ChunkDeps,
  runId: number,
): Promise<{ trained: number; released: number } | null> {
  const t = deps.tables;
  let totals: { trained: number; released: number } | null = null;
  for (;;) {
    if (deps.stopping?.()) throw new ChunkInterrupted(`settle of run ${runId}`);
    const step = await chunkWithRetry(deps, `settle of run ${runId}`, async (client) => {
      const { rows } = await client.query<{ state: string; settle_cursor: string | null }>(
        `SELECT state, settle_cursor FROM ${t.runs} WHERE id = $1 AND settle_pending FOR UPDATE`,
        [runId],
      );
      const p = rows[0];
      if (!p) return null;
      return settleStep(client, t, runId, p.state === 'succeeded', p.settle_cursor, deps.chunkRows);
    });
    if (step === null) return totals; // none pending, or another process finished it
    totals = { trained: step.trained, released: step.released };
    if (step.complete) return totals;
  }
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
  const { rows: totals } = await client.query<{ trained: number | null; released: number }>(
    `UPDATE ${t.runs} SET settle_cursor = coalesce($2, settle_cursor), settle_pending = NOT $5,
            trained_count = trained_count + $3, released_count = released_count + $4
      WHERE id = $1 RETURNING trained_count AS trained, released_count AS released`,
    [runId, r.last, r.done, r.released, complete],
  );
  return { complete, trained: totals[0]?.trained ?? 0, released: totals[0]?.released ?? 0 };
}

/** Runs one chunk in its own transaction, again after a lock timeout (see the header). */
async function chunkWithRetry<T>(deps: ChunkDeps, what: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  let warned = false;
  return retryOnLockTimeout(() => withTransaction(deps.pool, fn), {
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
}

/** Logged once when a chunk has waited STUCK_WARN_MS for rows another transaction keeps locked. */
export const CHUNK_STUCK = 'A transaction has kept rows of this chunk locked for over 10 s: still retrying';

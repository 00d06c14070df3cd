// The recount: how many verified annotations wait for training, bounded, plus what the gate needs.
import type { Pool } from './pool.js';
import { quoteLiteral, type Tables } from './tables.js';

// The literal predicate of the partial index annotations_pending: a parameterised predicate would not match it.
export const PENDING = 'verified AND NOT used_for_training AND training_run_id IS NULL';

export interface Recount {
  /** min(pending, threshold): the count stops at the threshold, so it costs the same at 100 or 10 million. */
  pending: number;
  /** The gate sequence read before the count's snapshot (see gate.ts). */
  gateBefore: bigint;
  /** Transactions (virtual ids) that were writing to annotations between the gate read and the count. */
  writers: string[];
}

// Who may hold a verification the count cannot see yet. Not the snapshot's xip list: PostgreSQL lists only
// xids below the snapshot's xmax (the latest completed xid + 1), so the newest transaction, often the very
// verifier in question, is in progress and still missing from it (test/gate.test.ts pins that case). And xip is
// cluster-wide, so a long transaction in another database would hold the settle back for nothing.
// Instead: every transaction that verifies holds RowExclusiveLock on annotations from its INSERT/UPDATE
// until it ends, so one that took its gate number before the gate read and is still open at the count's
// snapshot holds that lock all the way through, and a look at pg_locks in between sees it. pg_locks is
// readable by every role and includes fast-path locks; reading it adds ~0.2 ms to a recount here.
const writersOf = (t: Tables) => `
  SELECT DISTINCT l.virtualtransaction FROM pg_locks l
  WHERE l.locktype = 'relation'
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.relation = ${quoteLiteral(t.annotations)}::regclass
    AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
    AND l.pid IS DISTINCT FROM pg_backend_pid()`;

export async function recount(pool: Pool, t: Tables, threshold: number): Promise<Recount> {
  // Two statements on purpose: in READ COMMITTED each gets its own snapshot, so the count's snapshot is taken
  // after the gate number and the writers were read. Within the first, the writers subquery refers to the
  // gate column, which makes it a SubPlan run per row of `g`: the lock list is read after the sequence.
  const first = await pool.query<{ gate: string | null; writers: string[] }>(
    `SELECT g.gate, ARRAY(${writersOf(t)} AND g.gate IS NOT DISTINCT FROM g.gate) AS writers
     FROM (SELECT pg_sequence_last_value(${quoteLiteral(t.verifiedSeq)})::text AS gate OFFSET 0) g`,
  );
  const pending = await countPending(pool, t, threshold);
  const gate = first.rows[0];
  if (!gate) throw new Error('recount returned no row');
  return { pending, gateBefore: BigInt(gate.gate ?? '0'), writers: gate.writers };
}

/** min(pending, limit), through the partial index: ~1 ms at any backlog (also what /metrics shows, metrics.ts). */
export async function countPending(pool: Pool, t: Tables, limit: number): Promise<number> {
  const { rows } = await pool.query<{ pending: number }>(
    `SELECT count(*)::int AS pending FROM (SELECT 1 FROM ${t.annotations} WHERE ${PENDING} LIMIT $1) s`,
    [limit],
  );
  const row = rows[0];
  if (!row) throw new Error('the pending count returned no row');
  return row.pending;
}

/** Publishes the gate target; returns the gate sequence as read right after (gate.ts, case 2). */
export async function publishNotifyAt(pool: Pool, t: Tables, target: bigint): Promise<bigint> {
  const { rows } = await pool.query<{ gate: string | null }>(
    `SELECT setval(${quoteLiteral(t.notifyAtSeq)}, $1::bigint, true),
            pg_sequence_last_value(${quoteLiteral(t.verifiedSeq)})::text AS gate`,
    [target.toString()],
  );
  return BigInt(rows[0]?.gate ?? '0');
}

/** Which of these writers are still open: a transaction holds its locks until it commits or aborts. */
export async function stillWriting(pool: Pool, t: Tables, writers: readonly string[]): Promise<string[]> {
  const { rows } = await pool.query<{ vxid: string }>(
    `SELECT w.virtualtransaction AS vxid FROM (${writersOf(t)}) w WHERE w.virtualtransaction = ANY($1::text[])`,
    [writers],
  );
  return rows.map((r) => r.vxid);
}

/** The column `baseline --before` compares with: when an annotation was verified (created_at is when it was created). */
export const VERIFIED_AT = 'verified_at';

/**
 * Pending annotations (verified before `before`, when given). $1::timestamptz: the instant as given; a
 * `timestamp without time zone` column is read in the database session's TimeZone, never the caller's.
 */
export async function countPendingBefore(q: Pool, t: Tables, before: Date | null): Promise<number> {
  const scope = before ? `${PENDING} AND ${VERIFIED_AT} < $1::timestamptz` : PENDING;
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${t.annotations} WHERE ${scope}`,
    before ? [before.toISOString()] : [],
  );
  return rows[0]?.n ?? 0;
}

/** Whether anything at all is pending (`trigger` refuses an empty run). */
export async function anyPending(q: Pool, t: Tables): Promise<boolean> {
  const { rows } = await q.query(`SELECT 1 FROM ${t.annotations} WHERE ${PENDING} LIMIT 1`);
  return rows.length > 0;
}

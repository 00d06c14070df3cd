// The recount: how many verified annotations wait for training, bounded, plus what the gate needs.
import type { Pool } from './db.js';

// The literal predicate of the partial index annotations_pending: a parameterised predicate would not match it.
export const PENDING = 'verified AND NOT used_for_training AND training_run_id IS NULL';

export interface Recount {
  /** min(pending, threshold): the count stops at the threshold, so it costs the same at 100 or 10 million. */
  pending: number;
  /** The gate sequence read before the count's snapshot (see gate.ts). */
  gateBefore: bigint;
  /** Transactions in progress at the count's snapshot (top-level xids as text). */
  inProgressXids: string[];
}

export async function recount(pool: Pool, threshold: number): Promise<Recount> {
  // Two statements on purpose: in READ COMMITTED each gets its own snapshot, so the count's snapshot is
  // taken after the gate number was read (one statement would read the sequence after its own snapshot).
  const gate = await pool.query<{ gate: string | null }>(
    "SELECT pg_sequence_last_value('training_controller_verified_seq')::text AS gate",
  );
  const { rows } = await pool.query<{ pending: number; xids: string[] }>(
    `SELECT (SELECT count(*)::int FROM (SELECT 1 FROM annotations WHERE ${PENDING} LIMIT $1) s) AS pending,
            ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())::text) AS xids`,
    [threshold],
  );
  const row = rows[0];
  if (!row) throw new Error('recount returned no row');
  return { pending: row.pending, gateBefore: BigInt(gate.rows[0]?.gate ?? '0'), inProgressXids: row.xids };
}

/** Publishes the gate target; returns the gate sequence as read right after (gate.ts, case 2). */
export async function publishNotifyAt(pool: Pool, target: bigint): Promise<bigint> {
  const { rows } = await pool.query<{ gate: string | null }>(
    `SELECT setval('training_controller_notify_at_seq', $1::bigint, true),
            pg_sequence_last_value('training_controller_verified_seq')::text AS gate`,
    [target.toString()],
  );
  return BigInt(rows[0]?.gate ?? '0');
}

/** How many of these transactions are still running (an xid too old to look up has long finished). */
export async function stillRunning(pool: Pool, xids: readonly string[]): Promise<number> {
  const { rows } = await pool.query<{ running: number }>(
    `SELECT count(*)::int AS running FROM unnest($1::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress'`,
    [xids],
  );
  return rows[0]?.running ?? 0;
}

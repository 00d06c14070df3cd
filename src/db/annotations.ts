// Every statement on the Triage API's annotations table: the pending predicate and the recount (how many
// verified annotations wait for training, bounded, plus what the gate needs), and one chunk of a claim, settle,
// release or baseline (chunks.ts walks them, each chunk in its own transaction).
import type { Pool, PoolClient } from './pool.js';
import { quoteIdent, quoteLiteral, type Tables } from './tables.js';

// The literal predicate of the partial index annotations_pending: a parameterised predicate would not match it.
export const PENDING = 'verified AND NOT used_for_training AND training_run_id IS NULL';

export interface Recount {
  /** min(pending, threshold): the count stops at the threshold, so it costs the same at 100 or 10 million. */
  pending: number;
  /** The gate sequence read before the count's snapshot (see gate.ts). */
  gateBefore: bigint;
  /** Transactions (virtual ids) that were writing to annotations between the gate read and the count. */
  writers: string[];
  /**
   * The server allows two-phase commit (max_prepared_transactions > 0): the trigger sends no NOTIFY there
   * (migration 009), so the controller watches the gate sequence instead (loop/gateWatch.ts).
   */
  twoPhase: boolean;
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
  const first = await pool.query<{ gate: string | null; writers: string[]; two_phase: boolean }>(
    `SELECT g.gate, ARRAY(${writersOf(t)} AND g.gate IS NOT DISTINCT FROM g.gate) AS writers,
            current_setting('max_prepared_transactions')::int > 0 AS two_phase
     FROM (SELECT pg_sequence_last_value(${quoteLiteral(t.verifiedSeq)})::text AS gate OFFSET 0) g`,
  );
  const pending = await countPending(pool, t, threshold);
  const gate = first.rows[0];
  if (!gate) throw new Error('recount returned no row');
  return { pending, gateBefore: BigInt(gate.gate ?? '0'), writers: gate.writers, twoPhase: gate.two_phase };
}

/** The gate sequence and the published target, for the watch that stands in for NOTIFY (loop/gateWatch.ts). */
export async function readGate(pool: Pool, t: Tables): Promise<{ gate: bigint; target: bigint }> {
  const { rows } = await pool.query<{ gate: string | null; target: string | null }>(
    `SELECT pg_sequence_last_value(${quoteLiteral(t.verifiedSeq)})::text AS gate,
            pg_sequence_last_value(${quoteLiteral(t.notifyAtSeq)})::text AS target`,
  );
  return { gate: BigInt(rows[0]?.gate ?? '0'), target: BigInt(rows[0]?.target ?? '0') };
}

/**
 * min(pending, limit), through the partial index: ~1 ms at any backlog (also what /metrics shows, metrics.ts).
 * Throws RowSecurityError where row-level security may hide rows from this role: a count of what its policies
 * let it see would read 0 with 60 waiting, and the service would report ready and never train.
 */
export async function countPending(pool: Pool, t: Tables, limit: number): Promise<number> {
  const { rows } = await pool.query<{ pending: number; rls: boolean }>(
    `SELECT count(*)::int AS pending, row_security_active(${quoteLiteral(t.annotations)}) AS rls
     FROM (SELECT 1 FROM ${t.annotations} WHERE ${PENDING} LIMIT $1) s`,
    [limit],
  );
  const row = rows[0];
  if (!row) throw new Error('the pending count returned no row');
  if (row.rls) await refuseRowSecurity(pool, t);
  return row.pending;
}

/** Row-level security that may hide annotations from the controller's role (rowSecurityProblem). */
export class RowSecurityError extends Error {
  override name = 'RowSecurityError';
}

// Which policies apply to the current role: PUBLIC (oid 0), or a role whose privileges it has, as PostgreSQL
// decides it (check_role_for_policy).
const appliesToMe = (p: string) =>
  `(0 = ANY (${p}.polroles) OR EXISTS (SELECT 1 FROM unnest(${p}.polroles) r WHERE r <> 0 AND pg_has_role(r, 'USAGE')))`;

/**
 * Null when the role sees, and may update, every row of annotations; otherwise the problem, in one line. It
 * does when row-level security does not apply to it (disabled, the role has BYPASSRLS or owns the table without
 * FORCE), or when a permissive policy for every command shows it every row (USING (true), no WITH CHECK or
 * WITH CHECK (true)) and no restrictive policy narrows that. Anything else may hide pending rows today or
 * tomorrow, so the service refuses rather than count what a policy lets it see. pg_policy is readable by
 * every role; the check runs at startup, whenever the pending count finds row security active, and at the
 * start of every claim, settle or baseline transaction (chunks.ts): a settle that a policy turned on mid-run
 * let see none of its rows recorded `succeeded` with 0 trained and stranded them all (found by review).
 */
export async function rowSecurityProblem(pool: Pool | PoolClient, t: Tables): Promise<string | null> {
  const rel = `${quoteLiteral(t.annotations)}::regclass`;
  const { rows } = await pool.query<{ active: boolean; sees_all: boolean; role: string }>(
    `SELECT row_security_active(${rel}) AS active, current_user AS role,
            EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = ${rel} AND p.polpermissive AND p.polcmd = '*'
                      AND pg_get_expr(p.polqual, p.polrelid) = 'true'
                      AND (p.polwithcheck IS NULL OR pg_get_expr(p.polwithcheck, p.polrelid) = 'true')
                      AND ${appliesToMe('p')})
            AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = ${rel} AND NOT p.polpermissive
                              AND p.polcmd IN ('*', 'r', 'w') AND ${appliesToMe('p')}) AS sees_all`,
  );
  const row = rows[0];
  if (!row?.active || row.sees_all) return null;
  const role = quoteIdent(row.role);
  return `row-level security on ${t.annotations} applies to role ${row.role} and no policy shows it every row: it would count and claim only what its policies let it see, and never train on the rest; grant it BYPASSRLS (ALTER ROLE ${role} BYPASSRLS) or a policy that shows it every row (CREATE POLICY training_controller ON ${t.annotations} TO ${role} USING (true) WITH CHECK (true))`;
}

/** Throws RowSecurityError when rowSecurityProblem has one. */
export async function refuseRowSecurity(pool: Pool | PoolClient, t: Tables): Promise<void> {
  const problem = await rowSecurityProblem(pool, t);
  if (problem) throw new RowSecurityError(problem);
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

/** A chunk waits at most this long for a row lock (then the walk retries it): far below deadlock_timeout's 1 s. */
export const LOCK_TIMEOUT_MS = 50;

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

/** Exact pending count, for a dry run (which claims nothing). */
export async function countPendingExact(q: Pool | PoolClient, t: Tables): Promise<number> {
  const { rows } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.annotations} WHERE ${PENDING}`);
  return rows[0]?.n ?? 0;
}

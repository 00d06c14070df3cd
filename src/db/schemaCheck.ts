// What `run` checks before it starts: the objects the migrations create, and the privileges the service's
// role needs on them. A controller that can read but not write would otherwise start, answer /readyz and
// never train, repeating `permission denied` (issue #9); instead it names what is missing, in one line.
import type { Pool } from './pool.js';
import { invalidIndexes } from './migrate.js';
import { quoteLiteral, type Tables } from './tables.js';

/** The objects `run` needs, as "what is missing" (empty: all there). */
export async function missingSchema(pool: Pool, t: Tables): Promise<string[]> {
  const L = quoteLiteral;
  const { rows } = await pool.query<{ missing: string }>(`
    SELECT x AS missing FROM unnest(ARRAY[
      ${L(t.annotations)}, ${L(t.runs)}, ${L(t.control)}, ${L(t.pendingIndex)}, ${L(t.runClaimsIndex)}, ${L(t.verifiedSeq)}, ${L(t.notifyAtSeq)}]) AS x
    WHERE to_regclass(x) IS NULL
    UNION ALL
    SELECT ${L(`${t.annotations}.training_run_id`)} WHERE to_regclass(${L(t.annotations)}) IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(${L(t.annotations)}) AND attname = 'training_run_id' AND NOT attisdropped)
    UNION ALL
    SELECT ${L(`${t.runs}.`)} || c FROM unnest(ARRAY['trained_count', 'claim_pending', 'settle_pending', 'trigger_kind', 'cancel_requested_at']) AS c
     WHERE to_regclass(${L(t.runs)}) IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(${L(t.runs)}) AND attname = c AND NOT attisdropped)
    UNION ALL
    SELECT 'trigger training_controller_verified_update on ' || ${L(t.annotations)} WHERE NOT EXISTS (
      SELECT 1 FROM pg_trigger WHERE tgname = 'training_controller_verified_update' AND tgrelid = to_regclass(${L(t.annotations)}))
    UNION ALL
    SELECT ${L(`${t.triggerFunction}() of migration 009 (safe for two-phase commit, fires on any UPDATE)`)} WHERE NOT EXISTS (
      SELECT 1 FROM pg_proc WHERE oid = to_regprocedure(${L(`${t.triggerFunction}()`)}) AND prosecdef AND proconfig IS NULL
         AND prosrc LIKE '%max_prepared_transactions%')
      OR NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'training_controller_verified_update'
         AND tgrelid = to_regclass(${L(t.annotations)}) AND cardinality(tgattr::int2[]) = 0)`);
  return rows.map((r) => r.missing);
}

/** The privileges the service's role lacks, as GRANT-like phrases (empty: it has them all). */
export async function missingPrivileges(pool: Pool, t: Tables): Promise<string[]> {
  const L = quoteLiteral;
  const { rows } = await pool.query<{ missing: string }>(`
    SELECT what AS missing FROM (VALUES
      ('USAGE on schema ' || ${L(t.schema)}, has_schema_privilege(${L(t.schema)}, 'USAGE')),
      ('SELECT on ' || ${L(t.annotations)}, has_table_privilege(${L(t.annotations)}, 'SELECT')),
      ('UPDATE (used_for_training, training_run_id) on ' || ${L(t.annotations)},
        has_column_privilege(${L(t.annotations)}, 'used_for_training', 'UPDATE') AND has_column_privilege(${L(t.annotations)}, 'training_run_id', 'UPDATE')),
      ('SELECT, INSERT, UPDATE on ' || ${L(t.runs)},
        has_table_privilege(${L(t.runs)}, 'SELECT') AND has_table_privilege(${L(t.runs)}, 'INSERT') AND has_table_privilege(${L(t.runs)}, 'UPDATE')),
      ('SELECT, UPDATE on ' || ${L(t.control)},
        has_table_privilege(${L(t.control)}, 'SELECT') AND has_table_privilege(${L(t.control)}, 'UPDATE')),
      ('USAGE on sequence ' || pg_get_serial_sequence(${L(t.runs)}, 'id'), has_sequence_privilege(pg_get_serial_sequence(${L(t.runs)}, 'id'), 'USAGE')),
      ('SELECT on sequence ' || ${L(t.verifiedSeq)}, has_sequence_privilege(${L(t.verifiedSeq)}, 'SELECT')),
      ('UPDATE on sequence ' || ${L(t.notifyAtSeq)}, has_sequence_privilege(${L(t.notifyAtSeq)}, 'UPDATE'))
    ) AS p(what, ok) WHERE NOT ok`);
  return rows.map((r) => r.missing);
}

/** The indexes the migrations build CONCURRENTLY (test/psqlMigrations.test.ts keeps this list true). */
export const CONCURRENT_INDEXES = ['annotations_pending', 'annotations_run_claims'] as const;

/**
 * One line about our INVALID indexes, or null. An interrupted CREATE INDEX CONCURRENTLY leaves one behind; the
 * recount then scans the whole table (~100 ms at 1M rows instead of ~1 ms) and nothing else says so. It is a
 * warning, not a refusal: a concurrent build still in progress looks the same, and counting stays correct.
 */
export async function invalidIndexWarning(pool: Pool, t: Tables): Promise<string | null> {
  const names = await invalidIndexes(pool, t, CONCURRENT_INDEXES);
  if (names.length === 0) return null;
  return `index ${names.map((n) => `${t.schema}.${n}`).join(', ')} is INVALID (a CREATE INDEX CONCURRENTLY interrupted, or still running): run \`training-controller migrate\` to rebuild it`;
}

/** Whether `table` (schema-qualified, as in Tables) has the column `name`. */
export async function hasColumn(pool: Pool, table: string, name: string): Promise<boolean> {
  const { rowCount } = await pool.query(
    `SELECT 1 FROM pg_attribute WHERE attrelid = ${quoteLiteral(table)}::regclass AND attname = $1 AND NOT attisdropped`,
    [name],
  );
  return rowCount === 1;
}

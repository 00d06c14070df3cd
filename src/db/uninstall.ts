// `training-controller uninstall` (issue 23): removes what the migrations added to the Triage API's database,
// with the same files an ops team applies with psql (migrations/uninstall/), in order: every object but the
// history and the columns (001), the run history unless kept (002), and only on purpose the two columns of
// annotations (003). Refused while a run is open or its chunked work is unfinished: its annotations are
// claimed, its Job carries our finalizer, and only the running service finishes or cancels it. It takes the
// migrate lock, so a migrate and an uninstall never interleave.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../core/logger.js';
import { migrationsDir } from '../core/paths.js';
import { realTimers } from '../core/timers.js';
import { LOCK_KEYS, withSessionLock } from './locks.js';
import { applyScript } from './migrate.js';
import type { Pool } from './pool.js';
import { forSchema } from './psqlScript.js';
import { openRun, unfinishedRun } from './runs.js';
import { quoteIdent, quoteLiteral, type Tables } from './tables.js';

export interface UninstallOptions {
  /** Keep training_runs (skip 002). */
  keepHistory: boolean;
  /** Drop used_for_training and training_run_id from annotations (003). */
  dropColumns: boolean;
}

export const UNINSTALL_FILES = ['001_objects.sql', '002_history.sql', '003_columns.sql'] as const;

export function uninstallFiles(o: UninstallOptions): string[] {
  return UNINSTALL_FILES.filter(
    (f) => !(f === '002_history.sql' && o.keepHistory) && !(f === '003_columns.sql' && !o.dropColumns),
  );
}

/** One line when uninstalling now would strand a run, or null. */
export async function uninstallRefusal(pool: Pool, t: Tables): Promise<string | null> {
  if (!(await hasTable(pool, t.runs))) return null;
  const run = (await openRun(pool, t)) ?? (await unfinishedRun(pool, t));
  if (!run) return null;
  return `run ${run.id} (${run.jobName}) is ${run.state}${run.settlePending ? ', its settle unfinished' : ''}${run.claimPending ? ', its claim unfinished' : ''}: its annotations are claimed and its Job carries the finalizer; let it finish, or \`training-controller cancel\` it, with the service running, then scale the service to 0 and uninstall (README "Uninstall")`;
}

/** What the files would remove that exists now, by kind and name (the dry run's list). */
export async function uninstallInventory(pool: Pool, t: Tables, o: UninstallOptions): Promise<string[]> {
  const L = quoteLiteral;
  const { rows } = await pool.query<{ what: string }>(
    `SELECT 'trigger ' || tgname || ' on ' || ${L(t.annotations)} AS what FROM pg_trigger
      WHERE tgrelid = to_regclass(${L(t.annotations)}) AND tgname LIKE 'training_controller_%'
     UNION ALL SELECT 'foreign key annotations_training_run_id_fkey' FROM pg_constraint
      WHERE conrelid = to_regclass(${L(t.annotations)}) AND conname = 'annotations_training_run_id_fkey'
     UNION ALL SELECT 'function ' || ${L(`${t.triggerFunction}()`)} WHERE to_regprocedure(${L(`${t.triggerFunction}()`)}) IS NOT NULL
     UNION ALL SELECT kind || ' ' || name FROM (VALUES
        ('sequence', ${L(t.verifiedSeq)}), ('sequence', ${L(t.notifyAtSeq)}),
        ('index', ${L(t.pendingIndex)}), ('index', ${L(t.runClaimsIndex)}),
        ('index', ${L(`${quoteIdent(t.schema)}.annotations_training_run_id`)}),
        ('table', ${L(t.control)}), ('table', ${L(t.migrations)})
        ${o.keepHistory ? '' : `, ('table', ${L(t.runs)})`}) AS x(kind, name)
      WHERE to_regclass(name) IS NOT NULL
     ${
       o.dropColumns
         ? `UNION ALL SELECT 'column ' || ${L(t.annotations)} || '.' || attname FROM pg_attribute
      WHERE attrelid = to_regclass(${L(t.annotations)}) AND attname IN ('used_for_training', 'training_run_id') AND NOT attisdropped`
         : ''
     }`,
  );
  return rows.map((r) => r.what);
}

/** Applies the files under the migrate lock; returns the names applied. */
export async function uninstall(pool: Pool, logger: Logger, t: Tables, o: UninstallOptions): Promise<string[]> {
  const client = await pool.connect();
  try {
    return await withSessionLock(client, LOCK_KEYS.migrate, async () => {
      const applied: string[] = [];
      for (const name of uninstallFiles(o)) {
        const sql = await readFile(join(migrationsDir(), 'uninstall', name), 'utf8');
        try {
          await applyScript(client, forSchema(sql, t.schema), logger, `uninstall/${name}`, realTimers);
        } finally {
          await client.query('RESET lock_timeout').catch(() => undefined);
        }
        applied.push(name);
      }
      return applied;
    });
  } finally {
    client.release();
  }
}

/** The namespaces runs were submitted to (where Jobs with our finalizer may be), empty without the table. */
export async function runNamespaces(pool: Pool, t: Tables): Promise<string[]> {
  if (!(await hasTable(pool, t.runs))) return [];
  const { rows } = await pool.query<{ namespace: string }>(`SELECT DISTINCT namespace FROM ${t.runs}`);
  return rows.map((r) => r.namespace);
}

async function hasTable(pool: Pool, name: string): Promise<boolean> {
  const { rows } = await pool.query<{ ok: boolean }>(`SELECT to_regclass(${quoteLiteral(name)}) IS NOT NULL AS ok`);
  return rows[0]?.ok === true;
}

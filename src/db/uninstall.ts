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
import { dispatchLock, LOCK_KEYS, withSessionLock } from './locks.js';
import { applyScript } from './migrate.js';
import { listenSessions, type Pool, type PoolClient } from './pool.js';
import { presenceHolders } from './presence.js';
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

/** Thrown by uninstall() when a check made under its locks refuses (the same line as uninstallRefusal). */
export class UninstallRefused extends Error {
  override name = 'UninstallRefused';
}

/**
 * Dropping the history but keeping the columns left training_run_id pointing at runs that no longer exist, and
 * a later `migrate` failed validating its foreign key half way (found by review): either both go or the history
 * stays.
 */
export function optionsRefusal(o: UninstallOptions): string | null {
  if (o.keepHistory || o.dropColumns) return null;
  return 'choose what happens to the data: --keep-history keeps training_runs (and the columns of annotations that refer to it), --drop-columns removes both (which annotations were trained, and by which run)';
}

/**
 * One line when uninstalling now would strand a run or pull the schema from under a running service, or null.
 * Asked before, and again under the locks (a service still running may have started a run in between).
 */
export async function uninstallRefusal(q: Pool | PoolClient, t: Tables): Promise<string | null> {
  // A service of this schema holds its presence lock (presence.ts); an older version shows only its LISTEN session.
  const present = await presenceHolders(q, t.schema, null);
  const listening = await listenSessions(q, t.schema);
  const services = [
    ...listening,
    ...present.filter((pid) => !listening.some((l) => l.pid === pid)).map((pid) => ({ pid, addr: null })),
  ];
  if (services.length > 0)
    return `a training-controller service is still connected (pid ${services.map((s) => `${s.pid}${s.addr ? ` from ${s.addr}` : ''}`).join(', ')}): scale it to 0 first (docs/migrations.md "Uninstall")`;
  if (!(await hasTable(q, t.runs))) return null;
  const run = (await openRun(q, t)) ?? (await unfinishedRun(q, t));
  if (!run) return null;
  return `run ${run.id} (${run.jobName}) is ${run.state}${run.settlePending ? ', its settle unfinished' : ''}${run.claimPending ? ', its claim unfinished' : ''}: its annotations are claimed and its Job carries the finalizer; let it finish, or \`training-controller cancel\` it, with the service running, then scale the service to 0 and uninstall (docs/migrations.md "Uninstall")`;
}

/** What the files would remove that exists now, by kind and name (the dry run's list). */
export async function uninstallInventory(pool: Pool, t: Tables, o: UninstallOptions): Promise<string[]> {
  const L = quoteLiteral;
  const { rows } = await pool.query<{ what: string }>(
    `SELECT 'trigger ' || tgname || ' on ' || ${L(t.annotations)} AS what FROM pg_trigger
      WHERE tgrelid = to_regclass(${L(t.annotations)})
        AND tgname IN ('training_controller_verified_insert', 'training_controller_verified_update')
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

/**
 * Applies the files under the migrate lock and the dispatch lock (no run can start while it works, even from a
 * service that should not be running); the refusals are asked again once both are held. Returns the names
 * applied.
 */
export async function uninstall(pool: Pool, logger: Logger, t: Tables, o: UninstallOptions): Promise<string[]> {
  const refused = optionsRefusal(o);
  if (refused) throw new UninstallRefused(refused);
  const client = await pool.connect();
  const locked = <T>(key: bigint, fn: () => Promise<T>) => withSessionLock(client, key, fn);
  try {
    return await locked(LOCK_KEYS.migrate, () =>
      locked(dispatchLock(t.schema), async () => {
        const refusal = await uninstallRefusal(client, t);
        if (refusal) throw new UninstallRefused(refusal);
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
      }),
    );
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

async function hasTable(pool: Pool | PoolClient, name: string): Promise<boolean> {
  const { rows } = await pool.query<{ ok: boolean }>(`SELECT to_regclass(${quoteLiteral(name)}) IS NOT NULL AS ok`);
  return rows[0]?.ok === true;
}

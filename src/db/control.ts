// training_control, the one row of operator state (migrations/008_operator_controls.sql): what the CLI's
// pause, resume and trigger write, and what the service reads at every recount and dispatch. Each change is
// followed by a NOTIFY on CONTROL_CHANNEL so the service acts within a second; its poll recount is the fallback.
import type { Config } from '../core/config.js';
import type { Pool, PoolClient } from './pool.js';
import type { Tables } from './tables.js';
import type { Control } from '../core/triggers.js';

type Queryable = Pool | PoolClient;

export const CONTROL_CHANNEL = 'training_controller_control';

interface ControlRow {
  paused: boolean;
  paused_at: Date | null;
  paused_by: string | null;
  pause_reason: string | null;
  trigger_at: Date | null;
  trigger_by: string | null;
  trigger_reason: string | null;
  pending_since: Date | null;
  db_now: Date;
}

const COLUMNS = `paused, paused_at, paused_by, pause_reason, trigger_at, trigger_by, trigger_reason, pending_since, now() AS db_now`;

const toControl = (r: ControlRow): Control & { dbNow: number } => ({
  paused: r.paused,
  pausedAt: r.paused_at,
  pausedBy: r.paused_by,
  pauseReason: r.pause_reason,
  triggerAt: r.trigger_at,
  triggerBy: r.trigger_by,
  triggerReason: r.trigger_reason,
  pendingSince: r.pending_since,
  dbNow: r.db_now.getTime(),
});

/** The control row and the database's clock (the max wait is measured on it, like the back-off). */
export async function readControl(q: Queryable, t: Tables): Promise<Control & { dbNow: number }> {
  const { rows } = await q.query<ControlRow>(`SELECT ${COLUMNS} FROM ${t.control} WHERE id`);
  if (!rows[0]) throw new Error(`${t.control} has no row: apply migrations/008_operator_controls.sql again`);
  return toControl(rows[0]);
}

/**
 * After a recount: the max wait's clock starts when the service first sees an annotation pending and stops
 * when none is. Written only when that changes (a recount usually changes nothing, and writes nothing).
 */
export async function notePending(pool: Pool, t: Tables, anyPending: boolean): Promise<Control & { dbNow: number }> {
  const { rows } = await pool.query<ControlRow>(
    `WITH changed AS (
       UPDATE ${t.control} SET pending_since = CASE WHEN $1 THEN now() END
        WHERE id AND (pending_since IS NULL) = $1
       RETURNING ${COLUMNS})
     SELECT * FROM changed UNION ALL SELECT ${COLUMNS} FROM ${t.control} WHERE id AND NOT EXISTS (SELECT 1 FROM changed)`,
    [anyPending],
  );
  if (!rows[0]) throw new Error(`${t.control} has no row: apply migrations/008_operator_controls.sql again`);
  return toControl(rows[0]);
}

/** In the dispatch transaction: the run takes every pending annotation, so the clock stops; a manual request is served. */
export async function runStarted(client: PoolClient, t: Tables): Promise<void> {
  await client.query(
    `UPDATE ${t.control} SET pending_since = NULL, trigger_at = NULL, trigger_by = NULL, trigger_reason = NULL WHERE id`,
  );
}

/** A manual request the service cannot serve (paused since, a run open, nothing pending): dropped, and logged. */
export async function dropTrigger(pool: Pool, t: Tables): Promise<void> {
  await pool.query(`UPDATE ${t.control} SET trigger_at = NULL, trigger_by = NULL, trigger_reason = NULL WHERE id`);
}

export async function notifyControl(q: Queryable, what: string): Promise<void> {
  await q.query('SELECT pg_notify($1, $2)', [CONTROL_CHANNEL, what]);
}

/** Pauses (keeping the first pause's instant when already paused) and NOTIFYs. Returns the state after. */
export async function pause(pool: Pool, t: Tables, by: string, reason: string | null): Promise<Control> {
  await pool.query(
    // Already paused: the first instant stays; who and why change only with a new --reason (a bare repeat
    // by someone else must not put their name on the first person's reason).
    `UPDATE ${t.control} SET paused = true, paused_at = CASE WHEN paused THEN paused_at ELSE now() END,
            paused_by = CASE WHEN paused AND $2::text IS NULL THEN paused_by ELSE $1 END,
            pause_reason = CASE WHEN paused AND $2::text IS NULL THEN pause_reason ELSE $2 END WHERE id`,
    [by, reason],
  );
  await notifyControl(pool, 'pause');
  return readControl(pool, t);
}

/** Lifts a pause and NOTIFYs. Returns whether it was paused. */
export async function resume(pool: Pool, t: Tables): Promise<boolean> {
  const { rows } = await pool.query<{ was: boolean }>(
    `UPDATE ${t.control} c SET paused = false, paused_at = NULL, paused_by = NULL, pause_reason = NULL
       FROM (SELECT paused AS was FROM ${t.control} WHERE id) old WHERE c.id RETURNING old.was`,
  );
  await notifyControl(pool, 'resume');
  return rows[0]?.was ?? false;
}

/** Records a manual trigger request (the service starts the run) and NOTIFYs. */
export async function requestTrigger(pool: Pool, t: Tables, by: string, reason: string | null): Promise<void> {
  await pool.query(`UPDATE ${t.control} SET trigger_at = now(), trigger_by = $1, trigger_reason = $2 WHERE id`, [
    by,
    reason,
  ]);
  await notifyControl(pool, 'trigger');
}

/** What the service publishes at startup and `status` reads back (below). */
export interface PublishedSettings {
  trainingThreshold: number;
  retryBackoffSeconds: number;
  retryBackoffMaxSeconds: number;
  trainingMaxWaitSeconds: number;
  trainingMinBatch: number;
  pollIntervalSeconds: number;
  mode: string;
  namespace: string;
  /** TRAINING_NAME (absent when published by a version before issue 23, which was always sentinel-training). */
  trainingName?: string;
}

export function settingsOf(config: Config, mode: string, namespace: string): PublishedSettings {
  const { trainingThreshold, retryBackoffSeconds, retryBackoffMaxSeconds, trainingMaxWaitSeconds } = config;
  const { trainingMinBatch, pollIntervalSeconds } = config;
  return {
    trainingThreshold,
    retryBackoffSeconds,
    retryBackoffMaxSeconds,
    trainingMaxWaitSeconds,
    trainingMinBatch,
    pollIntervalSeconds,
    mode,
    namespace,
    trainingName: config.trainingName,
  };
}

/** The running service's effective settings, published at startup for `status` (issue #15). */
export async function publishSettings(pool: Pool, t: Tables, settings: PublishedSettings): Promise<void> {
  await pool.query(`UPDATE ${t.control} SET settings = $1, settings_at = now() WHERE id`, [JSON.stringify(settings)]);
}

export async function publishedSettings(
  q: Queryable,
  t: Tables,
): Promise<{ settings: PublishedSettings; at: Date } | null> {
  const { rows } = await q.query<{ settings: PublishedSettings | null; settings_at: Date | null }>(
    `SELECT settings, settings_at FROM ${t.control} WHERE id`,
  );
  const row = rows[0];
  return row?.settings && row.settings_at ? { settings: row.settings, at: row.settings_at } : null;
}

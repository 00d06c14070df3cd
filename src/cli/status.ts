// `training-controller status`: what an operator asks first. Reads only the database.
import { backoffUntil, type FailureHistory } from '../core/backoff.js';
import type { Config } from '../core/config.js';
import { maxWaitDueAt, type MaxWait } from '../core/triggers.js';
import { publishedSettings, readControl, settingsOf, type PublishedSettings } from '../db/control.js';
import type { Pool } from '../db/pool.js';
import { invalidIndexWarning } from '../db/schemaCheck.js';
import { tables, type Tables } from '../db/tables.js';
import { failureHistory, openRun, recentRuns, unfinishedRun } from '../db/runs.js';
import { countPendingExact, rowSecurityProblem } from '../db/annotations.js';
import type { Run } from '../core/run.js';

export interface Status {
  pending: number;
  threshold: number;
  openRun:
    | (Pick<Run, 'id' | 'jobName' | 'state' | 'annotationCount' | 'reason'> & {
        trigger: string;
        ageSeconds: number;
        claim: ChunkProgress | null;
      })
    | null;
  /** The latest `failed` or `lost` run of the last 10, with its reason whole (the table cuts it). */
  lastFailure: StatusRun | null;
  /** A run whose outcome is recorded but whose annotations are still being marked used or released, or a baseline under way. */
  unfinished: { id: number; state: string; work: 'settle' | 'baseline'; done: number; of: number | null } | null;
  backoff: { consecutiveFailures: number; until: string; remainingSeconds: number } | null;
  /** What an operator should fix, one line each (an INVALID index). */
  warnings: string[];
  recentRuns: StatusRun[];
  /** The pause, a trigger request, the max wait, and whose settings these numbers are. */
  control: ControlStatus;
}

export interface StatusRun {
  id: number;
  job: string;
  state: string;
  annotations: number;
  created: string;
  finished: string | null;
  reason: string | null;
  /** What started it: `threshold`, `max-wait` or `manual`, with the request's `user@host: reason`. */
  trigger: string;
}

/** How far a chunked claim (or baseline) got: ids up to `cursor` done, of those up to `through`. */
export interface ChunkProgress {
  claimed: number;
  cursor: string | null;
  through: string | null;
}

const progress = (r: Run): ChunkProgress | null =>
  r.claimPending ? { claimed: r.annotationCount, cursor: r.claimCursor, through: r.claimThrough } : null;

const statusRun = (r: Run): StatusRun => ({
  id: r.id,
  job: r.jobName,
  state: r.state,
  annotations: r.annotationCount,
  created: r.createdAt.toISOString(),
  finished: r.finishedAt?.toISOString() ?? null,
  reason: r.reason,
  trigger: triggerText(r),
});

const triggerText = (r: Run): string => (r.triggerReason ? `${r.triggerKind} (${r.triggerReason})` : r.triggerKind);

function openRunStatus(open: Run | null, now: number): Status['openRun'] {
  if (!open) return null;
  const { id, jobName, state, annotationCount, reason } = open;
  const ageSeconds = Math.round((now - open.createdAt.getTime()) / 1000);
  return { id, jobName, state, annotationCount, reason, trigger: triggerText(open), ageSeconds, claim: progress(open) };
}

function unfinishedStatus(u: Run | null): Status['unfinished'] {
  if (!u) return null;
  const settle = u.settlePending;
  return {
    id: u.id,
    state: u.state,
    work: settle ? 'settle' : 'baseline',
    done: settle ? (u.trainedCount ?? 0) + (u.releasedCount ?? 0) : u.annotationCount,
    of: settle ? u.annotationCount : null,
  };
}

function backoffStatus(history: FailureHistory, until: number | null): Status['backoff'] {
  const now = history.now;
  if (until === null || until <= now) return null;
  return {
    consecutiveFailures: history.consecutiveFailures,
    until: new Date(until).toISOString(),
    remainingSeconds: Math.ceil((until - now) / 1000),
  };
}

export async function readStatus(pool: Pool, config: Config): Promise<Status> {
  const t = tables(config.annotationsSchema);
  const [pending, open, unfinished, history, recent, indexWarning, hidden, control] = await Promise.all([
    countPendingExact(pool, t),
    openRun(pool, t),
    unfinishedRun(pool, t),
    failureHistory(pool, t),
    recentRuns(pool, t, 10),
    invalidIndexWarning(pool, t),
    // The count above is of what this role may see: say so where a policy may hide rows from it.
    rowSecurityProblem(pool, t),
    readControlStatus(pool, t, config),
  ]);
  const settings = control.settings;
  // Ages and the back-off compare database timestamps with the database's clock, never this machine's.
  const until = backoffUntil(history, settings.retryBackoffSeconds, settings.retryBackoffMaxSeconds);
  const failure = recent.find((r) => r.state === 'failed' || r.state === 'lost');
  return {
    pending,
    threshold: settings.trainingThreshold,
    openRun: openRunStatus(open, history.now),
    lastFailure: failure ? statusRun(failure) : null,
    unfinished: unfinishedStatus(unfinished),
    backoff: backoffStatus(history, until),
    warnings: [indexWarning, hidden].filter((w): w is string => w !== null),
    recentRuns: recent.map(statusRun),
    control,
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

/** A count, or an id: thousands separators for numbers, other ids (uuid, text) as they are. */
const n = (x: number | string | null) =>
  x === null ? 'none yet' : /^-?\d+$/.test(String(x)) ? Number(x).toLocaleString('en') : String(x);

function claimLine(c: ChunkProgress): string {
  return `${n(c.claimed)} claimed so far, through id ${n(c.cursor)}${c.through ? ` of ${n(c.through)}` : ''}`;
}

function unfinishedLine(u: NonNullable<Status['unfinished']>): string {
  if (u.work === 'settle')
    return `run #${u.id} ${u.state}: ${n(u.done)} of ${n(u.of ?? 0)} annotations marked used or released`;
  return `run #${u.id}: ${n(u.done)} annotations marked used so far`;
}

/** The table's REASON column: its first 60 characters; the open run's and the last failure's are shown whole above. */
const REASON_COLUMN = 60;
const cut = (reason: string | null): string =>
  reason === null ? '' : reason.length > REASON_COLUMN ? `${reason.slice(0, REASON_COLUMN - 1)}…` : reason;

function openRunLines(o: Status['openRun']): string[] {
  if (!o) return ['open run:            none'];
  return [
    `open run:            #${o.id} ${o.jobName} ${o.state}, ${o.annotationCount} annotations, ${o.ageSeconds} s old`,
    ...(o.trigger !== 'threshold' ? [`open run started:    ${o.trigger}`] : []),
    ...(o.reason ? [`open run reason:     ${o.reason}`] : []),
    ...(o.claim ? [`claim in progress:   ${claimLine(o.claim)} (the Job is created when it completes)`] : []),
  ];
}

function lastFailureLines(f: StatusRun | null): string[] {
  if (!f) return [];
  return [
    `last failure:        #${f.id} ${f.job} ${f.state} at ${f.finished ?? '?'}: ${f.reason ?? 'no reason recorded'}`,
  ];
}

function backoffLine(b: Status['backoff']): string {
  const text = b
    ? `${b.remainingSeconds} s left after ${b.consecutiveFailures} failed run(s) (until ${b.until})`
    : 'none';
  return `back-off:            ${text}`;
}

function runsTable(runs: StatusRun[]): string {
  if (runs.length === 0) return 'no runs yet\n';
  const rows = [['RUN', 'JOB', 'STATE', 'ANNOTATIONS', 'CREATED', 'FINISHED', 'REASON']];
  for (const r of runs)
    rows.push([String(r.id), r.job, r.state, String(r.annotations), r.created, r.finished ?? '-', cut(r.reason)]);
  return table(rows);
}

/** The status as an operator reads it: one section a line (or a few), then the recent runs. */
export function formatStatus(s: Status): string {
  const reached = s.pending >= s.threshold ? ', reached' : '';
  const lines = [
    `pending annotations: ${s.pending} (threshold ${s.threshold}${reached})`,
    ...controlLines(s.control, s.pending),
    ...openRunLines(s.openRun),
    ...(s.unfinished
      ? [`${s.unfinished.work === 'settle' ? 'settle' : 'baseline'} in progress: ${unfinishedLine(s.unfinished)}`]
      : []),
    backoffLine(s.backoff),
    ...lastFailureLines(s.lastFailure),
    ...s.warnings.map((w) => `warning:             ${w}`),
    '',
  ];
  return lines.join('\n') + runsTable(s.recentRuns);
}

// The operator's part of `status` (issues #11, #15): the pause, a pending trigger request, when the max wait
// fires, and the settings the running service published (status used to compute the threshold and back-off
// from the caller's own environment: the service backed off 20 s while status said 56 s).

export interface ControlStatus {
  /** Where the threshold, back-off and max wait shown come from. */
  settings: PublishedSettings & { source: 'service' | 'environment'; publishedAt: string | null };
  paused: { since: string | null; by: string | null; reason: string | null } | null;
  triggerRequest: { at: string; by: string | null; reason: string | null } | null;
  maxWait: { firesAt: string; minBatch: number } | null;
}

export async function readControlStatus(pool: Pool, t: Tables, config: Config): Promise<ControlStatus> {
  const [c, published] = await Promise.all([readControl(pool, t), publishedSettings(pool, t)]);
  const settings = published
    ? {
        ...published.settings,
        source: 'service' as const,
        publishedAt: published.at.toISOString(),
      }
    : {
        ...settingsOf(config, config.dispatchMode, config.trainingNamespace || '(default)'),
        source: 'environment' as const,
        publishedAt: null,
      };
  const maxWait: MaxWait = { ms: settings.trainingMaxWaitSeconds * 1000, minBatch: settings.trainingMinBatch };
  const due = maxWaitDueAt(c, maxWait);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return {
    settings,
    paused: c.paused ? { since: iso(c.pausedAt), by: c.pausedBy, reason: c.pauseReason } : null,
    triggerRequest: c.triggerAt ? { at: c.triggerAt.toISOString(), by: c.triggerBy, reason: c.triggerReason } : null,
    maxWait: due === null ? null : { firesAt: new Date(due).toISOString(), minBatch: maxWait.minBatch },
  };
}

const by = (who: string | null, reason: string | null) => `${who ? ` by ${who}` : ''}${reason ? `: ${reason}` : ''}`;

export function controlLines(s: ControlStatus, pending: number): string[] {
  const lines: string[] = [];
  if (s.paused)
    lines.push(`paused:              since ${s.paused.since}${by(s.paused.by, s.paused.reason)} (resume lifts it)`);
  if (s.triggerRequest)
    lines.push(`trigger requested:   at ${s.triggerRequest.at}${by(s.triggerRequest.by, s.triggerRequest.reason)}`);
  if (s.maxWait) {
    const held = s.paused ? ', held by the pause' : '';
    const enough = pending >= s.maxWait.minBatch ? '' : ` once ${s.maxWait.minBatch} are pending`;
    lines.push(`max wait:            fires at ${s.maxWait.firesAt}${enough}${held}`);
  }
  const from =
    s.settings.source === 'service'
      ? `as published by the running service at ${s.settings.publishedAt}`
      : "from this shell's environment: no service has published its own";
  lines.push(`settings:            ${s.settings.mode}, namespace ${s.settings.namespace} (${from})`);
  return lines;
}

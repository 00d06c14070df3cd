// `training-controller status`: what an operator asks first. Reads only the database.
import { backoffUntil } from './backoff.js';
import type { Config } from './config.js';
import type { Pool } from './db.js';
import { invalidIndexWarning } from './schemaCheck.js';
import { tables } from './tables.js';
import { countPendingExact, failureHistory, openRun, recentRuns, unfinishedRun, type Run } from './runs.js';

export interface Status {
  pending: number;
  threshold: number;
  openRun:
    | (Pick<Run, 'id' | 'jobName' | 'state' | 'annotationCount'> & { ageSeconds: number; claim: ChunkProgress | null })
    | null;
  /** A run whose outcome is recorded but whose annotations are still being marked used or released, or a baseline under way. */
  unfinished: { id: number; state: string; work: 'settle' | 'baseline'; done: number; of: number | null } | null;
  backoff: { consecutiveFailures: number; until: string; remainingSeconds: number } | null;
  /** What an operator should fix, one line each (an INVALID index). */
  warnings: string[];
  recentRuns: {
    id: number;
    job: string;
    state: string;
    annotations: number;
    created: string;
    finished: string | null;
    reason: string | null;
  }[];
}

/** How far a chunked claim (or baseline) got: ids up to `cursor` done, of those up to `through`. */
export interface ChunkProgress {
  claimed: number;
  cursor: string | null;
  through: string | null;
}

const progress = (r: Run): ChunkProgress | null =>
  r.claimPending ? { claimed: r.annotationCount, cursor: r.claimCursor, through: r.claimThrough } : null;

export async function readStatus(pool: Pool, config: Config): Promise<Status> {
  const t = tables(config.annotationsSchema);
  const [pending, open, unfinished, history, recent, indexWarning] = await Promise.all([
    countPendingExact(pool, t),
    openRun(pool, t),
    unfinishedRun(pool, t),
    failureHistory(pool, t),
    recentRuns(pool, t, 10),
    invalidIndexWarning(pool, t),
  ]);
  // Ages and the back-off compare database timestamps with the database's clock, never this machine's.
  const now = history.now;
  const until = backoffUntil(history, config.retryBackoffSeconds, config.retryBackoffMaxSeconds);
  return {
    pending,
    threshold: config.trainingThreshold,
    openRun: open && {
      id: open.id,
      jobName: open.jobName,
      state: open.state,
      annotationCount: open.annotationCount,
      ageSeconds: Math.round((now - open.createdAt.getTime()) / 1000),
      claim: progress(open),
    },
    unfinished: unfinished && {
      id: unfinished.id,
      state: unfinished.state,
      work: unfinished.settlePending ? 'settle' : 'baseline',
      done: unfinished.settlePending
        ? (unfinished.trainedCount ?? 0) + (unfinished.releasedCount ?? 0)
        : unfinished.annotationCount,
      of: unfinished.settlePending ? unfinished.annotationCount : null,
    },
    backoff:
      until !== null && until > now
        ? {
            consecutiveFailures: history.consecutiveFailures,
            until: new Date(until).toISOString(),
            remainingSeconds: Math.ceil((until - now) / 1000),
          }
        : null,
    warnings: indexWarning ? [indexWarning] : [],
    recentRuns: recent.map((r) => ({
      id: r.id,
      job: r.jobName,
      state: r.state,
      annotations: r.annotationCount,
      created: r.createdAt.toISOString(),
      finished: r.finishedAt?.toISOString() ?? null,
      reason: r.reason,
    })),
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

export function formatStatus(s: Status): string {
  const lines = [
    `pending annotations: ${s.pending} (threshold ${s.threshold}${s.pending >= s.threshold ? ', reached' : ''})`,
    `open run:            ${s.openRun ? `#${s.openRun.id} ${s.openRun.jobName} ${s.openRun.state}, ${s.openRun.annotationCount} annotations, ${s.openRun.ageSeconds} s old` : 'none'}`,
    ...(s.openRun?.claim
      ? [`claim in progress:   ${claimLine(s.openRun.claim)} (the Job is created when it completes)`]
      : []),
    ...(s.unfinished
      ? [`${s.unfinished.work === 'settle' ? 'settle' : 'baseline'} in progress: ${unfinishedLine(s.unfinished)}`]
      : []),
    `back-off:            ${s.backoff ? `${s.backoff.remainingSeconds} s left after ${s.backoff.consecutiveFailures} failed run(s) (until ${s.backoff.until})` : 'none'}`,
    ...s.warnings.map((w) => `warning:             ${w}`),
    '',
  ];
  if (s.recentRuns.length === 0) return `${lines.join('\n')}no runs yet\n`;
  const rows = [['RUN', 'JOB', 'STATE', 'ANNOTATIONS', 'CREATED', 'FINISHED', 'REASON']];
  for (const r of s.recentRuns)
    rows.push([
      String(r.id),
      r.job,
      r.state,
      String(r.annotations),
      r.created,
      r.finished ?? '-',
      (r.reason ?? '').slice(0, 60),
    ]);
  return lines.join('\n') + table(rows);
}

// `training-controller status`: what an operator asks first. Reads only the database.
import { backoffUntil } from './backoff.js';
import type { Config } from './config.js';
import type { Pool } from './db.js';
import { invalidIndexWarning } from './schemaCheck.js';
import { tables } from './tables.js';
import { countPendingExact, failureHistory, openRun, recentRuns, type Run } from './runs.js';

export interface Status {
  pending: number;
  threshold: number;
  openRun: (Pick<Run, 'id' | 'jobName' | 'state' | 'annotationCount'> & { ageSeconds: number }) | null;
  backoff: { consecutiveFailures: number; until: string; remainingSeconds: number } | null;
  /** What an operator should fix, one line each (an INVALID index). */
  warnings: string[];
  recentRuns: { id: number; job: string; state: string; annotations: number; created: string; finished: string | null; reason: string | null }[];
}

export async function readStatus(pool: Pool, config: Config): Promise<Status> {
  const t = tables(config.annotationsSchema);
  const [pending, open, history, recent, indexWarning] = await Promise.all([
    countPendingExact(pool, t),
    openRun(pool, t),
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
    },
    backoff:
      until !== null && until > now
        ? { consecutiveFailures: history.consecutiveFailures, until: new Date(until).toISOString(), remainingSeconds: Math.ceil((until - now) / 1000) }
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
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n') + '\n';
}

export function formatStatus(s: Status): string {
  const lines = [
    `pending annotations: ${s.pending} (threshold ${s.threshold}${s.pending >= s.threshold ? ', reached' : ''})`,
    `open run:            ${s.openRun ? `#${s.openRun.id} ${s.openRun.jobName} ${s.openRun.state}, ${s.openRun.annotationCount} annotations, ${s.openRun.ageSeconds} s old` : 'none'}`,
    `back-off:            ${s.backoff ? `${s.backoff.remainingSeconds} s left after ${s.backoff.consecutiveFailures} failed run(s) (until ${s.backoff.until})` : 'none'}`,
    ...s.warnings.map((w) => `warning:             ${w}`),
    '',
  ];
  if (s.recentRuns.length === 0) return lines.join('\n') + 'no runs yet\n';
  const rows = [['RUN', 'JOB', 'STATE', 'ANNOTATIONS', 'CREATED', 'FINISHED', 'REASON']];
  for (const r of s.recentRuns) rows.push([String(r.id), r.job, r.state, String(r.annotations), r.created, r.finished ?? '-', (r.reason ?? '').slice(0, 60)]);
  return lines.join('\n') + table(rows);
}

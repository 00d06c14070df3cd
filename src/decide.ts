// The dispatch decision, pure: the dispatcher gathers the facts (under the advisory lock) and this says
// what to do and why. The "why" is what the log prints.

export interface DispatchFacts {
  pending: number;
  threshold: number;
  /** The open run in training_runs, if any. */
  openRun: { id: number; jobName: string; state: string } | null;
  /** Unfinished Jobs labelled app=sentinel-training, whoever created them. */
  activeJobs: string[];
  /** No new run before this instant (ms, database clock), after failed runs; null when not backing off. */
  backoffUntil: number | null;
  /** The database's clock (ms): back-off instants come from finished_at, so they are compared with its now(). */
  now: number;
}

export type SkipReason = 'below-threshold' | 'in-progress' | 'backoff';

export type Decision =
  | { action: 'dispatch'; why: string }
  | { action: 'skip'; reason: SkipReason; why: string; retryInMs?: number };

export const IN_PROGRESS = 'Training already in progress';

export function decideDispatch(f: DispatchFacts): Decision {
  if (f.pending < f.threshold) {
    return {
      action: 'skip',
      reason: 'below-threshold',
      why: `${f.pending} pending, below the threshold of ${f.threshold}`,
    };
  }
  if (f.openRun) {
    return {
      action: 'skip',
      reason: 'in-progress',
      why: `${IN_PROGRESS}: run ${f.openRun.id} (${f.openRun.jobName}) is ${f.openRun.state}`,
    };
  }
  if (f.activeJobs.length > 0) {
    return {
      action: 'skip',
      reason: 'in-progress',
      why: `${IN_PROGRESS}: Job ${f.activeJobs.join(', ')} has not finished`,
    };
  }
  if (f.backoffUntil !== null && f.now < f.backoffUntil) {
    const seconds = Math.ceil((f.backoffUntil - f.now) / 1000);
    return {
      action: 'skip',
      reason: 'backoff',
      why: `backing off after failed runs: next run in ${seconds} s`,
      retryInMs: f.backoffUntil - f.now,
    };
  }
  return { action: 'dispatch', why: `${f.pending} pending, threshold ${f.threshold}` };
}

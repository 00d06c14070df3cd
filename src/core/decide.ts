// The dispatch decision, pure: the dispatcher gathers the facts (under the advisory lock) and this says
// what to do and why. The "why" is what the log prints.
import type { TriggerKind } from './triggers.js';

export interface DispatchFacts {
  pending: number;
  threshold: number;
  /** What would start a run now (triggers.ts), null when nothing would. */
  trigger: TriggerKind | null;
  /** Paused by `training-controller pause`: no run starts, whatever the trigger. */
  paused: boolean;
  /** Who asked for a manual run and why, for its log line. */
  manual?: { by: string | null; reason: string | null };
  /**
   * The open run in training_runs, if any; or a run that blocks like one until `untilMs` (database clock): one
   * cancelled while its Job create was unanswered, which a slow API server may still persist.
   */
  openRun: { id: number; jobName: string; state: string; untilMs?: number } | null;
  /** Unfinished Jobs labelled app=sentinel-training, whoever created them. */
  activeJobs: string[];
  /** No new run before this instant (ms, database clock), after failed runs; null when not backing off. */
  backoffUntil: number | null;
  /** The database's clock (ms): back-off instants come from finished_at, so they are compared with its now(). */
  now: number;
}

export type SkipReason = 'below-threshold' | 'in-progress' | 'backoff' | 'paused';

export const SKIP_REASONS: readonly SkipReason[] = ['below-threshold', 'in-progress', 'backoff', 'paused'];

export type Decision =
  | { action: 'dispatch'; why: string }
  | { action: 'skip'; reason: SkipReason; why: string; retryInMs?: number };

export const IN_PROGRESS = 'Training already in progress';

export const PAUSED = 'Paused: no run starts until `training-controller resume`';

export function decideDispatch(f: DispatchFacts): Decision {
  if (f.paused) return { action: 'skip', reason: 'paused', why: PAUSED };
  if (f.trigger === null) {
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
      ...(f.openRun.untilMs !== undefined ? { retryInMs: Math.max(0, f.openRun.untilMs - f.now) } : {}),
    };
  }
  if (f.activeJobs.length > 0) {
    return {
      action: 'skip',
      reason: 'in-progress',
      why: `${IN_PROGRESS}: Job ${f.activeJobs.join(', ')} has not finished`,
    };
  }
  // A person asking for a run now has read why the last ones failed: the back-off is for the automatic triggers.
  if (f.trigger !== 'manual' && f.backoffUntil !== null && f.now < f.backoffUntil) {
    const seconds = Math.ceil((f.backoffUntil - f.now) / 1000);
    return {
      action: 'skip',
      reason: 'backoff',
      why: `backing off after failed runs: next run in ${seconds} s`,
      retryInMs: f.backoffUntil - f.now,
    };
  }
  return { action: 'dispatch', why: dispatchWhy(f) };
}

function dispatchWhy(f: DispatchFacts): string {
  if (f.trigger === 'manual') {
    const reason = f.manual?.reason ? `: ${f.manual.reason}` : '';
    return `triggered by ${f.manual?.by ?? 'an operator'}${reason} (${f.pending} pending)`;
  }
  if (f.trigger === 'max-wait')
    return `${f.pending} pending (below the threshold of ${f.threshold}) waited TRAINING_MAX_WAIT_SECONDS`;
  return `${f.pending} pending, threshold ${f.threshold}`;
}

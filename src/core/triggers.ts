// What may start a run, pure (issue #11). Three triggers, checked by the dispatcher under its lock:
//   threshold: TRAINING_THRESHOLD annotations pending (the default, and the only one unless configured);
//   max-wait:  TRAINING_MAX_WAIT_SECONDS after the service first saw an annotation pending, once at least
//              TRAINING_MIN_BATCH are: a trickle still trains (50 take an hour on a busy day, weeks on a quiet one);
//   manual:    `training-controller trigger`, with whatever is pending (at least 1), through a back-off.
// A pause holds all three. An open run holds all three too (decide.ts says so with the reason).

export type TriggerKind = 'threshold' | 'max-wait' | 'manual';

/** The operator-controlled state (training_control), as the dispatcher and the controller read it. */
export interface Control {
  paused: boolean;
  pausedAt: Date | null;
  pausedBy: string | null;
  pauseReason: string | null;
  triggerAt: Date | null;
  triggerBy: string | null;
  triggerReason: string | null;
  /** When the service first saw an annotation pending (null: none pending at the last recount). */
  pendingSince: Date | null;
}

export interface MaxWait {
  /** TRAINING_MAX_WAIT_SECONDS × 1000; 0: off. */
  ms: number;
  /** TRAINING_MIN_BATCH (1 ≤ it ≤ the threshold). */
  minBatch: number;
}

/** The instant (ms) the max wait fires, whether or not enough are pending then; null when off or nothing pending. */
export function maxWaitDueAt(control: Pick<Control, 'pendingSince'>, maxWait: MaxWait): number | null {
  if (maxWait.ms <= 0 || control.pendingSince === null) return null;
  return control.pendingSince.getTime() + maxWait.ms;
}

/**
 * Which trigger would start a run now, ignoring open runs and back-off (decide.ts weighs those): a manual
 * request first (it names a person and a reason), then the threshold, then the max wait. null: none would.
 * `pending` is counted up to the threshold, which is enough for every comparison here (minBatch ≤ threshold).
 */
export function firedTrigger(
  pending: number,
  threshold: number,
  control: Control,
  maxWait: MaxWait,
  now: number,
): TriggerKind | null {
  if (control.paused) return null;
  if (control.triggerAt !== null && pending >= 1) return 'manual';
  if (pending >= threshold) return 'threshold';
  const due = maxWaitDueAt(control, maxWait);
  if (due !== null && now >= due && pending >= maxWait.minBatch) return 'max-wait';
  return null;
}

/**
 * The pending count at which the controller wants a notification (the gate's target, gate.ts), or null for
 * none. With the max wait on, the first pending verification starts its clock, so it must be heard: 1 when
 * nothing was pending; once the wait is over, TRAINING_MIN_BATCH. A pause needs no notification at all: the
 * `resume` NOTIFY recounts.
 */
export function wakeAtCount(
  pending: number,
  threshold: number,
  control: Control,
  maxWait: MaxWait,
  now: number,
): number | null {
  if (control.paused) return null;
  if (maxWait.ms <= 0) return threshold;
  if (pending === 0 || control.pendingSince === null) return 1;
  const due = maxWaitDueAt(control, maxWait);
  return due !== null && now >= due ? Math.min(threshold, maxWait.minBatch) : threshold;
}

export function maxWaitOf(config: { trainingMaxWaitSeconds: number; trainingMinBatch: number }): MaxWait {
  return { ms: config.trainingMaxWaitSeconds * 1000, minBatch: config.trainingMinBatch };
}

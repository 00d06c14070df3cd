// A training_runs row as the code sees it: the columns every query selects, and their mapping to Run.
import type { TriggerKind } from './triggers.js';

export type RunState = 'submitting' | 'running' | 'succeeded' | 'failed' | 'lost' | 'baseline' | 'cancelled';

/** How a run ended when it did not succeed: its annotations are pending again. */
export type ReleasedState = 'failed' | 'lost' | 'cancelled';

export interface Run {
  id: number;
  jobName: string;
  namespace: string;
  state: RunState;
  annotationCount: number;
  createAttempts: number;
  createdAt: Date;
  submittedAt: Date | null;
  finishedAt: Date | null;
  reason: string | null;
  /** A chunked claim (or baseline) is under way (chunks.ts); ids up to claimCursor are done. */
  claimPending: boolean;
  claimCursor: string | null;
  claimThrough: string | null;
  /** The outcome is recorded, the annotations not all marked used / released yet (chunks.ts). */
  settlePending: boolean;
  trainedCount: number | null;
  releasedCount: number | null;
  /** What started it (triggers.ts) and, for a manual or max-wait run, why. */
  triggerKind: TriggerKind;
  triggerReason: string | null;
  /** `training-controller cancel` asked for this run to end: the service deletes its Job and releases it. */
  cancelRequestedAt: Date | null;
  cancelBy: string | null;
  cancelReason: string | null;
}

export const COLUMNS = `id::int, job_name, namespace, state, annotation_count, create_attempts, created_at, submitted_at, finished_at, reason,
  claim_pending, claim_cursor, claim_through, settle_pending, trained_count, released_count,
  coalesce(trigger_kind, 'threshold') AS trigger_kind, trigger_reason, cancel_requested_at, cancel_by, cancel_reason`;

export interface RunRow {
  id: number;
  job_name: string;
  namespace: string;
  state: RunState;
  annotation_count: number;
  create_attempts: number;
  created_at: Date;
  submitted_at: Date | null;
  finished_at: Date | null;
  reason: string | null;
  claim_pending: boolean;
  claim_cursor: string | null;
  claim_through: string | null;
  settle_pending: boolean;
  trained_count: number | null;
  released_count: number | null;
  trigger_kind: TriggerKind;
  trigger_reason: string | null;
  cancel_requested_at: Date | null;
  cancel_by: string | null;
  cancel_reason: string | null;
}

export const toRun = (r: RunRow): Run => ({
  id: r.id,
  jobName: r.job_name,
  namespace: r.namespace,
  state: r.state,
  annotationCount: r.annotation_count,
  createAttempts: r.create_attempts,
  createdAt: r.created_at,
  submittedAt: r.submitted_at,
  finishedAt: r.finished_at,
  reason: r.reason,
  claimPending: r.claim_pending,
  claimCursor: r.claim_cursor,
  claimThrough: r.claim_through,
  settlePending: r.settle_pending,
  trainedCount: r.trained_count,
  releasedCount: r.released_count,
  triggerKind: r.trigger_kind,
  triggerReason: r.trigger_reason,
  cancelRequestedAt: r.cancel_requested_at,
  cancelBy: r.cancel_by,
  cancelReason: r.cancel_reason,
});

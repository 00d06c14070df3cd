// A training run as every layer sees it: its states and what the controller knows of it. Its row and every
// statement on training_runs belong to db/runs.ts.
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

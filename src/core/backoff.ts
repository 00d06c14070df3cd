// Back-off after failed runs: RETRY_BACKOFF_SECONDS (60) doubling per consecutive failure, capped
// (3600: 60, 120, 240, 480, 960, 1920, 3600 s). A success resets it. Derived from training_runs, so it
// survives restarts and is the same on every replica.

export interface FailureHistory {
  /** Failed or lost runs since the last succeeded one. */
  consecutiveFailures: number;
  /** When the latest of those finished (ms since epoch, database clock), null if none. */
  lastFailureAt: number | null;
  /** The database's now() when this was read: compare lastFailureAt with this, never with the local clock. */
  now: number;
}

export function backoffSeconds(consecutiveFailures: number, baseSeconds: number, capSeconds: number): number {
  if (consecutiveFailures <= 0) return 0;
  // 2 ** 30 already exceeds any cap; clamping the exponent keeps the arithmetic finite.
  return Math.min(capSeconds, baseSeconds * 2 ** Math.min(consecutiveFailures - 1, 30));
}

/** The instant before which no new run may start, or null when not backing off. */
export function backoffUntil(history: FailureHistory, baseSeconds: number, capSeconds: number): number | null {
  if (history.consecutiveFailures <= 0 || history.lastFailureAt === null) return null;
  return history.lastFailureAt + backoffSeconds(history.consecutiveFailures, baseSeconds, capSeconds) * 1000;
}

/**
 * Retry delays for a dependency that is down (database, API server), in ms: 136, 370, 1005, 2730, 7421,
 * then 20 s steady (graphile-worker's e-based table, capped lower: a dispatch waiting 54 s is too late).
 */
export function retryDelayMs(attempt: number): number {
  return Math.min(20_000, Math.round(50 * Math.E ** Math.max(1, attempt)));
}

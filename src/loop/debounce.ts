// Leading-edge debounce with one trailing call and a maximum wait (issue #12). The gate makes notifications
// rare (only a verification that may reach the threshold notifies), so a quiet controller acts on the first at
// once: a trailing-only DEBOUNCE_MS=1000 put ~1,025 ms between the threshold-crossing commit and the Job
// create. Requests within `waitMs` of the last call are coalesced into one trailing call, `waitMs` after the
// last of them but never later than `maxWaitMs` after the first, so a storm still costs one call per quiet
// period (or per `maxWaitMs` of a steady stream) plus the leading one.
//   idle --request (nothing ran within waitMs)--> fire now (leading)            → idle
//   idle --request (a call ran within waitMs)---> pending: timer at fireAt(…)   → fires (trailing) → idle
import type { Timers } from '../core/timers.js';

// With DEBOUNCE_MS=1000 and a 5,000 ms cap, 100,000 notifications over 10 s cost at most 1 + 10/5 + 1 = 4 recounts.

/** When a debounced call fires, given the first and the latest request since the last fire. Pure. */
export function fireAt(firstRequestAt: number, lastRequestAt: number, waitMs: number, maxWaitMs: number): number {
  return Math.min(lastRequestAt + waitMs, firstRequestAt + maxWaitMs);
}

export class Debouncer {
  private firstAt: number | null = null;
  private lastAt = 0;
  private handle: unknown = null;
  /** When the last call fired; a request later than `waitMs` after it fires at once. */
  private firedAt = -Infinity;

  constructor(
    private readonly timers: Timers,
    private readonly waitMs: number,
    private readonly maxWaitMs: number,
    private readonly fire: () => void,
  ) {}

  get pending(): boolean {
    return this.firstAt !== null;
  }

  /**
   * Cheap on purpose: a storm calls this once per notification (100,000 times), so it only records the time;
   * the timer is re-armed lazily, when it fires early because requests kept coming.
   */
  request(): void {
    const now = this.timers.now();
    if (this.firstAt === null && now - this.firedAt >= this.waitMs) {
      this.firedAt = now; // leading edge: nothing ran within the window
      this.fire();
      return;
    }
    if (this.firstAt === null) this.firstAt = now;
    this.lastAt = now;
    if (this.handle === null) this.arm();
  }

  /** Forget a pending request (the caller is about to do the work anyway, or is stopping). */
  cancel(): void {
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.handle = null;
    this.firstAt = null;
  }

  private arm(): void {
    const due = fireAt(this.firstAt ?? this.lastAt, this.lastAt, this.waitMs, this.maxWaitMs);
    this.handle = this.timers.setTimeout(
      () => {
        this.handle = null;
        if (this.firstAt === null) return;
        if (this.timers.now() < fireAt(this.firstAt, this.lastAt, this.waitMs, this.maxWaitMs)) {
          this.arm(); // more requests came: wait for the quiet (or the cap) they moved the deadline to
          return;
        }
        this.firstAt = null;
        this.firedAt = this.timers.now();
        this.fire();
      },
      Math.max(0, due - this.timers.now()),
    );
  }
}

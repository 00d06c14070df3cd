// Trailing debounce with a maximum wait: a storm of notifications becomes one recount per `waitMs` of quiet,
// but never later than `maxWaitMs` after the first request, so a steady stream cannot starve the recount.
import type { Timers } from './timers.js';

// With DEBOUNCE_MS=1000 and a 5,000 ms cap, 100,000 notifications over 10 s cost at most 10/5 + 1 = 3 recounts.

/** When a debounced call fires, given the first and the latest request since the last fire. Pure. */
export function fireAt(firstRequestAt: number, lastRequestAt: number, waitMs: number, maxWaitMs: number): number {
  return Math.min(lastRequestAt + waitMs, firstRequestAt + maxWaitMs);
}

export class Debouncer {
  private firstAt: number | null = null;
  private lastAt = 0;
  private handle: unknown = null;

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
    this.handle = this.timers.setTimeout(() => {
      this.handle = null;
      if (this.firstAt === null) return;
      if (this.timers.now() < fireAt(this.firstAt, this.lastAt, this.waitMs, this.maxWaitMs)) {
        this.arm(); // more requests came: wait for the quiet (or the cap) they moved the deadline to
        return;
      }
      this.firstAt = null;
      this.fire();
    }, Math.max(0, due - this.timers.now()));
  }
}

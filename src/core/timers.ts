// Time as a port: the real clock and timers in production, a fake one in tests (test/support/fakeTimers.ts).
// Every timer of the loop goes through here, intervals included, so the controller runs on a fake clock.

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/** A pause on the given clock (a fake one in tests). */
export function sleep(timers: Timers, ms: number): Promise<void> {
  return new Promise((resolve) => timers.setTimeout(resolve, ms));
}

/** A sleep that `wake()` ends early and whose timer is cleared either way (no handle left to hold the process). */
export function interruptibleSleep(timers: Timers, ms: number): { done: Promise<void>; wake(): void } {
  let wake: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    const handle = timers.setTimeout(resolve, ms);
    wake = () => {
      timers.clearTimeout(handle);
      resolve();
    };
  });
  return { done, wake };
}

/**
 * At most one pending call of `fn`: scheduling while one is pending keeps the earlier of the two, so retry
 * chains started by every failing tick merge into one instead of multiplying during an outage.
 */
export class OneShot {
  private handle: unknown = null;
  private at = 0;

  constructor(
    private readonly timers: Timers,
    private readonly fn: () => void,
  ) {}

  schedule(ms: number): void {
    const at = this.timers.now() + ms;
    if (this.handle !== null) {
      if (this.at <= at) return;
      this.timers.clearTimeout(this.handle);
    }
    this.at = at;
    this.handle = this.timers.setTimeout(() => {
      this.handle = null;
      this.fn();
    }, ms);
  }

  cancel(): void {
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.handle = null;
  }
}

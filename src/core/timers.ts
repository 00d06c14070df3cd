// Time as a port: the real clock and timers in production, a fake one in tests (test/support/fakeTimers.ts).
// Every timer of the loop goes through here, intervals included, so the controller runs on a fake clock, and
// every one holds any delay a setting allows (withLongDelays: Node's own stop at 24.8 days).

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/**
 * The longest delay a Node timer holds (24.8 days). Node replaces a longer one by 1 ms with a
 * TimeoutOverflowWarning on stderr: TRAINING_MAX_WAIT_SECONDS allows a year, and a 30-day max wait recounted
 * every millisecond (issue 21: 1,000–1,500 recounts, 4,000–5,600 commits and ~1,200 warnings per 5 s on 2 cores).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer longer than MAX_TIMER_MS: the host timeout of its current link, replaced at each link. */
class Chained {
  link: unknown = null;
}

/**
 * `host` holding any delay: a longer one is a chain of host timeouts of at most MAX_TIMER_MS, each re-checked
 * against `host.now()` when it ends, so the timer fires at the due instant on the clock (not after a count of
 * links: a suspended machine's clock jumps ahead). A shorter one goes to the host as it is.
 */
export function withLongDelays(host: Timers): Timers {
  const chain = (fn: () => void, ms: number, repeat: boolean): Chained => {
    const timer = new Chained();
    let due = host.now() + ms;
    const link = (): void => {
      const left = due - host.now();
      if (left > 0) {
        timer.link = host.setTimeout(link, Math.min(left, MAX_TIMER_MS));
        return;
      }
      if (repeat) {
        // Armed before fn runs, so a clearInterval inside fn clears the next period.
        due = host.now() + ms;
        timer.link = host.setTimeout(link, MAX_TIMER_MS);
      }
      fn();
    };
    link();
    return timer;
  };
  const clear = (handle: unknown, hostClear: (h: unknown) => void): void => {
    if (handle instanceof Chained) host.clearTimeout(handle.link);
    else hostClear(handle);
  };
  return {
    now: () => host.now(),
    setTimeout: (fn, ms) => (ms > MAX_TIMER_MS ? chain(fn, ms, false) : host.setTimeout(fn, ms)),
    clearTimeout: (handle) => clear(handle, (h) => host.clearTimeout(h)),
    setInterval: (fn, ms) => (ms > MAX_TIMER_MS ? chain(fn, ms, true) : host.setInterval(fn, ms)),
    clearInterval: (handle) => clear(handle, (h) => host.clearInterval(h)),
  };
}

export const realTimers: Timers = withLongDelays({
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
});

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

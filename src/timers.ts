// Time as a port: the real clock and timers in production, a fake one in unit tests.

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

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

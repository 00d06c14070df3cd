// Issue 21, item 7: TRAINING_MAX_WAIT_SECONDS allows a year, and Node replaces a timeout above 2^31−1 ms
// (24.8 days) with 1 ms: a 30-day max wait recounted every millisecond (1,000–1,500 recounts per 5 s).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_TIMER_MS, OneShot, realTimers, withLongDelays, type Timers } from '../../src/core/timers.js';
import { FakeTimers } from '../support/fakeTimers.js';

const DAY = 86_400_000;

/** A fake clock whose timers behave like Node's: a delay above MAX_TIMER_MS becomes 1 ms. */
function nodeLike(): { clock: FakeTimers; host: Timers; longest: () => number } {
  const clock = new FakeTimers();
  let longest = 0;
  const cap = (ms: number) => {
    longest = Math.max(longest, ms);
    return ms > MAX_TIMER_MS ? 1 : ms;
  };
  const host: Timers = {
    now: clock.now,
    setTimeout: (fn, ms) => clock.setTimeout(fn, cap(ms)),
    clearTimeout: clock.clearTimeout,
    setInterval: (fn, ms) => clock.setInterval(fn, cap(ms)),
    clearInterval: clock.clearInterval,
  };
  return { clock, host, longest: () => longest };
}

describe('timers longer than a Node timer', () => {
  it('the Node-like fake shows the bug: a 30-day timeout handed to it directly fires after 1 ms', () => {
    const { clock, host } = nodeLike();
    let fired = 0;
    host.setTimeout(() => fired++, 30 * DAY);
    clock.advance(1);
    assert.equal(fired, 1);
  });

  it('a 30-day timeout does not fire early, fires once when due, and never asks the host for more than it holds', () => {
    const { clock, host, longest } = nodeLike();
    const timers = withLongDelays(host);
    const firedAt: number[] = [];
    timers.setTimeout(() => firedAt.push(clock.t), 30 * DAY);
    clock.advance(30 * DAY - 1);
    assert.deepEqual(firedAt, [], 'not before 30 days');
    clock.advance(1);
    assert.deepEqual(firedAt, [30 * DAY]);
    clock.advance(60 * DAY);
    assert.deepEqual(firedAt, [30 * DAY], 'once');
    assert.ok(longest() <= MAX_TIMER_MS, `the host was asked for ${longest()} ms`);
    assert.equal(clock.pending, 0, 'no timer left behind');
  });

  it("a year (TRAINING_MAX_WAIT_SECONDS's maximum) through OneShot, as the controller's max wait uses it", () => {
    const { clock, host, longest } = nodeLike();
    const timers = withLongDelays(host);
    let fired = 0;
    const maxWait = new OneShot(timers, () => fired++);
    maxWait.schedule(31_536_000 * 1000);
    clock.advance(364 * DAY);
    assert.equal(fired, 0);
    maxWait.schedule(1 * DAY); // an earlier deadline replaces the long one (its chain cleared)
    clock.advance(DAY);
    assert.equal(fired, 1);
    clock.advance(10 * DAY);
    assert.equal(fired, 1, 'the replaced year-long timer is gone');
    assert.equal(clock.pending, 0);
    assert.ok(longest() <= MAX_TIMER_MS);
  });

  it('re-checks the clock at each link: a clock that jumps ahead (a suspended machine) fires at the due instant', () => {
    const { clock, host } = nodeLike();
    const timers = withLongDelays(host);
    const firedAt: number[] = [];
    timers.setTimeout(() => firedAt.push(clock.t), 40 * DAY);
    clock.t += 39 * DAY; // the wall clock moved while the first 24.8-day link was still to run
    clock.advance(MAX_TIMER_MS);
    // Counting links instead (24.8 days, then the 15.2 left) would fire at 54.2 days.
    assert.deepEqual(firedAt, [40 * DAY], 'at the due instant on the clock');
  });

  it('clearTimeout ends a chain part way', () => {
    const { clock, host } = nodeLike();
    const timers = withLongDelays(host);
    let fired = 0;
    const handle = timers.setTimeout(() => fired++, 30 * DAY);
    clock.advance(26 * DAY); // past the first link
    timers.clearTimeout(handle);
    clock.advance(10 * DAY);
    assert.equal(fired, 0);
    assert.equal(clock.pending, 0);
  });

  it('an interval longer than a Node timer fires once per period, and clearInterval from inside it stops it', () => {
    const { clock, host, longest } = nodeLike();
    const timers = withLongDelays(host);
    const firedAt: number[] = [];
    const handle = timers.setInterval(() => {
      firedAt.push(clock.t);
      if (firedAt.length === 3) timers.clearInterval(handle);
    }, 30 * DAY);
    clock.advance(200 * DAY);
    assert.deepEqual(firedAt, [30 * DAY, 60 * DAY, 90 * DAY]);
    assert.equal(clock.pending, 0);
    assert.ok(longest() <= MAX_TIMER_MS);
  });

  it('short timers go to the host as they are', () => {
    const { clock, host } = nodeLike();
    const timers = withLongDelays(host);
    const firedAt: number[] = [];
    timers.setTimeout(() => firedAt.push(clock.t), 5);
    timers.setTimeout(() => firedAt.push(clock.t), MAX_TIMER_MS);
    clock.advance(MAX_TIMER_MS);
    assert.deepEqual(firedAt, [5, MAX_TIMER_MS]);
  });

  it('realTimers: a 30-day timeout does not fire within 50 ms and raises no TimeoutOverflowWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      let fired = 0;
      const handle = realTimers.setTimeout(() => fired++, 30 * DAY);
      const interval = realTimers.setInterval(() => fired++, 30 * DAY);
      await new Promise((r) => setTimeout(r, 50));
      realTimers.clearTimeout(handle);
      realTimers.clearInterval(interval);
      assert.equal(fired, 0, 'fired early');
      await new Promise((r) => setImmediate(r)); // a warning is emitted on the next tick
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

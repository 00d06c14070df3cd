import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Debouncer, fireAt } from '../../src/loop/debounce.js';
import { FakeTimers } from '../support/fakeTimers.js';

describe('debounce', () => {
  it('fires after the wait, or at the maximum wait, whichever is first', () => {
    assert.equal(fireAt(0, 0, 100, 500), 100);
    assert.equal(fireAt(0, 450, 100, 500), 500);
  });

  it('fires at once on the first request after a quiet window (leading edge)', () => {
    const timers = new FakeTimers();
    const firedAt: number[] = [];
    const d = new Debouncer(timers, 1000, 5000, () => firedAt.push(timers.t));
    d.request();
    assert.deepEqual(firedAt, [0]);
    timers.advance(1000);
    d.request();
    assert.deepEqual(firedAt, [0, 1000], 'a full window after the last call: at once again');
  });

  it('turns a burst into one leading call and one trailing call, a wait after the last request', () => {
    const timers = new FakeTimers();
    const firedAt: number[] = [];
    const d = new Debouncer(timers, 100, 1000, () => firedAt.push(timers.t));
    for (let i = 0; i < 50; i++) {
      d.request();
      timers.advance(10);
    }
    assert.deepEqual(firedAt, [0]);
    timers.advance(100);
    assert.deepEqual(firedAt, [0, 590]);
    timers.advance(10_000);
    assert.deepEqual(firedAt, [0, 590]);
  });

  it('a request soon after a trailing call waits for the next trailing call', () => {
    const timers = new FakeTimers();
    const firedAt: number[] = [];
    const d = new Debouncer(timers, 100, 1000, () => firedAt.push(timers.t));
    d.request(); // leading at 0
    timers.advance(50);
    d.request(); // trailing at 150
    timers.advance(150);
    d.request(); // 50 ms after the trailing call: trailing again at 300
    timers.advance(200);
    assert.deepEqual(firedAt, [0, 150, 300]);
  });

  it('is not starved by a steady stream: fires every maximum wait', () => {
    const timers = new FakeTimers();
    const firedAt: number[] = [];
    const d = new Debouncer(timers, 100, 500, () => firedAt.push(timers.t));
    // A request every 50 ms for 2 s never leaves 100 ms of quiet.
    for (let i = 0; i < 40; i++) {
      d.request();
      timers.advance(50);
    }
    // The first request fires at once; the rest each wait for the cap: 500 ms after the first of them.
    assert.deepEqual(firedAt, [0, 550, 1050, 1550]);
  });

  it('a storm of 100,000 requests over 10 s costs at most duration/maxWait + 1 calls', () => {
    const timers = new FakeTimers();
    let fired = 0;
    const d = new Debouncer(timers, 1000, 5000, () => fired++);
    for (let i = 0; i < 100_000; i++) {
      d.request();
      if (i % 100 === 0) timers.advance(10);
    }
    timers.advance(2000);
    assert.ok(fired <= 3, `fired ${fired}`);
    assert.ok(fired >= 1);
  });

  it('cancel forgets a pending request', () => {
    const timers = new FakeTimers();
    let fired = 0;
    const d = new Debouncer(timers, 100, 500, () => fired++);
    d.request(); // leading: fires at once
    d.request(); // within the window: pending
    assert.equal(d.pending, true);
    d.cancel();
    timers.advance(1000);
    assert.equal(fired, 1);
    assert.equal(d.pending, false);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Debouncer, fireAt } from '../../src/debounce.js';
import { FakeTimers } from '../support/fakeTimers.js';

describe('debounce', () => {
  it('fires after the wait, or at the maximum wait, whichever is first', () => {
    assert.equal(fireAt(0, 0, 100, 500), 100);
    assert.equal(fireAt(0, 450, 100, 500), 500);
  });

  it('turns a burst into one call, a wait after the last request', () => {
    const timers = new FakeTimers();
    let fired = 0;
    const d = new Debouncer(timers, 100, 1000, () => fired++);
    for (let i = 0; i < 50; i++) {
      d.request();
      timers.advance(10);
    }
    assert.equal(fired, 0);
    timers.advance(100);
    assert.equal(fired, 1);
    timers.advance(10_000);
    assert.equal(fired, 1);
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
    assert.deepEqual(firedAt, [500, 1000, 1500, 2000]);
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
    d.request();
    d.cancel();
    timers.advance(1000);
    assert.equal(fired, 0);
    assert.equal(d.pending, false);
  });
});

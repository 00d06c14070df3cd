import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideDispatch, type DispatchFacts } from '../../src/core/decide.js';
import { backoffSeconds, backoffUntil, retryDelayMs } from '../../src/core/backoff.js';

const base: DispatchFacts = {
  pending: 50,
  threshold: 50,
  trigger: 'threshold',
  paused: false,
  openRun: null,
  activeJobs: [],
  backoffUntil: null,
  now: 1_000_000,
};

describe('dispatch decision', () => {
  const cases: [string, Partial<DispatchFacts>, string, RegExp][] = [
    ['dispatches at the threshold', {}, 'dispatch', /50 pending, threshold 50/],
    [
      'skips below the threshold',
      { pending: 49, trigger: null },
      'below-threshold',
      /49 pending, below the threshold of 50/,
    ],
    ['skips while paused, whatever the trigger', { trigger: 'manual' }, 'paused', /^Paused: .*resume/],
    [
      'a manual trigger goes through a back-off and names who asked',
      { trigger: 'manual', pending: 3, backoffUntil: 1_060_000, manual: { by: 'ana@ops', reason: 'labels fixed' } },
      'dispatch',
      /^triggered by ana@ops: labels fixed \(3 pending\)$/,
    ],
    [
      'a manual trigger still waits for the open run',
      { trigger: 'manual', openRun: { id: 3, jobName: 'j', state: 'running' } },
      'in-progress',
      /run 3/,
    ],
    [
      'the max wait respects the back-off',
      { trigger: 'max-wait', pending: 4, backoffUntil: 1_060_000 },
      'backoff',
      /60 s/,
    ],
    [
      'the max wait says why below the threshold',
      { trigger: 'max-wait', pending: 4 },
      'dispatch',
      /waited TRAINING_MAX_WAIT_SECONDS/,
    ],
    [
      'skips while a run is open',
      { openRun: { id: 3, jobName: 'j', state: 'running' } },
      'in-progress',
      /^Training already in progress: run 3 \(j\) is running$/,
    ],
    [
      'skips while a Job of no run is unfinished',
      { activeJobs: ['manual'] },
      'in-progress',
      /^Training already in progress: Job manual/,
    ],
    ['skips during back-off and says how long', { backoffUntil: 1_060_000 }, 'backoff', /next run in 60 s/],
    ['dispatches once the back-off has passed', { backoffUntil: 999_999 }, 'dispatch', /pending/],
  ];
  for (const [name, facts, expected, why] of cases) {
    it(name, () => {
      const d = decideDispatch({ ...base, paused: name.includes('paused'), ...facts });
      assert.equal(d.action === 'dispatch' ? 'dispatch' : d.reason, expected);
      assert.match(d.why, why);
    });
  }

  it('checks the open run before the back-off: "in progress" is the more useful answer', () => {
    const d = decideDispatch({
      ...base,
      openRun: { id: 1, jobName: 'j', state: 'submitting' },
      backoffUntil: 2_000_000,
    });
    assert.equal(d.action === 'skip' && d.reason, 'in-progress');
  });
});

describe('back-off', () => {
  it('doubles per consecutive failure from RETRY_BACKOFF_SECONDS up to the cap', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 6, 7, 8, 100].map((n) => backoffSeconds(n, 60, 3600)),
      [0, 60, 120, 240, 1920, 3600, 3600, 3600],
    );
  });

  it('runs from the last failure', () => {
    assert.equal(backoffUntil({ consecutiveFailures: 2, lastFailureAt: 1000, now: 2000 }, 60, 3600), 1000 + 120_000);
    assert.equal(backoffUntil({ consecutiveFailures: 0, lastFailureAt: null, now: 2000 }, 60, 3600), null);
  });

  it('retries an unreachable dependency quickly at first, then every 20 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map(retryDelayMs), [136, 369, 1004, 2730, 7421]);
    assert.equal(retryDelayMs(50), 20_000);
  });
});

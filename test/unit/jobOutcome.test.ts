import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Job, V1JobCondition } from '@kubernetes/client-node';
import { deletedOutcome, jobOutcome } from '../../src/core/jobOutcome.js';

const cond = (type: string, status = 'True', reason = 'R'): V1JobCondition => ({ type, status, reason });
const job = (status: V1Job['status']): V1Job => ({ status });

describe('is this Job finished?', () => {
  for (const [name, status] of [
    ['no status yet', undefined],
    ['empty status', {}],
    ['active: 0 between pod retries', { active: 0, failed: 1 }],
    ['suspended', { conditions: [cond('Suspended')] }],
    ['FailureTarget, pods still terminating (1.31+)', { conditions: [cond('FailureTarget')] }],
    ['SuccessCriteriaMet, pods still terminating (1.31+)', { conditions: [cond('SuccessCriteriaMet')] }],
    ['Complete with status False', { conditions: [cond('Complete', 'False')] }],
    ['Failed with status Unknown', { conditions: [cond('Failed', 'Unknown')] }],
  ] as const) {
    it(`still running: ${name}`, () =>
      assert.deepEqual(jobOutcome(job(status as V1Job['status'])), { finished: false }));
  }

  it('succeeded: Complete True', () => {
    assert.deepEqual(
      jobOutcome(job({ conditions: [cond('SuccessCriteriaMet'), cond('Complete', 'True', 'CompletionsReached')] })),
      {
        finished: true,
        succeeded: true,
        reason: 'CompletionsReached',
      },
    );
  });

  it('failed: Failed True, with its reason and message', () => {
    const outcome = jobOutcome(
      job({
        conditions: [
          {
            type: 'Failed',
            status: 'True',
            reason: 'BackoffLimitExceeded',
            message: 'Job has reached the specified backoff limit',
          },
        ],
      }),
    );
    assert.deepEqual(outcome, {
      finished: true,
      succeeded: false,
      reason: 'BackoffLimitExceeded: Job has reached the specified backoff limit',
    });
  });
});

describe('a Job deleted before a terminal condition', () => {
  const deleting = (status: V1Job['status']): V1Job => ({
    metadata: { deletionTimestamp: new Date() },
    spec: { template: {} },
    status,
  });
  it('succeeded when success was already decided (SuccessCriteriaMet, or as many succeeded pods as completions)', () => {
    assert.equal(
      deletedOutcome(deleting({ conditions: [{ type: 'SuccessCriteriaMet', status: 'True' }] })).finished,
      true,
    );
    assert.deepEqual(deletedOutcome(deleting({ succeeded: 1 })), {
      finished: true,
      succeeded: true,
      reason: 'pods succeeded (deleted before Complete)',
    });
  });
  it('not finished otherwise (the caller records it as lost)', () => {
    assert.deepEqual(deletedOutcome(deleting({ active: 1 })), { finished: false });
    assert.deepEqual(deletedOutcome(deleting({ failed: 1, conditions: [{ type: 'FailureTarget', status: 'True' }] })), {
      finished: false,
    });
  });
});

// formatStatus, pure: the open run's reason and the last failure's are printed whole (issue 15: cut at 60).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatStatus, type Status } from '../../src/cli/status.js';

const LONG = `a reason of ${'many words '.repeat(12)}that ends here`;

const base: Status = {
  pending: 3,
  threshold: 50,
  openRun: null,
  lastFailure: null,
  unfinished: null,
  backoff: null,
  warnings: [],
  recentRuns: [],
  control: {
    settings: {
      trainingThreshold: 50,
      retryBackoffSeconds: 20,
      retryBackoffMaxSeconds: 3600,
      trainingMaxWaitSeconds: 0,
      trainingMinBatch: 1,
      pollIntervalSeconds: 300,
      mode: 'kubernetes',
      namespace: 'ml-training',
      source: 'service',
      publishedAt: '2026-01-01T00:00:00.000Z',
    },
    paused: null,
    triggerRequest: null,
    maxWait: null,
  },
};

const run = {
  id: 7,
  job: 'sentinel-training-20260101-000000',
  state: 'failed',
  annotations: 50,
  created: '2026-01-01T00:00:00.000Z',
  finished: '2026-01-01T00:05:00.000Z',
  reason: LONG,
  trigger: 'threshold',
};

describe('status as a table', () => {
  it('shows the open run reason whole', () => {
    const out = formatStatus({
      ...base,
      openRun: {
        id: 8,
        jobName: 'sentinel-training-20260101-010000',
        state: 'submitting',
        annotationCount: 50,
        reason: LONG,
        trigger: 'manual (ana@ops: labels fixed)',
        ageSeconds: 12,
        claim: null,
      },
    });
    assert.match(out, new RegExp(`^open run reason: +${LONG}$`, 'm'));
    assert.match(out, /^open run started: +manual \(ana@ops: labels fixed\)$/m);
  });

  it('shows the pause, a trigger request, the max wait, and whose settings these are', () => {
    const out = formatStatus({
      ...base,
      control: {
        ...base.control,
        paused: { since: '2026-01-02T00:00:00.000Z', by: 'ana@ops', reason: 'cluster maintenance' },
        triggerRequest: { at: '2026-01-02T00:01:00.000Z', by: 'bo@ops', reason: null },
        maxWait: { firesAt: '2026-01-03T00:00:00.000Z', minBatch: 5 },
      },
    });
    assert.match(out, /^paused: +since 2026-01-02T00:00:00.000Z by ana@ops: cluster maintenance \(resume lifts it\)$/m);
    assert.match(out, /^trigger requested: +at 2026-01-02T00:01:00.000Z by bo@ops$/m);
    assert.match(out, /^max wait: +fires at 2026-01-03T00:00:00.000Z once 5 are pending, held by the pause$/m);
    assert.match(
      out,
      /^settings: +kubernetes, namespace ml-training \(as published by the running service at 2026-01-01/m,
    );
  });

  it('shows the last failure whole, and cuts only the table column (marked …)', () => {
    const out = formatStatus({ ...base, lastFailure: run, recentRuns: [run] });
    assert.match(out, new RegExp(`^last failure: +#7 ${run.job} failed at ${run.finished}: ${LONG}$`, 'm'));
    const row = out.split('\n').find((l) => l.startsWith('7 '));
    assert.ok(row?.endsWith(`${LONG.slice(0, 59)}…`), row);
  });

  it('says nothing of a failure when there is none', () => {
    assert.doesNotMatch(formatStatus(base), /last failure|open run reason/);
    assert.match(formatStatus(base), /^no runs yet$/m);
  });
});

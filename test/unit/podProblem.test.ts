// Which pod states mean "this run's pod cannot start", on the status shapes the fake API server copies from
// real clusters (test/support/fakeKubePods.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { podProblem, problemKind, problemText, UNSCHEDULABLE_AFTER_MS } from '../../src/core/podProblem.js';
import { podFor, type PodState } from '../support/fakeKubePods.js';

const job: V1Job = {
  metadata: { name: 'sentinel-training-20260101-000000', namespace: 'ml-training', uid: 'u' },
  spec: {
    template: {
      metadata: { labels: { 'job-name': 'sentinel-training-20260101-000000' } },
      spec: { restartPolicy: 'Never', containers: [{ name: 'train', image: 'registry.example.com/train:1.0.0' }] },
    },
  },
};
const now = Date.parse('2026-01-01T01:00:00Z');
const at = (msAgo: number) => new Date(now - msAgo);
const pod = (state: PodState, msAgo = 0) => podFor(job, state, at(msAgo));

describe('podProblem', () => {
  for (const [state, reason] of [
    ['container-config-error', 'CreateContainerConfigError'],
    ['err-image-pull', 'ErrImagePull'],
    ['image-pull-backoff', 'ImagePullBackOff'],
    ['invalid-image-name', 'InvalidImageName'],
    ['create-container-error', 'CreateContainerError'],
  ] as const) {
    it(`${state}: reported at once as ${reason}`, () => {
      const p = podProblem([pod(state)], now);
      assert.equal(p?.reason, reason);
      assert.match(p?.message ?? '', /^container train: ./);
    });
  }

  for (const state of ['running', 'container-creating'] as const)
    it(`${state}: nothing to report`, () => assert.equal(podProblem([pod(state)], now), null));

  it('Unschedulable: only after UNSCHEDULABLE_AFTER_MS (a cluster autoscaler may be adding the node)', () => {
    assert.equal(podProblem([pod('unschedulable', UNSCHEDULABLE_AFTER_MS - 1000)], now), null);
    const p = podProblem([pod('unschedulable', UNSCHEDULABLE_AFTER_MS + 60_000)], now);
    assert.equal(p?.reason, 'Unschedulable');
    assert.match(p?.message ?? '', /^unschedulable for 11 min: 0\/3 nodes are available/);
  });

  it('a stuck init container counts too', () => {
    const p = pod('running');
    const status = p.status ?? {};
    status.initContainerStatuses = [
      {
        name: 'fetch',
        image: 'x',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { waiting: { reason: 'CreateContainerConfigError', message: 'configmap "c" not found' } },
      },
    ];
    assert.equal(podProblem([p], now)?.message, 'container fetch: configmap "c" not found');
  });

  it('ignores finished and deleted pods (an earlier attempt of the Job)', () => {
    const failed: V1Pod = { ...pod('container-config-error'), status: { phase: 'Failed' } };
    const deleting = pod('container-config-error');
    deleting.metadata = { ...deleting.metadata, deletionTimestamp: at(0) };
    assert.equal(podProblem([failed, deleting, pod('running')], now), null);
  });

  it('problemKind: ErrImagePull and ImagePullBackOff are one problem; other reasons are not ours', () => {
    const text = (reason: string) => problemText({ pod: 'p', reason, message: 'm' });
    assert.equal(problemKind(text('ImagePullBackOff')), problemKind(text('ErrImagePull')));
    assert.notEqual(problemKind(text('Unschedulable')), problemKind(text('ErrImagePull')));
    assert.equal(problemKind(null), null);
    assert.equal(problemKind('Job could not be created in 5 attempts'), null);
  });
});

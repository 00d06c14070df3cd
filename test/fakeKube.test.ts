// The fake kube-apiserver's finalizers, deletes, patches and TTL hook, driven through the real
// @kubernetes/client-node: what the controller would meet from a real API server.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  ApiException,
  BatchV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1Job,
} from '@kubernetes/client-node';
import { FakeKube } from './support/fakeKube.js';
import { eventually } from './support/harness.js';

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const namespace = 'default';

function job(
  name: string,
  extra: { finalizers?: string[]; labels?: Record<string, string>; ttl?: number } = {},
): V1Job {
  return {
    metadata: {
      name,
      ...(extra.finalizers ? { finalizers: extra.finalizers } : {}),
      ...(extra.labels ? { labels: extra.labels } : {}),
    },
    spec: {
      ...(extra.ttl !== undefined ? { ttlSecondsAfterFinished: extra.ttl } : {}),
      template: { spec: { restartPolicy: 'Never', containers: [{ name: 'train', image: 'trainer:1' }] } },
    },
  };
}

/** The status code and the parsed Status body of a rejected call. */
async function rejection(call: Promise<unknown>): Promise<{
  code: number;
  body: { reason?: string; message?: string; code?: number; details?: { causes?: { field?: string }[] } };
}> {
  try {
    await call;
  } catch (err: unknown) {
    if (err instanceof ApiException) return { code: err.code, body: JSON.parse(err.body as string) };
    throw err;
  }
  assert.fail('the call succeeded');
}

describe('fake kube-apiserver: finalizers, deletes, patches', () => {
  let kube: FakeKube;
  let api: BatchV1Api;
  let kc: KubeConfig;

  beforeEach(async () => {
    kube = await FakeKube.start();
    kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfigPath);
    api = kc.makeApiClient(BatchV1Api);
  });
  afterEach(async () => {
    await kube.stop();
  });

  it('a Job with a finalizer survives delete, marked, and goes when a merge patch with its resourceVersion empties the finalizers', async () => {
    const created = await api.createNamespacedJob({
      namespace,
      body: job('keep', { finalizers: ['example.com/keep'] }),
    });
    assert.deepEqual(created.metadata?.finalizers, ['example.com/keep']);
    const events: [string, string | undefined][] = [];
    const watching = await new Watch(kc).watch(
      `/apis/batch/v1/namespaces/${namespace}/jobs`,
      { resourceVersion: created.metadata?.resourceVersion },
      (type, obj: V1Job) => events.push([type, obj.metadata?.deletionTimestamp ? 'deleting' : undefined]),
      () => {},
    );

    await api.deleteNamespacedJob({ name: 'keep', namespace, propagationPolicy: 'Background' });
    const marked = await api.readNamespacedJob({ name: 'keep', namespace });
    assert.ok(marked.metadata?.deletionTimestamp, 'deletionTimestamp set');
    assert.equal(marked.metadata?.deletionGracePeriodSeconds, 0);
    assert.deepEqual(marked.metadata?.finalizers, ['example.com/keep']);
    assert.notEqual(marked.metadata?.resourceVersion, created.metadata?.resourceVersion);
    assert.deepEqual(kube.deleting(), ['keep']);
    assert.deepEqual(kube.unfinished(), ['keep'], 'its pods may still run');

    await api.deleteNamespacedJob({ name: 'keep', namespace, propagationPolicy: 'Background' });
    const again = await api.readNamespacedJob({ name: 'keep', namespace });
    assert.equal(
      again.metadata?.deletionTimestamp?.getTime(),
      marked.metadata?.deletionTimestamp?.getTime(),
      'a second delete keeps the first timestamp',
    );
    assert.equal(again.metadata?.resourceVersion, marked.metadata?.resourceVersion, 'a second delete writes nothing');

    const last = await api.patchNamespacedJob(
      {
        name: 'keep',
        namespace,
        body: { metadata: { finalizers: null, resourceVersion: marked.metadata?.resourceVersion } },
      },
      merge,
    );
    assert.deepEqual(last.metadata?.finalizers ?? [], []);
    const gone = await rejection(api.readNamespacedJob({ name: 'keep', namespace }));
    assert.equal(gone.code, 404);
    assert.equal(gone.body.reason, 'NotFound');
    assert.deepEqual(kube.deleting(), []);
    await eventually(() => events.length >= 2, 'the watch events');
    assert.deepEqual(
      events,
      [
        ['MODIFIED', 'deleting'],
        ['DELETED', 'deleting'],
      ],
      'one MODIFIED for the first delete only, DELETED when the finalizers went',
    );
    watching.abort();
  });

  it('a merge patch carrying a stale resourceVersion is 409 Conflict and changes nothing', async () => {
    const created = await api.createNamespacedJob({ namespace, body: job('stale') });
    await api.patchNamespacedJob({ name: 'stale', namespace, body: { metadata: { labels: { step: 'one' } } } }, merge);
    const conflict = await rejection(
      api.patchNamespacedJob(
        {
          name: 'stale',
          namespace,
          body: { metadata: { resourceVersion: created.metadata?.resourceVersion, labels: { step: 'two' } } },
        },
        merge,
      ),
    );
    assert.equal(conflict.code, 409);
    assert.equal(conflict.body.reason, 'Conflict');
    assert.equal(
      conflict.body.message,
      'Operation cannot be fulfilled on jobs.batch "stale": the object has been modified; please apply your changes to the latest version and try again',
    );
    assert.equal((await api.readNamespacedJob({ name: 'stale', namespace })).metadata?.labels?.step, 'one');
  });

  it('a JSON patch (the client default content type) tests, removes, and appends with escaped pointers', async () => {
    await api.createNamespacedJob({
      namespace,
      body: job('jp', { finalizers: ['example.com/keep'], labels: { 'example.com/team': 'vision', app: 'train' } }),
    });
    const patched = await api.patchNamespacedJob({
      name: 'jp',
      namespace,
      body: [
        { op: 'test', path: '/metadata/finalizers/0', value: 'example.com/keep' },
        { op: 'remove', path: '/metadata/finalizers/0' },
        { op: 'remove', path: '/metadata/labels/example.com~1team' },
        { op: 'add', path: '/metadata/finalizers/-', value: 'example.com/other' },
      ],
    });
    assert.deepEqual(patched.metadata?.finalizers, ['example.com/other']);
    assert.deepEqual(patched.metadata?.labels, { app: 'train' });
    assert.deepEqual(
      kube.requests.filter((r) => r.verb === 'patch').map((r) => r.status),
      [200],
    );
  });

  it("a failed JSON-patch test op, or a remove of a missing path, is the real server's bare 422 Invalid and applies nothing", async () => {
    const created = await api.createNamespacedJob({
      namespace,
      body: job('guarded', { finalizers: ['example.com/keep'] }),
    });
    const realAnswer = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'the server rejected our request due to an error in our request',
      reason: 'Invalid',
      details: {},
      code: 422,
    };
    const failedTest = await rejection(
      api.patchNamespacedJob({
        name: 'guarded',
        namespace,
        body: [
          { op: 'remove', path: '/metadata/finalizers/0' },
          { op: 'test', path: '/metadata/resourceVersion', value: '999' },
        ],
      }),
    );
    assert.equal(failedTest.code, 422);
    assert.deepEqual(failedTest.body, realAnswer);
    const missingPath = await rejection(
      api.patchNamespacedJob({
        name: 'guarded',
        namespace,
        body: [{ op: 'remove', path: '/metadata/annotations/nope' }],
      }),
    );
    assert.equal(missingPath.code, 422);
    assert.deepEqual(missingPath.body, realAnswer);
    const after = await api.readNamespacedJob({ name: 'guarded', namespace });
    assert.deepEqual(after.metadata?.finalizers, ['example.com/keep']);
    assert.equal(after.metadata?.resourceVersion, created.metadata?.resourceVersion);
  });

  it('adding a finalizer to a Job being deleted is 422 Forbidden', async () => {
    await api.createNamespacedJob({ namespace, body: job('late', { finalizers: ['example.com/keep'] }) });
    await api.deleteNamespacedJob({ name: 'late', namespace });
    const forbidden = await rejection(
      api.patchNamespacedJob(
        { name: 'late', namespace, body: { metadata: { finalizers: ['example.com/keep', 'example.com/late'] } } },
        merge,
      ),
    );
    assert.equal(forbidden.code, 422);
    assert.equal(forbidden.body.reason, 'Invalid');
    assert.equal(
      forbidden.body.message,
      'Job.batch "late" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/late"}',
    );
    assert.equal(forbidden.body.details?.causes?.[0]?.field, 'metadata.finalizers');
    assert.deepEqual((await api.readNamespacedJob({ name: 'late', namespace })).metadata?.finalizers, [
      'example.com/keep',
    ]);
  });

  it("records each HTTP delete's propagationPolicy from the query or a DeleteOptions body", async () => {
    for (const n of ['q', 'b', 'none']) await api.createNamespacedJob({ namespace, body: job(n) });
    await api.deleteNamespacedJob({ name: 'q', namespace, propagationPolicy: 'Background' });
    await api.deleteNamespacedJob({ name: 'b', namespace, body: { propagationPolicy: 'Foreground' } });
    await api.deleteNamespacedJob({ name: 'none', namespace });
    assert.deepEqual(kube.deletes, [
      { name: 'q', namespace, propagationPolicy: 'Background' },
      { name: 'b', namespace, propagationPolicy: 'Foreground' },
      { name: 'none', namespace, propagationPolicy: null },
    ]);
    assert.equal(kube.jobs.size, 0, 'without finalizers the delete is immediate');
  });

  it('expireFinished deletes finished Jobs with a TTL as the TTL controller would, honouring finalizers', async () => {
    kube.addNamespace('ml');
    await api.createNamespacedJob({ namespace: 'ml', body: job('done-ttl', { ttl: 0 }) });
    await api.createNamespacedJob({
      namespace: 'ml',
      body: job('failed-kept', { ttl: 60, finalizers: ['example.com/keep'] }),
    });
    await api.createNamespacedJob({ namespace: 'ml', body: job('done-no-ttl') });
    await api.createNamespacedJob({ namespace: 'ml', body: job('running-ttl', { ttl: 0 }) });
    kube.setPhase('done-ttl', 'complete', 'ml');
    kube.setPhase('failed-kept', 'failed', 'ml');
    kube.setPhase('done-no-ttl', 'complete', 'ml');
    kube.setPhase('running-ttl', 'running', 'ml');

    assert.deepEqual(kube.expireFinished().sort(), ['done-ttl', 'failed-kept']);
    const left = (await api.listNamespacedJob({ namespace: 'ml' })).items.map((j) => j.metadata?.name).sort();
    assert.deepEqual(left, ['done-no-ttl', 'failed-kept', 'running-ttl']);
    assert.deepEqual(kube.deleting(), ['failed-kept']);
    assert.deepEqual(kube.expireFinished(), [], 'a Job already being deleted is not deleted again');
    assert.deepEqual(kube.unfinished(), ['running-ttl']);
  });

  it('answers 415 to strategic merge patches, 404 to a missing Job, and lets patches be faulted', async () => {
    await api.createNamespacedJob({ namespace, body: job('p') });
    const smp = await rejection(
      api.patchNamespacedJob(
        { name: 'p', namespace, body: { metadata: { labels: { a: 'b' } } } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    );
    assert.equal(smp.code, 415);
    assert.equal(smp.body.reason, 'UnsupportedMediaType');
    const missing = await rejection(
      api.patchNamespacedJob({ name: 'nope', namespace, body: { metadata: { labels: { a: 'b' } } } }, merge),
    );
    assert.equal(missing.code, 404);
    assert.equal(missing.body.message, 'jobs.batch "nope" not found');
    kube.inject({ verb: 'patch', status: 503 });
    assert.equal(
      (
        await rejection(
          api.patchNamespacedJob({ name: 'p', namespace, body: { metadata: { labels: { a: 'b' } } } }, merge),
        )
      ).code,
      503,
    );
    const renamed = await rejection(
      api.patchNamespacedJob({ name: 'p', namespace, body: { metadata: { name: 'q' } } }, merge),
    );
    assert.equal(renamed.code, 400, 'a patch may not rename');
    const ok = await api.patchNamespacedJob(
      {
        name: 'p',
        namespace,
        body: { metadata: { labels: { a: 'b' }, uid: undefined, creationTimestamp: '2000-01-01T00:00:00Z' } },
      },
      merge,
    );
    assert.equal(ok.metadata?.labels?.a, 'b');
    assert.notEqual(ok.metadata?.creationTimestamp?.getUTCFullYear(), 2000, 'creationTimestamp is kept');
  });
});

// Issue 15: a training pod that cannot start (the ConfigMap's `envFrom: secretRef: training-database` without
// that Secret) left the run `running` and silent until activeDeadlineSeconds, 12 h. Now the reconciler reports
// it within a reconcile: the run's reason (`status`), one warning line per problem, and a gauge; the run is
// not failed (src/core/podProblem.ts says why), and the same pod starting later clears it all.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../src/core/config.js';
import { CANNOT_LIST_PODS, POD_CANNOT_START, POD_STARTS_NOW } from '../src/loop/runPods.js';
import { readStatus } from '../src/cli/status.js';
import { invariantViolations, runRows, verifyNew } from './support/db.js';
import { eventually, useStack, type Stack } from './support/harness.js';

const waiting = async (s: Stack): Promise<Record<string, number>> => {
  const { values } = await s.c.service.metrics.runPodWaiting.get();
  return Object.fromEntries(values.filter((v) => v.value !== 0).map((v) => [String(v.labels.reason), v.value]));
};

/**
 * Waits for `passes` more reconcile passes to be carried out in full: each pass of a running run lists its pods
 * once, and passes run one after the other, so the list of pass n + 1 arriving means pass n is done. Instead of
 * a sleep that hopes the passes happened (issue 20).
 */
async function reconcilePasses(s: Stack, passes: number): Promise<void> {
  const lists = () => s.kube.arrivals.filter((a) => a.verb === 'list-pods').length;
  const target = lists() + passes + 1;
  await eventually(() => lists() >= target, `${passes} reconcile passes`, 5000 + passes * 2000);
}

async function startRun(s: Stack): Promise<string> {
  const before = s.kube.creates.length;
  await verifyNew(s.db.pool, 50);
  await eventually(() => s.kube.creates.length === before + 1, 'a Job');
  const name = s.kube.creates.at(-1)?.name ?? '';
  await eventually(async () => (await runRows(s.db.pool)).at(-1)?.state === 'running', 'the run to be running');
  return name;
}

describe('a run whose pod cannot start', () => {
  const s = useStack({ RECONCILE_INTERVAL_SECONDS: '1' });

  it('is reported within a reconcile: reason in status, one warning, the gauge; the run stays running', async () => {
    const job = await startRun(s);
    const pod = s.kube.setPod(job, 'container-config-error');
    const line = await s.c.logs.waitForMsg(POD_CANNOT_START, 5000);
    assert.equal(line.reason, 'CreateContainerConfigError');
    assert.equal(line.pod, pod.metadata?.name);
    const run = (await runRows(s.db.pool)).at(-1);
    assert.equal(run?.state, 'running');
    assert.match(
      run?.reason ?? '',
      /^pod cannot start \(CreateContainerConfigError\): .*secret "training-database" not found/,
    );
    const status = await readStatus(s.db.pool, loadConfig({ DATABASE_URL: s.db.url }));
    assert.equal(status.openRun?.state, 'running');
    assert.equal(status.recentRuns[0]?.reason, run?.reason);
    assert.deepEqual(await waiting(s), { CreateContainerConfigError: 1 });
    // Three more reconciles (1 s apart): still one line.
    await reconcilePasses(s, 3);
    assert.equal(s.c.logs.count(POD_CANNOT_START), 1);
  });

  it('the kubelet alternating ErrImagePull and ImagePullBackOff is one problem, logged once', async () => {
    const job = s.kube.creates.at(-1)?.name ?? '';
    const from = s.c.logs.count(POD_CANNOT_START);
    s.kube.setPod(job, 'err-image-pull');
    await eventually(async () => (await waiting(s)).ErrImagePull === 1, 'the gauge to show ErrImagePull');
    s.kube.setPod(job, 'image-pull-backoff');
    await eventually(async () => (await waiting(s)).ImagePullBackOff === 1, 'the gauge to show ImagePullBackOff');
    s.kube.setPod(job, 'err-image-pull');
    await reconcilePasses(s, 1);
    assert.equal(s.c.logs.count(POD_CANNOT_START), from + 1, 'one line for the image problem');
    assert.match((await runRows(s.db.pool)).at(-1)?.reason ?? '', /^pod cannot start \(ErrImagePull\)/);
  });

  it('once the pod starts (the Secret was created), the reason and gauge clear and the run goes on', async () => {
    const job = s.kube.creates.at(-1)?.name ?? '';
    s.kube.setPod(job, 'running');
    await s.c.logs.waitForMsg(POD_STARTS_NOW, 5000);
    assert.equal((await runRows(s.db.pool)).at(-1)?.reason, null);
    assert.deepEqual(await waiting(s), {});
    s.kube.setPhase(job, 'complete');
    await eventually(async () => (await runRows(s.db.pool)).at(-1)?.state === 'succeeded', 'the run to succeed');
    assert.deepEqual(await invariantViolations(s.db.pool), []);
  });

  it('Unschedulable counts only after 10 minutes (a GPU node may be on its way)', async () => {
    const job = await startRun(s);
    s.kube.setPod(job, 'unschedulable');
    await reconcilePasses(s, 2);
    assert.equal(s.c.logs.count(/^Training pod cannot start/), 2, 'nothing new for a fresh Unschedulable');
    assert.deepEqual(await waiting(s), {});
    s.kube.setPod(job, 'unschedulable', { since: new Date(Date.now() - 11 * 60_000) });
    const line = await s.c.logs.waitFor((l) => l.msg === POD_CANNOT_START && l.reason === 'Unschedulable', 5000);
    assert.match(
      String(line.detail),
      /^unschedulable for 11 min: 0\/3 nodes are available: 3 Insufficient nvidia.com\/gpu/,
    );
    assert.deepEqual(await waiting(s), { Unschedulable: 1 });
    s.kube.setPhase(job, 'failed');
    await eventually(async () => (await runRows(s.db.pool)).at(-1)?.state === 'failed', 'the run to fail');
    // The Job's own outcome replaces the pod's reason, and a run that ended shows no waiting pod.
    assert.match((await runRows(s.db.pool)).at(-1)?.reason ?? '', /BackoffLimitExceeded/);
    await eventually(async () => Object.keys(await waiting(s)).length === 0, 'the gauge to clear');
  });
});

describe('a Role without list on pods', () => {
  const s = useStack({ RECONCILE_INTERVAL_SECONDS: '1' });

  it('says so once and follows the run through its Job as before (readiness unaffected)', async () => {
    s.kube.inject({ verb: 'list-pods', status: 403, times: 1000 });
    const job = await startRun(s);
    const line = await s.c.logs.waitForMsg(CANNOT_LIST_PODS, 5000);
    assert.match(String(line.err), /pods is forbidden/);
    await reconcilePasses(s, 2);
    assert.equal(s.c.logs.count(CANNOT_LIST_PODS), 1);
    assert.equal(s.c.service.health.cluster?.error, null);
    assert.deepEqual(s.c.service.health.failing, {});
    s.kube.setPhase(job, 'complete');
    await eventually(async () => (await runRows(s.db.pool)).at(-1)?.state === 'succeeded', 'the run to succeed');
    s.kube.clearFaults();
  });
});

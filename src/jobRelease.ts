// Letting Jobs go once their run's outcome is recorded: our finalizer (sentinel-training.io/settle) comes off,
// and a cancelled run's Job is deleted (`training-controller cancel`, propagation Background so its pods go too).
// Both are retried by every reconcile pass until they stick: a crash or an API error in between loses nothing.
import type { V1Job } from '@kubernetes/client-node';
import { errorMessage } from './errors.js';
import { RUN_ID_LABEL, SETTLE_FINALIZER } from './jobTemplate.js';
import type { ReconcilerDeps } from './reconciler.js';
import { runStates, settleReleased, type Run } from './runs.js';

const OPEN: ReadonlySet<string> = new Set(['submitting', 'running']);

/** Logged (warn) when a run ends by `training-controller cancel`. */
export const CANCELLED = 'Training run cancelled';

/**
 * `training-controller cancel`: the outcome is recorded first (its annotations pending again), then the Job is
 * deleted, propagation Background, and our finalizer removed. A crash or an API error in between leaves a Job
 * of a cancelled run, which every later pass deletes (releaseSettledFinalizers). Not a failure: no back-off.
 */
export async function cancel(deps: ReconcilerDeps, run: Run): Promise<boolean> {
  const by = run.cancelBy ?? 'an operator';
  const reason = `cancelled by ${by}${run.cancelReason ? `: ${run.cancelReason}` : ''}`;
  if (!(await settleReleased(deps, run.id, 'cancelled', reason))) return false; // another replica recorded it
  deps.metrics.runsFinished.inc({ state: 'cancelled' });
  const job = await deps.jobs.get(run.namespace, run.jobName);
  const deleted = job?.metadata?.labels?.[RUN_ID_LABEL] === String(run.id) && (await deleteCancelled(deps, job));
  deps.logger.warn(
    { runId: run.id, job: run.jobName, namespace: run.namespace, jobDeleted: deleted, reason },
    `${CANCELLED}: ${run.annotationCount} annotations released`,
  );
  return true;
}

/** Deletes a cancelled run's Job (its pods go too) and lets it go. True when a Job was there to delete. */
async function deleteCancelled(deps: ReconcilerDeps, job: V1Job): Promise<boolean> {
  const ns = job.metadata?.namespace ?? deps.jobs.namespace;
  const found = job.metadata?.deletionTimestamp
    ? true
    : (await deps.jobs.delete(ns, job.metadata?.name ?? '')) === 'deleted';
  await releaseFinalizer(deps, job);
  return found;
}

export async function releaseFinalizer(deps: ReconcilerDeps, job: V1Job): Promise<boolean> {
  try {
    const result = await deps.jobs.removeFinalizer(job);
    if (result === 'removed')
      deps.logger.debug({ job: job.metadata?.name, namespace: job.metadata?.namespace }, 'Finalizer removed');
    return result !== 'absent';
  } catch (err: unknown) {
    deps.logger.warn(
      { job: job.metadata?.name, namespace: job.metadata?.namespace, err: errorMessage(err) },
      'Could not remove the finalizer; will retry',
    );
    return false;
  }
}

/** Jobs still carrying our finalizer whose run is no longer open (its outcome is recorded): let them go. */
export async function releaseSettledFinalizers(
  deps: ReconcilerDeps,
  jobs: V1Job[],
  open: Run | null,
): Promise<Set<V1Job>> {
  const held = jobs.filter(
    (j) =>
      j.metadata?.finalizers?.includes(SETTLE_FINALIZER) &&
      j.metadata.labels?.[RUN_ID_LABEL] !== String(open?.id ?? ''),
  );
  const ids = held.map((j) => Number(j.metadata?.labels?.[RUN_ID_LABEL])).filter(Number.isSafeInteger);
  if (ids.length === 0) return new Set();
  const states = await runStates(deps.pool, deps.tables, ids);
  const released = new Set<V1Job>();
  for (const job of held) {
    const state = states.get(Number(job.metadata?.labels?.[RUN_ID_LABEL]));
    // A run id this database does not know may belong to another installation sharing the namespace: not ours.
    if (state === undefined || OPEN.has(state)) continue;
    // A cancelled run's Job still there: its delete failed, or a replica created it as the cancel was recorded.
    if (state === 'cancelled' && !job.metadata?.deletionTimestamp) {
      await deleteCancelled(deps, job);
      released.add(job);
      continue;
    }
    if ((await releaseFinalizer(deps, job)) && job.metadata?.deletionTimestamp) released.add(job);
  }
  return released;
}

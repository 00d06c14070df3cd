// Follows the open run to its end and settles its annotations (docs/architecture.md "Run states"); releases our finalizer
// from every Job whose run's outcome is recorded. Every Job is looked up in the namespace recorded on its run,
// so a change of TRAINING_NAMESPACE never orphans or duplicates a run.
//   submitting → read the Job by name first (a create whose answer was lost may have made it): ours → running.
//                None → create again under the same name once the lease expired. After MAX_CREATE_ATTEMPTS:
//                failed and released, but only on a definite 404, read lateCreateWindowMs after the last attempt.
//   running    → Complete: succeeded (its still-verified annotations used) · Failed: failed, released ·
//                deleted before it finished: lost, released. Then our finalizer comes off the Job.
//   either, with a cancel requested (`training-controller cancel`) → cancelled, released; its Job deleted.
// Runs on every watch event that adds, finishes or deletes a Job and every RECONCILE_INTERVAL_SECONDS.
import type { V1Job } from '@kubernetes/client-node';
import { ownsJobName } from '../core/instance.js';
import { errorMessage } from '../core/errors.js';
import { deletedOutcome, jobOutcome } from '../core/jobOutcome.js';
import type { JobsApi } from '../kube/jobs.js';
import { finishClaim, finishSettle, settleReleased, settleSucceeded } from '../db/chunks.js';
import { checkRunPods } from './runPods.js';
import { leaseCreateAttempt, markRunning, openRun, recentNamespaces, runStates, unfinishedRun } from '../db/runs.js';
import type { Run } from '../core/run.js';
import { ADOPTED, submitRun, type SubmitDeps } from './submit.js';

// Attempts are at least the create lease apart (KUBE_REQUEST_TIMEOUT_MS + 250 ms, ~10 s by default).
export const MAX_CREATE_ATTEMPTS = 5;

export interface ReconcileResult {
  /** A run ended: recount now (annotations were released, or verified ones piled up during training). */
  finished: boolean;
  /** A `submitting` run is waiting for its next create attempt. */
  retrySubmit: boolean;
  /** Unfinished app=<TRAINING_NAME> Jobs that belong to no open run (created by hand or by an older version). */
  foreignJobs: string[];
  /** Where Jobs must be watched: the configured namespace and the open run's. */
  namespaces: string[];
}

export interface ReconcilerDeps extends SubmitDeps {
  jobs: JobsApi;
  /** How long a create attempt may be in flight: no second attempt on the same run before it expires. */
  createLeaseMs: number;
  /** How long after a create attempt its Job may still appear (kube/jobs.ts lateCreateWindowMs). */
  createLandsWithinMs: number;
  /** The clock for how long a pod has been unschedulable (runPods.ts); Date.now when absent. */
  now?: () => number;
}

type Outcome = Omit<ReconcileResult, 'foreignJobs' | 'namespaces'>;
const WAITING: Outcome = { finished: false, retrySubmit: false };

/** The run this Job was created for, by its run-id label (names have one-second resolution). */
const runIdOf = (deps: ReconcilerDeps, job: V1Job): string | undefined =>
  job.metadata?.labels?.[deps.jobs.instance.runIdLabel];
const isOurs = (deps: ReconcilerDeps, job: V1Job | null, run: Run): boolean =>
  job !== null && runIdOf(deps, job) === String(run.id);

export async function reconcile(deps: ReconcilerDeps): Promise<ReconcileResult> {
  const finishedWork = await finishUnfinished(deps);
  const run = await openRun(deps.pool, deps.tables);
  // A run another TRAINING_NAME started (it got onto this schema while this service's connection was down,
  // db/presence.ts): its Job does not carry this name's labels, so following it would judge it lost and release
  // its annotations while it trains them. Not ours to settle: a failing step until its own name has ended it.
  if (run && !ownsJobName(deps.jobs.instance, run.jobName))
    throw new Error(
      `run #${run.id} (Job ${run.jobName}) was started under another TRAINING_NAME than "${deps.jobs.instance.name}": only that name may settle it; start it until the run ends`,
    );
  const namespaces = [...new Set([deps.jobs.namespace, ...(run ? [run.namespace] : [])])];
  const listed: V1Job[] = [];
  for (const ns of new Set([...namespaces, ...(await recentNamespaces(deps.pool, deps.tables))]))
    listed.push(...(await deps.jobs.list(ns, deps.jobs.instance.selector)).items);
  deps.onClusterAnswer(null);
  const released = await releaseSettledFinalizers(deps, listed, run);
  const foreignJobs = listed
    .filter(
      (j) =>
        namespaces.includes(j.metadata?.namespace ?? '') &&
        !jobOutcome(j).finished &&
        !released.has(j) &&
        runIdOf(deps, j) !== String(run?.id ?? ''),
    )
    .map((j) => j.metadata?.name ?? '?');
  if (!run) {
    deps.metrics.runPodWaiting.reset();
    return { ...WAITING, finished: finishedWork, foreignJobs, namespaces };
  }
  const outcome = run.cancelRequestedAt
    ? { ...WAITING, finished: await cancel(deps, run) }
    : run.state === 'submitting'
      ? await resubmit(deps, run)
      : await follow(deps, run, await deps.jobs.get(run.namespace, run.jobName));
  // A running Job whose pod cannot start (a missing Secret, a wrong image): visible now, not after 12 h.
  if (run.state === 'running' && !outcome.finished) await checkRunPods(deps, run);
  else deps.metrics.runPodWaiting.reset();
  return { ...outcome, finished: outcome.finished || finishedWork, foreignJobs: [], namespaces };
}

/**
 * Chunked work a crash left half done (chunks.ts): a settle whose outcome is recorded, a baseline part way.
 * Finished first, so the annotations reach their state before anything new starts. True when any was.
 */
async function finishUnfinished(deps: ReconcilerDeps): Promise<boolean> {
  let any = false;
  for (let run = await unfinishedRun(deps.pool, deps.tables); run; run = await unfinishedRun(deps.pool, deps.tables)) {
    const what = run.settlePending ? 'settle' : 'baseline';
    deps.logger.info({ runId: run.id, state: run.state, what }, FINISHING_UNFINISHED);
    if (run.settlePending) {
      const totals = await finishSettle(deps, run.id);
      // Its outcome was counted when it was recorded, before the restart; what it trained is counted here.
      if (totals && run.state === 'succeeded') deps.metrics.noteTrained(totals.trained);
    } else await finishClaim(deps, run.id);
    any = true;
  }
  return any;
}

/** Logged when a `submitting` run's claim was left part way. */
export const FINISHING_CLAIM = 'Finishing an interrupted claim before the Job is created';

/** Logged when a restart finds chunked work half done. */
export const FINISHING_UNFINISHED = 'Finishing the chunked work of a run that was interrupted';

async function follow(deps: ReconcilerDeps, run: Run, job: V1Job | null): Promise<Outcome> {
  if (!job || !isOurs(deps, job, run)) {
    const why = job
      ? `Job ${run.namespace}/${run.jobName} now belongs to run ${runIdOf(deps, job) ?? '(none)'}`
      : `Job ${run.namespace}/${run.jobName} is gone and its outcome was never recorded (deleted without the ${deps.jobs.instance.finalizer} finalizer)`;
    return settle(deps, run, 'lost', why, null);
  }
  const outcome = job.metadata?.deletionTimestamp ? deletedOutcome(job) : jobOutcome(job);
  if (outcome.finished) return settle(deps, run, outcome.succeeded ? 'succeeded' : 'failed', outcome.reason, job);
  if (job.metadata?.deletionTimestamp)
    return settle(deps, run, 'lost', `Job ${run.namespace}/${run.jobName} was deleted before it finished`, job);
  return WAITING;
}

async function resubmit(deps: ReconcilerDeps, run: Run): Promise<Outcome> {
  if (run.claimPending) {
    // A claim interrupted part way (a crash between chunks): finish it before the Job is ever created.
    deps.logger.info(
      { runId: run.id, claimed: run.annotationCount, cursor: run.claimCursor, through: run.claimThrough },
      FINISHING_CLAIM,
    );
    await finishClaim(deps, run.id);
  }
  if (run.createAttempts >= MAX_CREATE_ATTEMPTS) {
    const job = await deps.jobs.get(run.namespace, run.jobName);
    if (isOurs(deps, job, run) && job) return adopt(deps, run, job);
    const reason = `Job could not be created in ${MAX_CREATE_ATTEMPTS} attempts (and reading it by name says it does not exist)`;
    const recorded = await settleReleased(deps, run.id, 'failed', reason, {
      submittingQuietForMs: deps.createLandsWithinMs,
      onRecorded: () => deps.metrics.noteRunFinished('failed', run),
    });
    if (!recorded) return { ...WAITING, retrySubmit: true };
    deps.logger.warn(
      { runId: run.id, job: run.jobName, annotations: run.annotationCount, reason },
      `Training run failed: ${run.annotationCount} annotations released`,
    );
    return { finished: true, retrySubmit: false };
  }
  const leased = await leaseCreateAttempt(deps.pool, deps.tables, run.id, deps.createLeaseMs);
  if (!leased) return { ...WAITING, retrySubmit: true };
  // A create whose answer was lost (a timeout, a crash) may still have made the Job: read before creating.
  const job = await deps.jobs.get(run.namespace, run.jobName);
  if (isOurs(deps, job, leased) && job) return adopt(deps, leased, job);
  deps.logger.info(
    { runId: run.id, job: run.jobName, attempt: leased.createAttempts },
    'Retrying Job create for a submitting run',
  );
  const result = await submitRun(deps, leased);
  return { finished: result === 'failed', retrySubmit: result === 'retry' };
}

async function adopt(deps: ReconcilerDeps, run: Run, job: V1Job): Promise<Outcome> {
  await markRunning(deps.pool, deps.tables, run.id, job.metadata?.uid);
  deps.logger.info({ runId: run.id, job: run.jobName, namespace: run.namespace }, ADOPTED);
  return follow(deps, { ...run, state: 'running' }, job);
}

async function settle(
  deps: ReconcilerDeps,
  run: Run,
  state: 'succeeded' | 'failed' | 'lost',
  reason: string,
  job: V1Job | null,
): Promise<Outcome> {
  const fields = {
    runId: run.id,
    job: run.jobName,
    namespace: run.namespace,
    annotations: run.annotationCount,
    reason,
  };
  const onRecorded = () => deps.metrics.noteRunFinished(state, run);
  if (state === 'succeeded') {
    const done = await settleSucceeded(deps, run.id, reason, { onRecorded });
    if (done) {
      // Counted by the process whose chunk completed the settle (another replica may walk it too).
      if (done.complete) deps.metrics.noteTrained(done.trained);
      const unverified = done.released > 0 ? `; ${done.released} un-verified during training released` : '';
      deps.logger.info(
        { ...fields, trained: done.trained, released: done.released },
        `Training run succeeded: ${done.trained} annotations marked used${unverified}`,
      );
    }
  } else if (await settleReleased(deps, run.id, state, reason, { onRecorded })) {
    deps.logger.warn(fields, `Training run ${state}: ${run.annotationCount} annotations released`);
  }
  // Recorded: the Job may go now. A failure here is retried by the next pass (releaseSettledFinalizers).
  if (job) await releaseFinalizer(deps, job);
  return { finished: true, retrySubmit: false };
}

// Letting Jobs go once their run's outcome is recorded: our finalizer (<TRAINING_NAME>.io/settle) comes off,
// and a cancelled run's Job is deleted (`training-controller cancel`, propagation Background so its pods go too).
// Both are retried by every reconcile pass until they stick: a crash or an API error in between loses nothing.

const OPEN: ReadonlySet<string> = new Set(['submitting', 'running']);

/** Logged (warn) when a run ends by `training-controller cancel`. */
export const CANCELLED = 'Training run cancelled';

/**
 * `training-controller cancel`: the outcome is recorded first (its annotations pending again), then the Job is
 * deleted, propagation Background, and our finalizer removed. A crash or an API error in between leaves a Job
 * of a cancelled run, which every later pass deletes (releaseSettledFinalizers). Not a failure: no back-off.
 */
async function cancel(deps: ReconcilerDeps, run: Run): Promise<boolean> {
  const by = run.cancelBy ?? 'an operator';
  const reason = `cancelled by ${by}${run.cancelReason ? `: ${run.cancelReason}` : ''}`;
  const onRecorded = () => deps.metrics.noteRunFinished('cancelled', run);
  if (!(await settleReleased(deps, run.id, 'cancelled', reason, { onRecorded }))) return false; // another replica recorded it
  const job = await deps.jobs.get(run.namespace, run.jobName);
  const deleted = isOurs(deps, job, run) && job !== null && (await deleteCancelled(deps, job));
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

async function releaseFinalizer(deps: ReconcilerDeps, job: V1Job): Promise<boolean> {
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
async function releaseSettledFinalizers(deps: ReconcilerDeps, jobs: V1Job[], open: Run | null): Promise<Set<V1Job>> {
  const held = jobs.filter(
    (j) =>
      j.metadata?.finalizers?.includes(deps.jobs.instance.finalizer) && runIdOf(deps, j) !== String(open?.id ?? ''),
  );
  const ids = held.map((j) => Number(runIdOf(deps, j))).filter(Number.isSafeInteger);
  if (ids.length === 0) return new Set();
  const states = await runStates(deps.pool, deps.tables, ids);
  const released = new Set<V1Job>();
  for (const job of held) {
    const state = states.get(Number(runIdOf(deps, job)));
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

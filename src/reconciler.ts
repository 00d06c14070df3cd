// Follows the open run to its end and settles its annotations (README "Run states").
//   submitting → (lease expired) create again under the same name; after MAX_CREATE_ATTEMPTS: failed, released
//   running    → Job Complete: succeeded, annotations used · Failed: failed, released · gone: lost, released
// Runs on every watch event that finishes or deletes a Job and every RECONCILE_INTERVAL_SECONDS.
import { jobOutcome } from './jobOutcome.js';
import { RUN_ID_LABEL } from './jobTemplate.js';
import type { JobsApi } from './kubeJobs.js';
import { leaseCreateAttempt, openRun, settleReleased, settleSucceeded, type Run } from './runs.js';
import { submitRun, type SubmitDeps } from './submit.js';
import { unfinishedJobs } from './dispatcher.js';

// Attempts are at least the create lease apart (KUBE_REQUEST_TIMEOUT_MS + 250 ms, ~10 s by default): a run whose
// Job could not be created for about a minute is released and retried as a new run after the back-off, rather
// than holding its annotations for as long as the API server is down.
export const MAX_CREATE_ATTEMPTS = 5;

export interface ReconcileResult {
  /** A run ended: recount now (annotations were released, or verified ones piled up during training). */
  finished: boolean;
  /** A `submitting` run is waiting for its next create attempt. */
  retrySubmit: boolean;
  /** Unfinished app=sentinel-training Jobs that belong to no run (created by hand or by an older version). */
  foreignJobs: string[];
}

export interface ReconcilerDeps extends SubmitDeps {
  jobs: JobsApi;
  /** How long a create attempt may be in flight: no second attempt on the same run before it expires. */
  createLeaseMs: number;
}

export async function reconcile(deps: ReconcilerDeps): Promise<ReconcileResult> {
  const run = await openRun(deps.pool);
  if (!run) {
    // Nothing of ours is open: still ask the cluster, which tells readiness it answers and finds foreign Jobs.
    const foreignJobs = await unfinishedJobs(deps.jobs);
    deps.onClusterAnswer(null);
    return { finished: false, retrySubmit: false, foreignJobs };
  }
  if (run.state === 'submitting') return resubmit(deps, run);

  const job = await deps.jobs.get(run.jobName);
  deps.onClusterAnswer(null);
  if (!job || job.metadata?.labels?.[RUN_ID_LABEL] !== String(run.id)) {
    const why = job ? `Job ${run.jobName} now belongs to run ${job.metadata?.labels?.[RUN_ID_LABEL] ?? '(none)'}` : `Job ${run.jobName} was deleted before it finished`;
    return settle(deps, run, 'lost', why);
  }
  const outcome = jobOutcome(job);
  if (!outcome.finished) return { finished: false, retrySubmit: false, foreignJobs: [] };
  return settle(deps, run, outcome.succeeded ? 'succeeded' : 'failed', outcome.reason);
}

async function resubmit(deps: ReconcilerDeps, run: Run): Promise<ReconcileResult> {
  const leased = await leaseCreateAttempt(deps.pool, run.id, deps.createLeaseMs);
  if (!leased) return { finished: false, retrySubmit: true, foreignJobs: [] };
  if (leased.createAttempts > MAX_CREATE_ATTEMPTS) {
    return settle(deps, run, 'failed', `Job could not be created in ${MAX_CREATE_ATTEMPTS} attempts`);
  }
  deps.logger.info({ runId: run.id, job: run.jobName, attempt: leased.createAttempts }, 'Retrying Job create for a submitting run');
  const result = await submitRun(deps, leased);
  return { finished: result === 'failed', retrySubmit: result === 'retry', foreignJobs: [] };
}

async function settle(deps: ReconcilerDeps, run: Run, state: 'succeeded' | 'failed' | 'lost', reason: string): Promise<ReconcileResult> {
  const changed = state === 'succeeded' ? await settleSucceeded(deps.pool, run.id, reason) : await settleReleased(deps.pool, run.id, state, reason);
  if (changed) {
    deps.metrics.runsFinished.inc({ state });
    const fields = { runId: run.id, job: run.jobName, annotations: run.annotationCount, reason };
    if (state === 'succeeded') deps.logger.info(fields, `Training run succeeded: ${run.annotationCount} annotations marked used`);
    else deps.logger.warn(fields, `Training run ${state}: ${run.annotationCount} annotations released`);
  }
  return { finished: true, retrySubmit: false, foreignJobs: [] };
}


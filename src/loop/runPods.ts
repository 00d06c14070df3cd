// Makes an open run whose pod cannot start visible long before its Job's activeDeadlineSeconds (podProblem.ts
// says why the run is not failed for it): the run's `reason` (so `status` shows it), one warning line per
// problem (not one per reconcile: the reason column remembers what was reported, across restarts too), and
// the gauge training_controller_run_pod_waiting{reason}. One pod list per reconcile of a running run (every
// RECONCILE_INTERVAL_SECONDS, 30 s by default), by the label `job-name` that every Kubernetes version sets on a
// Job's pods (1.27+ also set batch.kubernetes.io/job-name; the old one is still set).
import type { V1Pod } from '@kubernetes/client-node';
import type { Pool } from '../db/pool.js';
import { errorMessage } from '../core/errors.js';
import type { JobsApi } from '../kube/jobs.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { podProblem, problemKind, problemText } from '../core/podProblem.js';
import type { Run } from '../core/run.js';
import { setPodProblem } from '../db/runs.js';
import type { Tables } from '../db/tables.js';

export interface RunPodsDeps {
  pool: Pool;
  tables: Tables;
  jobs: JobsApi;
  logger: Logger;
  metrics: Metrics;
  now?: () => number;
}

/** Logged once per problem of a run. */
export const POD_CANNOT_START = 'Training pod cannot start; the run stays running until that is fixed';
export const POD_STARTS_NOW = 'Training pod is no longer stuck';
export const CANNOT_LIST_PODS =
  "Cannot list the training run's pods (the Role needs list on pods); stuck pods go unreported";

// The last pod-list error logged, per reconciler: a Role without `list` on pods would otherwise log every 30 s.
const lastListError = new WeakMap<RunPodsDeps, string>();

export async function checkRunPods(deps: RunPodsDeps, run: Run): Promise<void> {
  let pods: V1Pod[];
  try {
    pods = await deps.jobs.listPods(run.namespace, `job-name=${run.jobName}`);
    lastListError.delete(deps);
  } catch (err: unknown) {
    // Best effort: the run is followed through its Job either way, so this neither fails the reconcile nor
    // marks the cluster unreachable (an older Role without pods is a reason to say so, not to stop).
    const message = errorMessage(err);
    if (lastListError.get(deps) !== message) deps.logger.warn({ runId: run.id, err: message }, CANNOT_LIST_PODS);
    lastListError.set(deps, message);
    return;
  }
  const found = podProblem(pods, (deps.now ?? Date.now)());
  deps.metrics.runPodWaiting.reset();
  if (found) deps.metrics.runPodWaiting.set({ reason: found.reason }, 1);
  const text = found ? problemText(found) : null;
  if (problemKind(text) === problemKind(run.reason)) return;
  if (!(await setPodProblem(deps.pool, deps.tables, run.id, text))) return;
  const fields = { runId: run.id, job: run.jobName, namespace: run.namespace };
  if (found)
    deps.logger.warn({ ...fields, pod: found.pod, reason: found.reason, detail: found.message }, POD_CANNOT_START);
  else deps.logger.info({ ...fields, was: run.reason }, POD_STARTS_NOW);
}

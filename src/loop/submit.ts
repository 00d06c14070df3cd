// Creating the Job for a claimed run, and turning every answer of the API server into a run state.
// Used by the dispatcher right after the claim commits, and by the reconciler to retry a `submitting` run.
import type { V1Job } from '@kubernetes/client-node';
import type { Pool } from '../db/pool.js';
import type { Tables } from '../db/tables.js';
import { buildJob, freeName } from '../kube/jobTemplate.js';
import { baseName } from '../core/instance.js';
import type { JobsApi } from '../kube/jobs.js';
import { KubeError } from '../kube/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { markRunning, namesLike, rename, stampCreateSent } from '../db/runs.js';
import { settleReleased } from '../db/chunks.js';
import type { Run } from '../core/run.js';

/** running: the Job exists. failed: it never will (run released). retry: try again later (still submitting). */
export type SubmitResult = 'running' | 'failed' | 'retry';

export const ADOPTED = 'Job already exists with this run id: adopted';
/** Logged when a run ended, or its cancel was requested, before its Job create was sent. */
export const NOT_SENT = 'Run cancelled or ended before its Job create was sent: not sent';

export interface SubmitDeps {
  pool: Pool;
  tables: Tables;
  jobs: JobsApi;
  template: V1Job;
  logger: Logger;
  metrics: Metrics;
  /** Annotations per claim / settle transaction (CHUNK_ROWS). */
  chunkRows: number;
  /** True once the service is shutting down (chunked work stops between chunks). */
  stopping?: () => boolean;
  /** Called after a create attempt answered, for readiness. */
  onClusterAnswer(error: string | null): void;
}

// A name taken by somebody else's Job is renamed -2, -3 …; three in a row means something is creating
// Jobs of our name in a loop, which a fourth name would not fix.
const MAX_RENAMES = 3;

export async function submitRun(deps: SubmitDeps, initial: Run): Promise<SubmitResult> {
  let run = initial;
  // Bounded: a server that answers 409 to the create and 404 to the read forever would otherwise spin here.
  for (let renames = 0, round = 0; round < 2 * MAX_RENAMES + 2; round++) {
    const answer = await createOnce(deps, run);
    if (answer !== 'conflict') return answer;
    // 409: a Job of this name exists. Ours (a retry after a lost answer) only if it carries our run id.
    const existing = await deps.jobs.get(run.namespace, run.jobName).catch((e: unknown) => {
      throw e instanceof KubeError ? e : new KubeError(String(e), null, 'Unreachable', 'transient');
    });
    if (existing?.metadata?.labels?.[deps.jobs.instance.runIdLabel] === String(run.id)) {
      await markRunning(deps.pool, deps.tables, run.id, existing.metadata?.uid);
      deps.logger.info({ runId: run.id, job: run.jobName }, ADOPTED);
      return 'running';
    }
    if (!existing) continue; // deleted between the 409 and the read: create again
    if (++renames > MAX_RENAMES) {
      const why = `Job names ${run.jobName} and before are taken by Jobs of other runs`;
      return failRun(deps, run, why, 'Job names keep colliding; run failed, annotations released');
    }
    const next = await renamed(deps, run, existing);
    if (!next) return 'retry';
    run = { ...run, jobName: next };
  }
  deps.logger.warn(
    { runId: run.id, job: run.jobName },
    'Job create keeps conflicting with a Job that is not there; will retry',
  );
  return 'retry';
}

/** One create, its answer turned into a run state; 'conflict' (409) is for the caller to resolve. */
async function createOnce(deps: SubmitDeps, run: Run): Promise<SubmitResult | 'conflict'> {
  const { jobs, logger, metrics } = deps;
  const job = buildJob(
    deps.template,
    { name: run.jobName, namespace: run.namespace, runId: run.id, annotationCount: run.annotationCount },
    jobs.instance,
  );
  // Stamped now, not when the run was claimed or the attempt leased: how long this create may still land is
  // counted from here (issue 21: a stamp before a slow claim let the next run start before it landed).
  if (!(await stampCreateSent(deps.pool, deps.tables, run.id))) {
    logger.info({ runId: run.id, job: run.jobName }, NOT_SENT);
    return 'retry';
  }
  const started = performance.now();
  try {
    const created = await jobs.create(job);
    metrics.createLatency.observe((performance.now() - started) / 1000);
    deps.onClusterAnswer(null);
    await markRunning(deps.pool, deps.tables, run.id, created.metadata?.uid);
    const fields = { runId: run.id, job: run.jobName, namespace: run.namespace, annotations: run.annotationCount };
    logger.info(fields, 'Training Job created');
    return 'running';
  } catch (err: unknown) {
    if (!(err instanceof KubeError)) throw err;
    metrics.createLatency.observe((performance.now() - started) / 1000);
    deps.onClusterAnswer(err.kind === 'transient' ? err.message : null);
    if (err.kind === 'transient') {
      logger.warn({ runId: run.id, job: run.jobName, err: err.message }, 'Job create failed, will retry the same name');
      return 'retry';
    }
    if (err.kind === 'permanent')
      return failRun(deps, run, err.message, 'Job rejected by the API server; run failed, annotations released');
    return 'conflict';
  }
}

async function failRun(deps: SubmitDeps, run: Run, reason: string, message: string): Promise<'failed'> {
  await settleReleased(deps, run.id, 'failed', reason, {
    onRecorded: () => deps.metrics.noteRunFinished('failed', run),
  });
  deps.logger.error({ runId: run.id, job: run.jobName, err: reason }, message);
  return 'failed';
}

/** A Job of another run holds the name (one-second names): the run takes the next free one. null: it moved on. */
async function renamed(deps: SubmitDeps, run: Run, existing: V1Job): Promise<string | null> {
  const base = baseName(deps.jobs.instance, run.jobName);
  const taken = await namesLike(deps.pool, deps.tables, base);
  taken.add(run.jobName);
  const next = freeName(base, taken);
  deps.logger.warn(
    {
      runId: run.id,
      job: run.jobName,
      owner: existing.metadata?.labels?.[deps.jobs.instance.runIdLabel] ?? 'none',
      renamed: next,
    },
    'Job name taken by another Job (one-second names): renaming',
  );
  return (await rename(deps.pool, deps.tables, run.id, next)) ? next : null;
}

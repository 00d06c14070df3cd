// Dispatch: the one transaction that turns "enough pending" into a run.
//   pg_try_advisory_xact_lock → open run? unfinished app=sentinel-training Job? back-off? (decide.ts)
//   → insert the run (`submitting`, name fixed now) and claim the pending annotations → commit → create the Job.
// The claim commits before the create, so a crash in between leaves a `submitting` run that the reconciler
// creates under the same name: never a Job without its annotations, never annotations in two runs.
import type { V1Job } from '@kubernetes/client-node';
import { backoffUntil } from './backoff.js';
import type { Config } from './config.js';
import { decideDispatch, IN_PROGRESS, type Decision } from './decide.js';
import { buildJob, freeName, jobName, jobSummary } from './jobTemplate.js';
import { unfinishedJobs, type JobsApi } from './kubeJobs.js';
import { LOCK_KEYS, tryXactLock } from './locks.js';
import { finishClaim, LOCK_NOT_AVAILABLE } from './chunks.js';
import {
  countPendingExact,
  failureHistory,
  insertAndClaim,
  namesLike,
  openRun,
  runById,
  unfinishedRun,
  type Run,
} from './runs.js';
import { submitRun, type SubmitDeps, type SubmitResult } from './submit.js';

/** kubernetes: create Jobs. dry-run: the API server validates (dryRun=All), nothing is claimed. print: no cluster, log only. */
export type Mode = 'kubernetes' | 'dry-run' | 'print';

export type DispatchResult =
  | { kind: 'dispatched'; run: Run; submit: SubmitResult }
  | { kind: 'skipped'; decision: Extract<Decision, { action: 'skip' }>; foreignJob: boolean }
  /** The claim found fewer than the recount (rows un-verified or claimed in between): recount, publish from that. */
  | { kind: 'claim-race' }
  | { kind: 'locked' }
  | { kind: 'rehearsed'; job: V1Job };

export interface DispatcherDeps extends Omit<SubmitDeps, 'jobs'> {
  config: Config;
  jobs: JobsApi | null;
  mode: Mode;
  namespace: string;
  now(): number;
}

/**
 * More pending than one chunk: the rest of the claim, chunk by chunk (each its own transaction), then the run
 * as it stands, with its final count. Thrown errors leave the claim part way; the reconciler finishes it.
 */
async function claimTheRest(deps: DispatcherDeps, run: Run): Promise<Run> {
  deps.logger.info({ runId: run.id, claimed: run.annotationCount, through: run.claimThrough }, CLAIMING_IN_CHUNKS);
  await finishClaim(deps, run.id);
  const done = await runById(deps.pool, deps.tables, run.id);
  if (!done) throw new Error(`run ${run.id} vanished during its claim`);
  return done;
}

/** A run whose chunked work is unfinished blocks the next one like an open run (the reconciler finishes it). */
function busy(run: Run | null): Run | null {
  if (!run) return null;
  return {
    ...run,
    state: (run.state === 'baseline'
      ? 'a baseline still marking annotations'
      : `${run.state}, its annotations still being settled`) as Run['state'],
  };
}

/** Logged when a claim takes more than one chunk. */
export const CLAIMING_IN_CHUNKS = 'Claiming a large batch in chunks before the Job is created';

export async function dispatch(deps: DispatcherDeps, pending: number): Promise<DispatchResult> {
  const { pool, config, logger, metrics } = deps;
  const client = await pool.connect();
  let run: Run;
  let complete: boolean;
  try {
    await client.query('BEGIN');
    if (!(await tryXactLock(client, LOCK_KEYS.dispatch))) {
      await client.query('ROLLBACK');
      logger.debug('Another controller holds the dispatch lock');
      return { kind: 'locked' };
    }
    const open = (await openRun(client, deps.tables)) ?? busy(await unfinishedRun(client, deps.tables));
    let activeJobs: string[] = [];
    if (!open && deps.jobs) {
      activeJobs = (await unfinishedJobs(deps.jobs, [deps.namespace])).map(
        (j) => `${j.metadata?.namespace ?? ''}/${j.metadata?.name ?? '?'}`,
      );
      deps.onClusterAnswer(null);
    }
    const history = await failureHistory(client, deps.tables);
    const decision = decideDispatch({
      pending,
      threshold: config.trainingThreshold,
      openRun: open,
      activeJobs,
      backoffUntil: backoffUntil(history, config.retryBackoffSeconds, config.retryBackoffMaxSeconds),
      now: history.now,
    });
    if (decision.action === 'skip') {
      await client.query('ROLLBACK');
      metrics.skips.inc({ reason: decision.reason });
      if (decision.reason === 'in-progress') logger.info({ detail: decision.why }, IN_PROGRESS);
      else logger.info({ reason: decision.reason }, decision.why);
      return { kind: 'skipped', decision, foreignJob: !open && activeJobs.length > 0 };
    }
    const base = jobName(new Date(deps.now()));
    const name = freeName(base, await namesLike(client, deps.tables, base));
    if (deps.mode !== 'kubernetes') {
      const count = await countPendingExact(client, deps.tables);
      await client.query('ROLLBACK');
      const job = buildJob(deps.template, { name, namespace: deps.namespace, runId: 0, annotationCount: count });
      if (deps.mode === 'dry-run' && deps.jobs) await deps.jobs.create(job, { dryRun: true });
      logger.info(
        { mode: deps.mode, job: jobSummary(job) },
        `Would trigger training with ${count} new images (${deps.mode === 'dry-run' ? 'DISPATCH_MODE=dry-run, validated by the API server' : 'no cluster configured'}; nothing claimed)`,
      );
      return { kind: 'rehearsed', job };
    }
    try {
      ({ run, complete } = await insertAndClaim(client, deps.tables, name, deps.namespace, config.chunkRows));
    } catch (err: unknown) {
      if ((err as { code?: unknown }).code !== LOCK_NOT_AVAILABLE) throw err;
      // A table-level lock (a migration, a LOCK TABLE) outlasted the first chunk's lock_timeout (chunks.ts): locked
      // rows are skipped, not waited for. Let it end, then recount and retry (repeated races back off).
      await client.query('ROLLBACK');
      return { kind: 'claim-race' };
    }
    if (complete && run.annotationCount < config.trainingThreshold) {
      // Annotations were un-verified or claimed between the recount and now: nothing to do after all.
      await client.query('ROLLBACK');
      metrics.skips.inc({ reason: 'below-threshold' });
      logger.info(
        { pending, claimed: run.annotationCount },
        `Only ${run.annotationCount} pending at claim time (the recount saw ${pending}): recounting`,
      );
      return { kind: 'claim-race' };
    }
    await client.query('COMMIT');
  } catch (err: unknown) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  if (!complete) run = await claimTheRest(deps, run);
  metrics.dispatches.inc();
  logger.info(
    { runId: run.id, job: run.jobName, namespace: run.namespace },
    `Triggering training with ${run.annotationCount} new images`,
  );
  if (!deps.jobs) throw new Error('kubernetes mode without a cluster');
  const submit = await submitRun({ ...deps, jobs: deps.jobs }, run);
  return { kind: 'dispatched', run, submit };
}

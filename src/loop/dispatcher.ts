// Dispatch: the one transaction that turns "a trigger fired" (triggers.ts) into a run.
//   list the unfinished app=sentinel-training Jobs (before the transaction) →
//   pg_try_advisory_xact_lock → paused? open run? one of those Jobs? back-off? (decide.ts)
//   → insert the run (`submitting`, name fixed now) and claim the pending annotations → commit → create the Job.
// The claim commits before the create, so a crash in between leaves a `submitting` run that the reconciler
// creates under the same name: never a Job without its annotations, never annotations in two runs.
// No call to the API server happens inside the transaction (issue 24): a list answering in 3 s held it, and
// its row locks, open for 3 s, and a DBA's idle_in_transaction_session_timeout ended it. Listing first loses
// nothing: a Job of ours created after the list belongs to a run whose claim committed before it, which the
// transaction sees as an open run; a foreign Job (kubectl) was never atomic with our transaction anyway.
import type { V1Job } from '@kubernetes/client-node';
import { backoffUntil } from '../core/backoff.js';
import { finishClaim, insertAndClaim } from '../db/chunks.js';
import type { Config, DispatchMode } from '../core/config.js';
import { dropTrigger, readControl, runStarted } from '../db/control.js';
import { rollback, withTransaction, type Pool, type PoolClient, type Rollback } from '../db/pool.js';
import { decideDispatch, IN_PROGRESS, type Decision, type DispatchFacts } from '../core/decide.js';
import { buildJob, freeName, jobSummary } from '../kube/jobTemplate.js';
import { jobName, type Instance } from '../core/instance.js';
import { unfinishedJobs, type JobsApi } from '../kube/jobs.js';
import { dispatchLock, isLockTimeout, tryXactLock } from '../db/locks.js';
import { cancelledInFlight, failureHistory, namesLike, openRun, runById, unfinishedRun } from '../db/runs.js';
import { countPendingExact } from '../db/annotations.js';
import type { Run } from '../core/run.js';
import { submitRun, type SubmitDeps, type SubmitResult } from './submit.js';
import { firedTrigger, type Control, type MaxWait } from '../core/triggers.js';

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
  mode: DispatchMode;
  namespace: string;
  /** TRAINING_NAME's names (the same as jobs.instance; here too for print mode, which has no jobs). */
  instance: Instance;
  /** Why no run may start now (another TRAINING_NAME holds this schema: db/presence.ts), or null. */
  conflict?: () => string | null;
  maxWait: MaxWait;
  /** How long after a create attempt its Job may still appear (kube/jobs.ts lateCreateWindowMs). */
  createLandsWithinMs: number;
  now(): number;
}

type Facts = DispatchFacts & { control: Control };
/** What the dispatch transaction ends with; a claim goes on after the commit (the rest of it, then the Job). */
type Locked = Exclude<DispatchResult, { kind: 'dispatched' }> | { kind: 'claimed'; run: Run; complete: boolean };

/** Logged when a claim takes more than one chunk. */
export const CLAIMING_IN_CHUNKS = 'Claiming a large batch in chunks before the Job is created';
/** Logged when a `training-controller trigger` request cannot be served (the CLI refuses these cases up front). */
export const TRIGGER_DROPPED = 'Manual trigger request dropped';

export async function dispatch(deps: DispatcherDeps, pending: number): Promise<DispatchResult> {
  // Two names on one schema would train one batch twice: a failed step, retried, on /readyz, until one stops.
  const conflict = deps.conflict?.();
  if (conflict) throw new Error(conflict);
  // The list is needed only when no run blocks (an open run skips first): read that without the lock, and let
  // the transaction confirm it.
  const activeJobs = deps.jobs && !(await blockingRun(deps, deps.pool)) ? await activeJobNames(deps) : null;
  let facts: Facts | null = null;
  const withList = await withTransaction(deps.pool, async (client) => {
    if (!(await tryXactLock(client, dispatchLock(deps.tables.schema))))
      return rollback<Locked | Rehearsal>({ kind: 'locked' });
    const gathered = await gatherFacts(deps, client, pending, activeJobs);
    // A run that blocked before the transaction ended in between, so the Jobs were not listed: recount.
    if (!gathered) return rollback<Locked | Rehearsal>({ kind: 'claim-race' });
    facts = gathered;
    return decideLocked(deps, client, gathered);
  });
  const locked = withList.kind === 'rehearsal' ? await rehearse(deps, withList) : withList;
  const manualRequest = (facts as Facts | null)?.control.triggerAt;
  if (manualRequest && (locked.kind === 'skipped' || locked.kind === 'rehearsed')) {
    await dropTrigger(deps.pool, deps.tables);
    const why = locked.kind === 'skipped' ? locked.decision.why : `DISPATCH_MODE is ${deps.mode}`;
    deps.logger.warn({ requestedAt: manualRequest, why }, TRIGGER_DROPPED);
  }
  if (locked.kind === 'locked') deps.logger.debug('Another controller holds the dispatch lock');
  if (locked.kind !== 'claimed') return locked;
  const run = locked.complete ? locked.run : await claimTheRest(deps, locked.run);
  if (run.state !== 'submitting') {
    // Cancelled (by another replica) while its claim went on in chunks: its annotations are released already.
    deps.logger.info({ runId: run.id, state: run.state }, `Run ${run.id} ended as ${run.state} during its claim`);
    return { kind: 'dispatched', run, submit: 'failed' };
  }
  deps.metrics.dispatches.inc();
  const why = run.triggerKind === 'threshold' ? '' : ` (${run.triggerKind}: ${run.triggerReason ?? ''})`;
  deps.logger.info(
    { runId: run.id, job: run.jobName, namespace: run.namespace, trigger: run.triggerKind },
    `Triggering training with ${run.annotationCount} new images${why}`,
  );
  if (!deps.jobs) throw new Error('kubernetes mode without a cluster');
  const submit = await submitRun({ ...deps, jobs: deps.jobs }, run);
  return { kind: 'dispatched', run, submit };
}

/** The unfinished Jobs labelled app=<TRAINING_NAME> in the namespace, as namespace/name. */
async function activeJobNames(deps: DispatcherDeps): Promise<string[]> {
  if (!deps.jobs) return [];
  const jobs = await unfinishedJobs(deps.jobs, [deps.namespace]);
  deps.onClusterAnswer(null);
  return jobs.map((j) => `${j.metadata?.namespace ?? ''}/${j.metadata?.name ?? '?'}`);
}

/** A run that blocks the next one: open, still settling or baselining, or cancelled with its create unanswered. */
async function blockingRun(deps: DispatcherDeps, q: Pool | PoolClient): Promise<DispatchFacts['openRun']> {
  const { tables } = deps;
  return (
    (await openRun(q, tables)) ??
    busy(await unfinishedRun(q, tables)) ??
    inFlight(await cancelledInFlight(q, tables, deps.createLandsWithinMs))
  );
}

/**
 * Under the dispatch lock: everything decide.ts weighs, read in this transaction, with the Jobs listed before
 * it (null: not listed, because a run blocked then). Null when no run blocks now and the Jobs were not listed.
 */
async function gatherFacts(
  deps: DispatcherDeps,
  client: PoolClient,
  pending: number,
  listed: string[] | null,
): Promise<Facts | null> {
  const { config, tables } = deps;
  const open = await blockingRun(deps, client);
  if (!open && deps.jobs && listed === null) return null;
  const activeJobs = open ? [] : (listed ?? []);
  const history = await failureHistory(client, tables);
  const control = await readControl(client, tables);
  return {
    pending,
    threshold: config.trainingThreshold,
    trigger: firedTrigger(pending, config.trainingThreshold, control, deps.maxWait, control.dbNow),
    paused: control.paused,
    manual: { by: control.triggerBy, reason: control.triggerReason },
    openRun: open,
    activeJobs,
    backoffUntil: backoffUntil(history, config.retryBackoffSeconds, config.retryBackoffMaxSeconds),
    now: history.now,
    control,
  };
}

async function decideLocked(
  deps: DispatcherDeps,
  client: PoolClient,
  f: Facts,
): Promise<Locked | Rollback<Locked | Rehearsal>> {
  const decision = decideDispatch(f);
  if (decision.action === 'skip') {
    deps.metrics.skips.inc({ reason: decision.reason });
    if (decision.reason === 'in-progress') deps.logger.info({ detail: decision.why }, IN_PROGRESS);
    else deps.logger.info({ reason: decision.reason }, decision.why);
    return rollback({ kind: 'skipped', decision, foreignJob: !f.openRun && f.activeJobs.length > 0 });
  }
  const base = jobName(deps.instance, new Date(deps.now()));
  const name = freeName(base, await namesLike(client, deps.tables, base));
  if (deps.mode !== 'kubernetes')
    return rollback({ kind: 'rehearsal', name, count: await countPendingExact(client, deps.tables) });
  return claim(deps, client, name, f);
}

/** DISPATCH_MODE=dry-run or no cluster: what the transaction found; the Job is built after it. */
type Rehearsal = { kind: 'rehearsal'; name: string; count: number };

/** The Job built (and validated by the API server, after the transaction), nothing claimed. */
async function rehearse(deps: DispatcherDeps, { name, count }: Rehearsal): Promise<Locked> {
  const job = buildJob(
    deps.template,
    { name, namespace: deps.namespace, runId: 0, annotationCount: count },
    deps.instance,
  );
  if (deps.mode === 'dry-run' && deps.jobs) await deps.jobs.create(job, { dryRun: true });
  const how = deps.mode === 'dry-run' ? 'DISPATCH_MODE=dry-run, validated by the API server' : 'no cluster configured';
  deps.logger.info(
    { mode: deps.mode, job: jobSummary(job) },
    `Would trigger training with ${count} new images (${how}; nothing claimed)`,
  );
  return { kind: 'rehearsed', job };
}

async function claim(
  deps: DispatcherDeps,
  client: PoolClient,
  name: string,
  f: Facts,
): Promise<Locked | Rollback<Locked | Rehearsal>> {
  const { config, tables } = deps;
  let claimed: { run: Run; complete: boolean };
  try {
    claimed = await insertAndClaim(client, tables, name, deps.namespace, config.chunkRows, triggerOf(f));
  } catch (err: unknown) {
    if (!isLockTimeout(err)) throw err;
    // A table-level lock (a migration, a LOCK TABLE) outlasted the first chunk's lock_timeout (chunks.ts): locked
    // rows are skipped, not waited for. Let it end, then recount and retry (repeated races back off).
    return rollback({ kind: 'claim-race' });
  }
  const { run, complete } = claimed;
  const needed =
    f.trigger === 'threshold' ? config.trainingThreshold : f.trigger === 'max-wait' ? deps.maxWait.minBatch : 1;
  if (complete && run.annotationCount < needed) {
    // Annotations were un-verified or claimed between the recount and now: nothing to do after all.
    deps.metrics.skips.inc({ reason: 'below-threshold' });
    deps.logger.info(
      { pending: f.pending, claimed: run.annotationCount },
      `Only ${run.annotationCount} pending at claim time (the recount saw ${f.pending}): recounting`,
    );
    return rollback({ kind: 'claim-race' });
  }
  await runStarted(client, tables);
  return { kind: 'claimed', run, complete };
}

function triggerOf(f: Facts): { kind: NonNullable<Facts['trigger']>; reason: string | null } {
  const kind = f.trigger ?? 'threshold';
  if (kind === 'manual') return { kind, reason: [f.manual?.by, f.manual?.reason].filter(Boolean).join(': ') || null };
  if (kind === 'max-wait') {
    const since = f.control.pendingSince?.toISOString() ?? '?';
    return { kind, reason: `${f.pending} pending since ${since}, below the threshold of ${f.threshold}` };
  }
  return { kind, reason: null };
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

/** A run cancelled while its create was in flight blocks until that create can no longer land. */
function inFlight(run: (Run & { untilMs: number }) | null): DispatchFacts['openRun'] {
  if (!run) return null;
  const until = new Date(run.untilMs).toISOString();
  return {
    id: run.id,
    jobName: run.jobName,
    state: `cancelled, its Job create unanswered until ${until}`,
    untilMs: run.untilMs,
  };
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

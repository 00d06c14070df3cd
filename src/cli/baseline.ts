// `training-controller baseline`: the choice at the first deployment (issue #14). The migration adds
// used_for_training as false, so every annotation ever verified counts as new and the first run would train on
// the whole history. A baseline marks the annotations pending now (or, with --before, those verified before an
// instant) as used without training them, recorded as one run in state `baseline` with no Job, so the ledger
// says which rows were left out and when. Chunked like a claim (chunks.ts): the same bound on Triage waits,
// and a baseline interrupted part way is finished by the next `baseline --yes` or by the running service.
import { finishClaim, type ChunkDeps } from '../db/chunks.js';
import { withTransaction } from '../db/pool.js';
import { dispatchLock, tryXactLock } from '../db/locks.js';
import { countPendingBefore, rowSecurityProblem, VERIFIED_AT } from '../db/annotations.js';
import { insertBaseline, openRun, runById, unfinishedRun } from '../db/runs.js';
import type { Run } from '../core/run.js';
import { hasColumn } from '../db/schemaCheck.js';

export interface BaselinePlan {
  /** Annotations it would mark used. */
  count: number;
  before: Date | null;
  /** An interrupted baseline that `--yes` finishes instead of starting another. */
  resumes: Run | null;
}

export class BaselineRefused extends Error {}

export async function planBaseline(deps: ChunkDeps, before: Date | null): Promise<BaselinePlan> {
  // First, also for a baseline that resumes: its count and its marking would take only the rows a policy
  // lets this role see.
  const hidden = await rowSecurityProblem(deps.pool, deps.tables);
  if (hidden) throw new BaselineRefused(hidden);
  const resumes = await unfinishedRun(deps.pool, deps.tables);
  if (resumes && resumes.state === 'baseline') return { count: 0, before, resumes };
  await refuseWhileBusy(deps, resumes);
  if (before && !(await hasColumn(deps.pool, deps.tables.annotations, VERIFIED_AT))) {
    throw new BaselineRefused(
      `${deps.tables.annotations} has no ${VERIFIED_AT} column: --before needs when each annotation was verified (created_at says when it was created); without --before, baseline takes every annotation pending now`,
    );
  }
  return { count: await countPendingBefore(deps.pool, deps.tables, before), before, resumes: null };
}

async function refuseWhileBusy(deps: ChunkDeps, unfinished: Run | null): Promise<void> {
  const open = await openRun(deps.pool, deps.tables);
  if (open)
    throw new BaselineRefused(
      `run #${open.id} (${open.jobName}) is ${open.state}: a baseline cannot take annotations from an open run; wait until it ends`,
    );
  if (unfinished)
    throw new BaselineRefused(`run #${unfinished.id} is still settling its annotations: try again in a moment`);
}

/**
 * Records the baseline run and marks its annotations chunk by chunk; `onChunk` hears each chunk's count.
 * Under the dispatch lock, so the service cannot start a run in between; the service then waits for the
 * baseline to finish like for an open run (dispatcher.ts).
 */
export async function runBaseline(
  deps: ChunkDeps,
  plan: BaselinePlan,
  onChunk?: (marked: number) => void,
): Promise<Run> {
  const t = deps.tables;
  const id =
    plan.resumes?.id ??
    (await withTransaction(deps.pool, async (client) => {
      if (!(await tryXactLock(client, dispatchLock(deps.tables.schema))))
        throw new BaselineRefused('the service is starting a run right now: try again in a moment');
      const open = await openRun(client, t);
      if (open) throw new BaselineRefused(`run #${open.id} (${open.jobName}) is ${open.state}: wait until it ends`);
      return insertBaseline(client, t, plan.before, baselineReason(plan.before));
    }));
  await finishClaim(deps, id, onChunk);
  const run = await runById(deps.pool, t, id);
  if (!run) throw new Error(`baseline run ${id} vanished`);
  return run;
}

function baselineReason(before: Date | null): string {
  return `excluded from training by \`training-controller baseline\`${before ? ` (verified before ${before.toISOString()})` : ' (everything pending then)'}`;
}

export function describePlan(plan: BaselinePlan, table: string): string {
  if (plan.resumes) {
    return `A baseline (run #${plan.resumes.id}) was interrupted after marking ${plan.resumes.annotationCount} annotations: --yes finishes it.`;
  }
  const which = plan.before ? `verified before ${plan.before.toISOString()} (${table}.${VERIFIED_AT})` : 'pending now';
  return `Would mark the ${plan.count} annotations ${which} as used without training them, recorded in training_runs as one run in state baseline (no Job). Nothing changed: run again with --yes to do it.`;
}

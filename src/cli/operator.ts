// The operator's commands (issue #11): pause, resume, cancel, trigger. Each changes state in the database
// (control.ts, training_runs) and NOTIFYs; the running service carries it out within a second, Kubernetes side
// included, so only the service's identity needs RBAC. cancel and trigger then wait up to CONFIRM_MS for the
// service to act and say what it did; a refusal is one line and exit 1, bad usage exit 2.
import { errorMessage } from '../core/errors.js';
import { realTimers, sleep } from '../core/timers.js';
import { hostname, userInfo } from 'node:os';
import { notifyControl, pause, readControl, requestTrigger, resume } from '../db/control.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { anyPending } from '../db/annotations.js';
import { lastRunId, manualRunAfter, openRun, requestCancel, runById, unfinishedRun } from '../db/runs.js';
import type { Run } from '../core/run.js';
import type { Tables } from '../db/tables.js';

export type OperatorCommand = 'pause' | 'resume' | 'cancel' | 'trigger';

/** How long cancel and trigger wait to report what the service did (it reacts within ~1 s). */
export const CONFIRM_MS = 10_000;

export interface Outcome {
  code: 0 | 1;
  text: string;
}

/** Who asked, as far as this process knows: the OS user and host (a pod name, under kubectl exec). */
export function operator(): string {
  return `${userInfo().username}@${hostname()}`;
}

export async function runOperatorCommand(
  pool: Pool,
  t: Tables,
  command: OperatorCommand,
  reason: string | null,
  by = operator(),
  confirmMs = CONFIRM_MS,
): Promise<Outcome> {
  switch (command) {
    case 'pause':
      return pauseCommand(pool, t, by, reason);
    case 'resume':
      return {
        code: 0,
        text: (await resume(pool, t)) ? 'Resumed: runs may start again.' : 'Not paused: nothing to resume.',
      };
    case 'cancel':
      return cancelCommand(pool, t, by, reason, confirmMs);
    case 'trigger':
      return triggerCommand(pool, t, by, reason, confirmMs);
  }
}

async function pauseCommand(pool: Pool, t: Tables, by: string, reason: string | null): Promise<Outcome> {
  const c = await pause(pool, t, by, reason);
  const open = await openRun(pool, t);
  const why = c.pauseReason ? `: ${c.pauseReason}` : '';
  const run = open ? ` Run #${open.id} (${open.jobName}) continues; \`cancel\` ends it.` : '';
  return {
    code: 0,
    text: `Paused since ${c.pausedAt?.toISOString()} by ${c.pausedBy}${why}. No new run starts until \`training-controller resume\`.${run}`,
  };
}

async function cancelCommand(
  pool: Pool,
  t: Tables,
  by: string,
  reason: string | null,
  confirmMs: number,
): Promise<Outcome> {
  const run = await withTransaction(pool, async (client) => {
    const open = await openRun(client, t);
    if (!open) return null;
    await requestCancel(client, t, open.id, by, reason);
    await notifyControl(client, 'cancel'); // delivered at COMMIT
    return open;
  });
  if (!run) return { code: 1, text: 'no open run to cancel' };
  // Done: the run ended, and if by this cancel, every annotation released (a run larger than one chunk releases
  // them in chunks after its outcome: "pending again" before that was untrue for most of them, issue 24's review).
  const latest: { run: Run | null } = { run: null };
  const { found: ended, error } = await waitFor(confirmMs, async () => {
    const now = await runById(pool, t, run.id);
    if (now) latest.run = now;
    if (!now || now.state === 'submitting' || now.state === 'running') return null;
    return now.state === 'cancelled' && now.settlePending ? null : now;
  });
  if (ended) return { code: 0, text: cancelled(ended) };
  const seen = latest.run;
  if (seen?.state === 'cancelled')
    return {
      code: 0,
      text: `Cancelled run #${run.id} (${run.jobName}): its annotations are being released in chunks (${seen.releasedCount ?? 0} of ${seen.annotationCount} so far; \`training-controller status\` shows when all are pending again); ${jobFate(seen)}.`,
    };
  const why = error
    ? `the database stopped answering while this command waited for the service (${error}): \`training-controller status\` shows what it did`
    : `no running service acted on it within ${confirmMs / 1000} s: it will when it (re)starts`;
  return { code: 0, text: `Cancel of run #${run.id} (${run.jobName}) requested and recorded; ${why}.` };
}

function cancelled(run: Run): string {
  if (run.state !== 'cancelled')
    return `Run #${run.id} (${run.jobName}) ended as ${run.state} before the cancel took effect.`;
  return `Cancelled run #${run.id} (${run.jobName}): its ${run.annotationCount} annotations are pending again; ${jobFate(run)}. The next run starts when a trigger fires (\`pause\` first to prevent that).`;
}

/**
 * What is true of the Job when the outcome is recorded: its delete is the service's, after that, retried until
 * the API server takes it (a 503 or a Role without `delete` keeps it alive: issue 24 saw "its Job is deleted").
 */
function jobFate(run: Run): string {
  return run.submittedAt
    ? `the service deletes its Job (retrying until the API server accepts; \`kubectl get job ${run.jobName}\` shows when it is gone)`
    : 'its Job was never confirmed created (one that still lands is deleted, and the next run waits until that create can no longer land)';
}

async function triggerCommand(
  pool: Pool,
  t: Tables,
  by: string,
  reason: string | null,
  confirmMs: number,
): Promise<Outcome> {
  const refusal = await triggerRefusal(pool, t);
  if (refusal) return { code: 1, text: refusal };
  const after = await lastRunId(pool, t);
  await requestTrigger(pool, t, by, reason);
  const { found: seen, error } = await waitFor(confirmMs, async () => {
    const started = await manualRunAfter(pool, t, after);
    if (started) return started;
    if ((await readControl(pool, t)).triggerAt !== null) return null;
    // The request is gone. The service clears it in the transaction that inserts the run, which may have
    // committed between the two reads above: look once more before calling it dropped.
    return (await manualRunAfter(pool, t, after)) ?? 'dropped';
  });
  if (seen === 'dropped')
    return {
      code: 1,
      text: 'the service did not start a run (the state changed, or DISPATCH_MODE is dry-run): its log says why',
    };
  if (!seen) {
    const why = error
      ? `the database stopped answering while this command waited for the service (${error})`
      : `no running service took it within ${confirmMs / 1000} s: it will when it (re)starts`;
    return { code: 0, text: `Trigger requested; ${why} (\`training-controller status\` shows the request).` };
  }
  return { code: 0, text: `Started run #${seen.id} (${seen.jobName}) with ${seen.annotationCount} annotations.` };
}

/** Why `trigger` must refuse now, or null. The service checks again under its dispatch lock. */
export async function triggerRefusal(pool: Pool, t: Tables): Promise<string | null> {
  const control = await readControl(pool, t);
  if (control.paused) {
    const why = control.pauseReason ? ` (${control.pauseReason})` : '';
    return `paused since ${control.pausedAt?.toISOString()} by ${control.pausedBy}${why}: \`training-controller resume\` first`;
  }
  const open = (await openRun(pool, t)) ?? (await unfinishedRun(pool, t));
  if (open)
    return `run #${open.id} (${open.jobName}) is ${open.state}: wait for it to end, or \`training-controller cancel\` it`;
  if (!(await anyPending(pool, t)))
    return 'nothing pending: a run needs at least one verified annotation not yet trained on';
  return null;
}

/**
 * Polls `probe` until it finds something or `ms` pass. A probe that fails (the database restarting under a
 * failover) is tried again: what the command asked for is already committed, so a lost connection while it
 * waits for the service must not turn into "failed" (issue 24's review: exit 1 after a recorded cancel).
 * The last error is returned when nothing was found.
 */
async function waitFor<T>(
  ms: number,
  probe: () => Promise<T | null>,
  timers = realTimers,
): Promise<{ found: T | null; error: string | null }> {
  const deadline = timers.now() + ms;
  let error: string | null = null;
  for (;;) {
    try {
      const found = await probe();
      error = null;
      if (found !== null) return { found, error };
    } catch (err: unknown) {
      error = errorMessage(err);
    }
    if (timers.now() >= deadline) return { found: null, error };
    await sleep(timers, 100);
  }
}

// One recount, start to finish: count (with the operator state), decide whether a trigger fired (triggers.ts),
// dispatch, then publish the gate (gate.ts) so the next verification that matters NOTIFYs. The controller runs
// it on its serial queue and owns every timer and the /readyz entries: the step returns what it wants done
// (RecountEffect, in order) and the controller applies it, as decide.ts returns a decision the dispatcher acts on.
import type { AwaitWriters } from './awaitWriters.js';
import { retryDelayMs } from '../core/backoff.js';
import { ChunkInterrupted } from '../db/chunks.js';
import type { Config } from '../core/config.js';
import { notePending } from '../db/control.js';
import { ControlLog } from '../ops/controlLog.js';
import type { Pool } from '../db/pool.js';
import { dispatch, type DispatchResult, type DispatcherDeps } from './dispatcher.js';
import { missedWhilePublishing, notifyAt } from '../core/gate.js';
import type { Health } from '../core/health.js';
import { KubeError } from '../kube/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../ops/metrics.js';
import { publishNotifyAt, recount, type Recount } from '../db/annotations.js';
import type { RecountCause } from '../core/recountCauses.js';
import type { Timers } from '../core/timers.js';
import { firedTrigger, maxWaitDueAt, maxWaitOf, wakeAtCount, type Control, type MaxWait } from '../core/triggers.js';

/** Debug log line the benchmark reads to split the trigger latency. */
export const RECOUNTED = 'Recounted';

export interface RecountDeps {
  config: Config;
  pool: Pool;
  logger: Logger;
  timers: Timers;
  metrics: Metrics;
  health: Health;
  dispatcher: DispatcherDeps;
  /** The create lease of the reconciler, when there is one (a submit to retry waits it out). */
  createLeaseMs: number | null;
}

/** What a recount asks of the controller, in order: /readyz bookkeeping, and every timer. */
export type RecountEffect =
  /** The step went through: its /readyz entry goes. */
  | { kind: 'ok'; step: string }
  /** A step failed: kept on /readyz, logged as "<what> failed; retrying", one retry on the back-off table. */
  | { kind: 'failed'; step: string; what: string; err: unknown }
  /** The recount went through: the retry table starts again from its first step. */
  | { kind: 'succeeded' }
  | { kind: 'recount'; cause: RecountCause }
  /** One recount after `ms` (claim races, a locked dispatch). */
  | { kind: 'retry-in'; ms: number }
  | { kind: 'backoff-ends-in'; ms: number }
  | { kind: 'reconcile-in'; ms: number }
  | { kind: 'max-wait-in'; ms: number }
  /** An unfinished Job of no run blocked the dispatch (true), or a run started (false). */
  | { kind: 'foreign-job'; blocking: boolean }
  /** The server allows two-phase commit (or no longer does): watch the gate sequence (gateWatch.ts). */
  | { kind: 'gate-watch'; on: boolean };

type Counted = { count: Recount; control: Control & { dbNow: number } };

export class RecountStep {
  /** Claim races in a row (dispatch found fewer to claim than the recount counted). */
  private claimRaces = 0;
  private readonly maxWait: MaxWait;
  private readonly controlLog: ControlLog;

  constructor(
    private readonly deps: RecountDeps,
    private readonly writers: AwaitWriters,
  ) {
    this.maxWait = maxWaitOf(deps.config);
    this.controlLog = new ControlLog(deps.logger, deps.metrics);
  }

  /** One recount; returns what the controller is to do after it, in order. */
  async run(cause: RecountCause): Promise<RecountEffect[]> {
    const effects: RecountEffect[] = [];
    await this.steps(cause, effects);
    return effects;
  }

  private async steps(cause: RecountCause, effects: RecountEffect[]): Promise<void> {
    this.deps.metrics.recounts.inc({ cause });
    const seen = await this.count(cause, effects);
    if (!seen) return;
    const { count, control } = seen;
    const { config } = this.deps;
    this.scheduleMaxWait(control, count.pending, effects);
    let quiet = control.paused;
    // A manual request is always handed to the dispatcher: it starts the run or says why not, and drops it.
    if (
      firedTrigger(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow) ||
      control.triggerAt
    ) {
      const after = await this.dispatchStep(count.pending, effects);
      if (after === 'done') return;
      quiet = after;
    } else {
      effects.push({ kind: 'ok', step: 'dispatch' }); // nothing to dispatch now: an earlier failure holds nothing back
    }
    const wake = wakeAtCount(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow);
    await this.publishGate(count, wake, quiet || wake === null, effects);
  }

  /** The recount and the operator state; null when it failed (a retry is scheduled). */
  private async count(cause: RecountCause, effects: RecountEffect[]): Promise<Counted | null> {
    const { config, pool, health, timers } = this.deps;
    const settles = this.writers.settleable();
    const started = timers.now();
    let count: Recount;
    let control: Control & { dbNow: number };
    try {
      count = await recount(pool, this.deps.dispatcher.tables, config.trainingThreshold);
      control = await notePending(pool, this.deps.dispatcher.tables, count.pending > 0);
    } catch (err: unknown) {
      effects.push({ kind: 'failed', step: 'recount', what: 'Recount', err });
      return null;
    }
    // The recount read pg_locks just as the writer wait does: that read works again too.
    effects.push({ kind: 'ok', step: 'recount' }, { kind: 'ok', step: 'writers' });
    effects.push({ kind: 'gate-watch', on: count.twoPhase });
    health.lastRecountAt = timers.now();
    this.deps.metrics.pending.set(count.pending);
    this.controlLog.observe(control);
    const ms = timers.now() - started;
    this.deps.logger.debug({ cause, pending: count.pending, writers: count.writers.length, ms }, RECOUNTED);
    this.writers.recounted(settles, count.gateBefore, count.writers);
    return { count, control };
  }

  /** Returns 'done' when a later recount publishes the gate, else whether the gate may go quiet. */
  private async dispatchStep(pending: number, effects: RecountEffect[]): Promise<'done' | boolean> {
    let result: DispatchResult;
    try {
      result = await dispatch(this.deps.dispatcher, pending);
    } catch (err: unknown) {
      if (err instanceof ChunkInterrupted) this.deps.logger.info(err.message);
      else {
        if (this.deps.health.cluster && err instanceof KubeError) this.deps.health.cluster.error = err.message;
        effects.push({ kind: 'failed', step: 'dispatch', what: 'Dispatch', err });
      }
      return 'done';
    }
    effects.push({ kind: 'ok', step: 'dispatch' }, { kind: 'succeeded' });
    // The count was already stale: publish the gate from what is true now, not from it.
    if (result.kind === 'claim-race') {
      // Once at once; again only after a growing delay: a pending row the claim can never take (or a row a
      // Triage transaction keeps locked) must not turn the loop into thousands of dispatches a second.
      if (++this.claimRaces === 1) effects.push({ kind: 'recount', cause: 'claim-race' });
      else effects.push({ kind: 'retry-in', ms: retryDelayMs(this.claimRaces - 1) });
      return 'done';
    }
    this.claimRaces = 0;
    const quiet = this.afterDispatch(result, effects);
    return result.kind === 'dispatched' ? 'done' : quiet; // the 'dispatched' recount publishes the gate
  }

  /** The max wait's timer: a recount when it runs out (the dispatcher checks TRAINING_MIN_BATCH then). */
  private scheduleMaxWait(control: Control & { dbNow: number }, pending: number, effects: RecountEffect[]): void {
    const due = maxWaitDueAt(control, this.maxWait);
    if (due === null || control.paused || pending === 0 || due <= control.dbNow) return;
    effects.push({ kind: 'max-wait-in', ms: due - control.dbNow });
  }

  private async publishGate(
    count: Recount,
    wakeAt: number | null,
    quiet: boolean,
    effects: RecountEffect[],
  ): Promise<void> {
    const { pool } = this.deps;
    try {
      const target = notifyAt({ gateBefore: count.gateBefore, pending: count.pending, threshold: wakeAt ?? 0, quiet });
      const gateAfter = await publishNotifyAt(pool, this.deps.dispatcher.tables, target);
      if (missedWhilePublishing(target, gateAfter)) effects.push({ kind: 'recount', cause: 'gate' });
    } catch (err: unknown) {
      effects.push({ kind: 'failed', step: 'gate', what: 'Publishing the notification gate', err });
      return;
    }
    effects.push({ kind: 'ok', step: 'gate' }, { kind: 'succeeded' });
  }

  /** Returns whether the gate may go quiet: the controller will recount on its own when it can act. */
  private afterDispatch(result: Exclude<DispatchResult, { kind: 'claim-race' }>, effects: RecountEffect[]): boolean {
    switch (result.kind) {
      case 'dispatched':
        effects.push({ kind: 'foreign-job', blocking: false }, { kind: 'recount', cause: 'dispatched' });
        if (result.submit === 'retry') effects.push({ kind: 'reconcile-in', ms: this.deps.createLeaseMs ?? 10_000 });
        if (result.submit === 'failed') effects.push({ kind: 'recount', cause: 'run-finished' });
        return true;
      case 'skipped':
        if (result.decision.retryInMs !== undefined)
          effects.push({ kind: 'backoff-ends-in', ms: Math.max(0, result.decision.retryInMs) });
        effects.push({ kind: 'foreign-job', blocking: result.foreignJob });
        return result.decision.reason !== 'below-threshold';
      case 'locked':
        // Another replica is dispatching; look again shortly in case it dies before finishing.
        effects.push({ kind: 'retry-in', ms: 1000 });
        return false;
      case 'rehearsed':
        return true;
    }
  }
}

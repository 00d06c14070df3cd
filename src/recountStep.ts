// One recount, start to finish: count (with the operator state), decide whether a trigger fired (triggers.ts),
// dispatch, then publish the gate (gate.ts) so the next verification that matters NOTIFYs. The controller runs
// it on its serial queue and owns every timer; this step asks for them through RecountHooks, so it decides and
// the controller schedules.
import type { AwaitWriters } from './awaitWriters.js';
import { retryDelayMs } from './backoff.js';
import { ChunkInterrupted } from './chunks.js';
import type { Config } from './config.js';
import { notePending } from './control.js';
import { ControlLog } from './controlLog.js';
import type { Pool } from './db.js';
import { dispatch, type DispatchResult, type DispatcherDeps } from './dispatcher.js';
import { missedWhilePublishing, notifyAt } from './gate.js';
import type { Health } from './health.js';
import { KubeError } from './kubeErrors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { publishNotifyAt, recount, type Recount } from './pending.js';
import type { RecountCause } from './recountCauses.js';
import type { Timers } from './timers.js';
import { firedTrigger, maxWaitDueAt, maxWaitOf, wakeAtCount, type Control, type MaxWait } from './triggers.js';

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

/** What the step asks of the controller: /readyz bookkeeping, and every timer. */
export interface RecountHooks {
  ok(step: string): void;
  /** A step failed: kept on /readyz, logged, and one retry scheduled on the back-off table. */
  retryAfterFailure(step: string, what: string, err: unknown): void;
  /** The recount went through: the retry table starts again from its first step. */
  succeeded(): void;
  requestRecount(cause: RecountCause): void;
  retryIn(ms: number): void;
  backoffEndsIn(ms: number): void;
  reconcileIn(ms: number): void;
  maxWaitIn(ms: number): void;
  /** An unfinished Job of no run blocked the dispatch (true), or a run started (false). */
  foreignJob(blocking: boolean): void;
}

type Counted = { count: Recount; control: Control & { dbNow: number } };

export class RecountStep {
  /** Claim races in a row (dispatch found fewer to claim than the recount counted). */
  private claimRaces = 0;
  private readonly maxWait: MaxWait;
  private readonly controlLog: ControlLog;

  constructor(
    private readonly deps: RecountDeps,
    private readonly writers: AwaitWriters,
    private readonly hooks: RecountHooks,
  ) {
    this.maxWait = maxWaitOf(deps.config);
    this.controlLog = new ControlLog(deps.logger, deps.metrics);
  }

  async run(cause: RecountCause): Promise<void> {
    this.deps.metrics.recounts.inc({ cause });
    const seen = await this.count(cause);
    if (!seen) return;
    const { count, control } = seen;
    const { config } = this.deps;
    this.scheduleMaxWait(control, count.pending);
    let quiet = control.paused;
    // A manual request is always handed to the dispatcher: it starts the run or says why not, and drops it.
    if (
      firedTrigger(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow) ||
      control.triggerAt
    ) {
      const after = await this.dispatchStep(count.pending);
      if (after === 'done') return;
      quiet = after;
    } else {
      this.hooks.ok('dispatch'); // nothing to dispatch now: an earlier failure no longer holds anything back
    }
    const wake = wakeAtCount(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow);
    await this.publishGate(count, wake, quiet || wake === null);
  }

  /** The recount and the operator state; null when it failed (a retry is scheduled). */
  private async count(cause: RecountCause): Promise<Counted | null> {
    const { config, pool, health, timers } = this.deps;
    const settles = this.writers.settleable();
    const started = timers.now();
    let count: Recount;
    let control: Control & { dbNow: number };
    try {
      count = await recount(pool, this.deps.dispatcher.tables, config.trainingThreshold);
      control = await notePending(pool, this.deps.dispatcher.tables, count.pending > 0);
    } catch (err: unknown) {
      this.hooks.retryAfterFailure('recount', 'Recount', err);
      return null;
    }
    this.hooks.ok('recount');
    // The recount read pg_locks just as the writer wait does: that read works again too.
    this.hooks.ok('writers');
    health.lastRecountAt = timers.now();
    this.deps.metrics.pending.set(count.pending);
    this.controlLog.observe(control);
    const ms = timers.now() - started;
    this.deps.logger.debug({ cause, pending: count.pending, writers: count.writers.length, ms }, RECOUNTED);
    this.writers.recounted(settles, count.gateBefore, count.writers);
    return { count, control };
  }

  /** Returns 'done' when a later recount publishes the gate, else whether the gate may go quiet. */
  private async dispatchStep(pending: number): Promise<'done' | boolean> {
    let result: DispatchResult;
    try {
      result = await dispatch(this.deps.dispatcher, pending);
    } catch (err: unknown) {
      if (err instanceof ChunkInterrupted) this.deps.logger.info(err.message);
      else {
        if (this.deps.health.cluster && err instanceof KubeError) this.deps.health.cluster.error = err.message;
        this.hooks.retryAfterFailure('dispatch', 'Dispatch', err);
      }
      return 'done';
    }
    this.hooks.ok('dispatch');
    this.hooks.succeeded();
    // The count was already stale: publish the gate from what is true now, not from it.
    if (result.kind === 'claim-race') {
      // Once at once; again only after a growing delay: a pending row the claim can never take (or a row a
      // Triage transaction keeps locked) must not turn the loop into thousands of dispatches a second.
      if (++this.claimRaces === 1) this.hooks.requestRecount('claim-race');
      else this.hooks.retryIn(retryDelayMs(this.claimRaces - 1));
      return 'done';
    }
    this.claimRaces = 0;
    const quiet = this.afterDispatch(result);
    return result.kind === 'dispatched' ? 'done' : quiet; // the 'dispatched' recount publishes the gate
  }

  /** The max wait's timer: a recount when it runs out (the dispatcher checks TRAINING_MIN_BATCH then). */
  private scheduleMaxWait(control: Control & { dbNow: number }, pending: number): void {
    const due = maxWaitDueAt(control, this.maxWait);
    if (due === null || control.paused || pending === 0 || due <= control.dbNow) return;
    this.hooks.maxWaitIn(due - control.dbNow);
  }

  private async publishGate(count: Recount, wakeAt: number | null, quiet: boolean): Promise<void> {
    const { pool } = this.deps;
    try {
      const target = notifyAt({ gateBefore: count.gateBefore, pending: count.pending, threshold: wakeAt ?? 0, quiet });
      const gateAfter = await publishNotifyAt(pool, this.deps.dispatcher.tables, target);
      if (missedWhilePublishing(target, gateAfter)) this.hooks.requestRecount('gate');
    } catch (err: unknown) {
      this.hooks.retryAfterFailure('gate', 'Publishing the notification gate', err);
      return;
    }
    this.hooks.ok('gate');
    this.hooks.succeeded();
  }

  /** Returns whether the gate may go quiet: the controller will recount on its own when it can act. */
  private afterDispatch(result: Exclude<DispatchResult, { kind: 'claim-race' }>): boolean {
    switch (result.kind) {
      case 'dispatched':
        this.hooks.foreignJob(false);
        this.hooks.requestRecount('dispatched');
        if (result.submit === 'retry') this.hooks.reconcileIn(this.deps.createLeaseMs ?? 10_000);
        if (result.submit === 'failed') this.hooks.requestRecount('run-finished');
        return true;
      case 'skipped':
        if (result.decision.retryInMs !== undefined) this.hooks.backoffEndsIn(Math.max(0, result.decision.retryInMs));
        this.hooks.foreignJob(result.foreignJob);
        return result.decision.reason !== 'below-threshold';
      case 'locked':
        // Another replica is dispatching; look again shortly in case it dies before finishing.
        this.hooks.retryIn(1000);
        return false;
      case 'rehearsed':
        return true;
    }
  }
}

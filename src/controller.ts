// The control loop: listen → recount → decide → dispatch → reconcile.
//
// Work is serialised on one queue, so a recount, a dispatch and a reconcile never overlap in one process
// (replicas are kept apart by the advisory lock and the one-open-run index). Requests coalesce: while a
// recount is queued, more requests for one add nothing. Nothing here throws out of the loop: every failure
// is logged, shown on /readyz, and retried on the back-off table (backoff.ts).
//
// Recount causes and their timing:
//   notification, gate, settle → debounced (DEBOUNCE_MS trailing, DEBOUNCE_MAX_WAIT_MS cap)
//   startup, reconnect, poll, run-finished, dispatched, backoff-ended, retry → at once
import type { Config } from './config.js';
import type { Pool } from './db.js';
import { Debouncer } from './debounce.js';
import type { Timers } from './timers.js';
import { dispatch, type DispatchResult, type DispatcherDeps } from './dispatcher.js';
import { missedWhilePublishing, needsSettleRecount, notifyAt } from './gate.js';
import type { Health } from './health.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { publishNotifyAt, recount, stillWriting } from './pending.js';
import { reconcile, type ReconcilerDeps } from './reconciler.js';
import { retryDelayMs } from './backoff.js';

export type RecountCause =
  | 'startup'
  | 'notification'
  | 'reconnect'
  | 'poll'
  | 'run-finished'
  | 'dispatched'
  | 'backoff-ended'
  | 'retry'
  | 'gate'
  | 'settle';

const DEBOUNCED: ReadonlySet<RecountCause> = new Set(['notification', 'gate', 'settle']);

export interface ControllerDeps {
  config: Config;
  pool: Pool;
  logger: Logger;
  timers: Timers;
  metrics: Metrics;
  health: Health;
  dispatcher: DispatcherDeps;
  /** null in print mode (no cluster): nothing is ever submitted, so there is nothing to reconcile. */
  reconciler: ReconcilerDeps | null;
}

export class Controller {
  private readonly debouncer: Debouncer;
  private debouncedCause: RecountCause | null = null;
  private queue: Promise<void> = Promise.resolve();
  private recountQueued = false;
  private reconcileQueued = false;
  private stopped = false;
  private readonly intervals: unknown[] = [];
  private readonly timeouts = new Set<unknown>();
  private failures = 0;
  private reconcileFailures = 0;
  /** Every gate number up to this belongs to a transaction that had ended before some completed recount. */
  private settledUpTo = -1n;
  private settling = false;
  private settleCandidate: bigint | null = null;
  /** An unfinished Job of no run blocked the last dispatch: recount when the reconciler sees it gone. */
  private blockedByForeignJob = false;

  constructor(private readonly deps: ControllerDeps) {
    const { config, timers } = deps;
    this.debouncer = new Debouncer(timers, config.debounceMs, config.debounceMaxWaitMs, () => {
      const cause = this.debouncedCause ?? 'notification';
      this.debouncedCause = null;
      this.enqueueRecount(cause);
    });
    deps.metrics.threshold.set(config.trainingThreshold);
  }

  /** Starts the periodic work. The first recount comes from the listener's first `connected`. */
  start(): void {
    const { config } = this.deps;
    if (config.pollIntervalSeconds > 0) {
      this.intervals.push(setInterval(() => this.requestRecount('poll'), config.pollIntervalSeconds * 1000));
    }
    if (this.deps.reconciler) {
      this.intervals.push(setInterval(() => this.requestReconcile(), config.reconcileIntervalSeconds * 1000));
      this.requestReconcile();
    }
  }

  /** Stops taking work, lets the in-flight step finish (a dispatch commits or rolls back), then resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.debouncer.cancel();
    for (const i of this.intervals) clearInterval(i as NodeJS.Timeout);
    await this.queue;
    // After the queue: the last step may have scheduled a retry or the end of a back-off.
    for (const t of this.timeouts) this.deps.timers.clearTimeout(t);
    this.timeouts.clear();
  }

  /** Resolves when every queued step has run (tests and the benchmark use it to wait for quiet). */
  idle(): Promise<void> {
    return this.queue;
  }

  notification(): void {
    this.deps.metrics.noteNotification();
    this.requestRecount('notification');
  }

  requestRecount(cause: RecountCause): void {
    if (this.stopped) return;
    if (DEBOUNCED.has(cause)) {
      this.debouncedCause ??= cause;
      this.debouncer.request();
      return;
    }
    this.debouncer.cancel();
    this.debouncedCause = null;
    this.enqueueRecount(cause);
  }

  requestReconcile(): void {
    if (this.stopped || !this.deps.reconciler || this.reconcileQueued) return;
    this.reconcileQueued = true;
    this.enqueue(async () => {
      this.reconcileQueued = false;
      await this.reconcileStep();
    });
  }

  private enqueueRecount(cause: RecountCause): void {
    if (this.stopped || this.recountQueued) return;
    this.recountQueued = true;
    this.enqueue(async () => {
      this.recountQueued = false;
      await this.recountStep(cause);
    });
  }

  private enqueue(step: () => Promise<void>): void {
    this.queue = this.queue.then(step).catch((err: unknown) => {
      // Steps handle their own errors; this is the last net so the loop can never die.
      this.deps.logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'Unexpected error in the control loop');
    });
  }

  private after(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const t = this.deps.timers.setTimeout(() => {
      this.timeouts.delete(t);
      fn();
    }, ms);
    this.timeouts.add(t);
  }

  private failed(what: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.failures++;
    const delay = retryDelayMs(this.failures);
    this.deps.logger.warn({ err: message, attempt: this.failures, retryInMs: delay }, `${what} failed; retrying`);
    this.after(delay, () => this.requestRecount('retry'));
  }

  private async recountStep(cause: RecountCause): Promise<void> {
    const { config, pool, metrics, health, timers } = this.deps;
    if (this.stopped) return;
    metrics.recounts.inc({ cause });
    const settling = this.settleCandidate;
    this.settleCandidate = null;
    let count;
    try {
      count = await recount(pool, config.trainingThreshold);
    } catch (err: unknown) {
      health.databaseError = err instanceof Error ? err.message : String(err);
      this.failed('Recount', err);
      return;
    }
    health.databaseError = null;
    health.lastRecountAt = timers.now();
    metrics.pending.set(count.pending);
    this.deps.logger.debug({ cause, pending: count.pending, writers: count.writers.length }, 'Recounted');
    if (settling !== null && settling > this.settledUpTo) this.settledUpTo = settling;

    let quiet = false;
    if (count.pending >= config.trainingThreshold) {
      let result: DispatchResult;
      try {
        result = await dispatch(this.deps.dispatcher, count.pending);
      } catch (err: unknown) {
        this.noteDispatchError(err);
        this.failed('Dispatch', err);
        return;
      }
      this.failures = 0;
      quiet = this.afterDispatch(result);
      if (result.kind === 'dispatched') return; // the 'dispatched' recount publishes the gate
    } else {
      this.failures = 0;
    }

    try {
      const target = notifyAt({ gateBefore: count.gateBefore, pending: count.pending, threshold: config.trainingThreshold, quiet });
      const gateAfter = await publishNotifyAt(pool, target);
      if (missedWhilePublishing(target, gateAfter)) this.requestRecount('gate');
    } catch (err: unknown) {
      this.failed('Publishing the notification gate', err);
      return;
    }
    if (count.writers.length === 0) {
      if (count.gateBefore > this.settledUpTo) this.settledUpTo = count.gateBefore;
    } else if (needsSettleRecount(count.gateBefore, this.settledUpTo, count.writers)) {
      void this.settle(count.gateBefore, count.writers);
    }
  }

  /** Returns whether the gate may go quiet: the controller will recount on its own when it can act. */
  private afterDispatch(result: DispatchResult): boolean {
    switch (result.kind) {
      case 'dispatched':
        this.blockedByForeignJob = false;
        this.requestRecount('dispatched');
        if (result.submit === 'retry') this.after(this.deps.reconciler?.createLeaseMs ?? 10_000, () => this.requestReconcile());
        if (result.submit === 'failed') this.requestRecount('run-finished');
        return true;
      case 'skipped':
        if (result.decision.reason === 'backoff' && result.decision.retryAt !== undefined) {
          this.after(Math.max(0, result.decision.retryAt - this.deps.timers.now()), () => this.requestRecount('backoff-ended'));
        }
        this.blockedByForeignJob = result.foreignJob;
        return result.decision.reason !== 'below-threshold';
      case 'locked':
        // Another replica is dispatching; look again shortly in case it dies before finishing.
        this.after(1000, () => this.requestRecount('retry'));
        return false;
      case 'rehearsed':
        return true;
    }
  }

  private noteDispatchError(err: unknown): void {
    const cluster = this.deps.health.cluster;
    if (cluster && err instanceof Error && err.name === 'KubeError') cluster.error = err.message;
  }

  /** Gate case 1 (gate.ts): wait for the verifying transactions the count could not see, then recount. */
  private async settle(gateBefore: bigint, writers: string[]): Promise<void> {
    if (this.settling) return;
    this.settling = true;
    try {
      // Verifying transactions are short: poll every 25 ms, slowing to 1 s for a long-running writer.
      for (let wait = 25; !this.stopped; wait = Math.min(1000, wait * 2)) {
        if ((await stillWriting(this.deps.pool, writers)) === 0) break;
        await new Promise<void>((resolve) => this.after(wait, resolve));
      }
      if (this.stopped) return;
      this.settleCandidate = gateBefore;
      this.requestRecount('settle');
    } catch (err: unknown) {
      this.failed('Waiting for verifying transactions', err);
    } finally {
      this.settling = false;
    }
  }

  private async reconcileStep(): Promise<void> {
    const deps = this.deps.reconciler;
    if (!deps || this.stopped) return;
    try {
      const result = await reconcile(deps);
      this.reconcileFailures = 0;
      if (result.finished) this.requestRecount('run-finished');
      if (result.retrySubmit) this.after(deps.createLeaseMs, () => this.requestReconcile());
      if (this.blockedByForeignJob && result.foreignJobs.length === 0 && !result.retrySubmit) {
        this.blockedByForeignJob = false;
        this.requestRecount('run-finished');
      }
    } catch (err: unknown) {
      const message = err instanceof Error ? err.message : String(err);
      if (this.deps.health.cluster && err instanceof Error && err.name === 'KubeError') this.deps.health.cluster.error = message;
      else this.deps.health.databaseError = message;
      const delay = retryDelayMs(++this.reconcileFailures);
      this.deps.logger.warn({ err: message, attempt: this.reconcileFailures, retryInMs: delay }, 'Reconcile failed; retrying');
      this.after(delay, () => this.requestReconcile());
    }
  }
}

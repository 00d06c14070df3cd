// The control loop: listen → recount → decide → dispatch → reconcile.
//
// Work runs on one serial queue (workQueue.ts), so a recount, a dispatch and a reconcile never overlap in one
// process. The waits around it each have a module: the debounce of notifications (debounce.ts), the wait for
// writers a recount could not see (awaitWriters.ts), and retries, at most one pending per kind (OneShot), so
// the request rate stays flat however long a dependency is down. Nothing here throws out of the loop: every
// failure is logged, kept on /readyz until that step succeeds again, and retried on the back-off table.
//
// Recount causes and their timing:
//   notification, gate, writers-ended → debounced (at once when quiet, else one trailing recount DEBOUNCE_MS
//                                        after the last, DEBOUNCE_MAX_WAIT_MS cap: debounce.ts)
//   startup, reconnect, poll, run-finished, dispatched, backoff-ended, retry, claim-race → at once
import { AwaitWriters } from './awaitWriters.js';
import { ChunkInterrupted } from './chunks.js';
import type { RecountCause } from './recountCauses.js';
import { retryDelayMs } from './backoff.js';
import type { Config } from './config.js';
import type { Pool } from './db.js';
import { Debouncer } from './debounce.js';
import { dispatch, type DispatchResult, type DispatcherDeps } from './dispatcher.js';
import { errorMessage } from './errors.js';
import { missedWhilePublishing, notifyAt } from './gate.js';
import type { Health } from './health.js';
import { KubeError } from './kubeErrors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { publishNotifyAt, recount, stillWriting, type Recount } from './pending.js';
import { notePending } from './control.js';
import { ControlLog } from './controlLog.js';
import { firedTrigger, maxWaitDueAt, maxWaitOf, wakeAtCount, type Control, type MaxWait } from './triggers.js';
import { reconcile, type ReconcilerDeps } from './reconciler.js';
import { OneShot, type Timers } from './timers.js';
import { WorkQueue } from './workQueue.js';

/** Debug log lines the benchmark reads to split the trigger latency. */
export const NOTIFIED = 'Notification received';
export const RECOUNTED = 'Recounted';

const DEBOUNCED: ReadonlySet<RecountCause> = new Set(['notification', 'gate', 'writers-ended']);

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
  /** The namespaces whose Jobs must be watched (the configured one and the open run's), after each reconcile. */
  watchNamespaces?(namespaces: string[]): void;
}

export class Controller {
  private readonly debouncer: Debouncer;
  /** Claim races in a row (dispatch found fewer to claim than the recount counted). */
  private claimRaces = 0;
  private debouncedCause: RecountCause | null = null;
  private readonly queue: WorkQueue<'recount' | 'reconcile'>;
  private readonly writers: AwaitWriters;
  private readonly recountRetry: OneShot;
  private readonly backoffEnd: OneShot;
  private readonly reconcileRetry: OneShot;
  private readonly maxWaitTimer: OneShot;
  private readonly maxWait: MaxWait;
  private readonly controlLog: ControlLog;
  private readonly intervals: unknown[] = [];
  private stopped = false;
  private recountFailures = 0;
  private reconcileFailures = 0;
  /** An unfinished Job of no run blocked the last dispatch: recount when the reconciler sees it gone. */
  private blockedByForeignJob = false;

  constructor(private readonly deps: ControllerDeps) {
    const { config, timers, logger } = deps;
    this.queue = new WorkQueue((err: unknown) =>
      logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'Unexpected error in the control loop'),
    );
    this.debouncer = new Debouncer(timers, config.debounceMs, config.debounceMaxWaitMs, () => {
      const cause = this.debouncedCause ?? 'notification';
      this.debouncedCause = null;
      this.enqueueRecount(cause);
    });
    this.writers = new AwaitWriters({
      timers,
      stillOpen: (writers) => stillWriting(deps.pool, deps.dispatcher.tables, writers),
      onEnded: () => this.requestRecount('writers-ended'),
      onError: (what, err) => this.recountFailed('writers', what, err),
    });
    this.recountRetry = new OneShot(timers, () => this.requestRecount('retry'));
    this.backoffEnd = new OneShot(timers, () => this.requestRecount('backoff-ended'));
    this.reconcileRetry = new OneShot(timers, () => this.requestReconcile());
    this.maxWaitTimer = new OneShot(timers, () => this.requestRecount('max-wait'));
    this.maxWait = maxWaitOf(config);
    this.controlLog = new ControlLog(logger, deps.metrics);
    deps.metrics.threshold.set(config.trainingThreshold);
  }

  /** Starts the periodic work. The first recount comes from the listener's first `connected`. */
  start(): void {
    const { config, timers } = this.deps;
    if (config.pollIntervalSeconds > 0)
      this.intervals.push(timers.setInterval(() => this.requestRecount('poll'), config.pollIntervalSeconds * 1000));
    if (this.deps.reconciler) {
      this.intervals.push(timers.setInterval(() => this.requestReconcile(), config.reconcileIntervalSeconds * 1000));
      this.requestReconcile();
    }
  }

  /** Stops taking work, lets the in-flight step finish (a dispatch commits or rolls back), then resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.debouncer.cancel();
    for (const i of this.intervals) this.deps.timers.clearInterval(i);
    await this.writers.stop();
    await this.queue.idle();
    // After the queue: the last step may have scheduled a retry or the end of a back-off.
    for (const t of [this.recountRetry, this.backoffEnd, this.reconcileRetry, this.maxWaitTimer]) t.cancel();
  }

  /** True once stop() was called: chunked work (chunks.ts) stops between chunks. */
  get stopping(): boolean {
    return this.stopped;
  }

  /** Resolves when the loop is quiet: no step queued or running (tests and the benchmark wait for it). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  notification(): void {
    this.deps.metrics.noteNotification();
    this.deps.logger.debug(NOTIFIED); // the bench times delivery from it; free unless LOG_LEVEL=debug
    this.requestRecount('notification');
  }

  /** A NOTIFY on the control channel (pause, resume, trigger, cancel): look at once, and at the open run. */
  control(): void {
    this.requestRecount('control');
    this.requestReconcile();
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
    if (this.stopped || !this.deps.reconciler) return;
    this.queue.push('reconcile', () => this.reconcileStep());
  }

  private enqueueRecount(cause: RecountCause): void {
    if (this.stopped) return;
    this.queue.push('recount', () => this.recountStep(cause));
  }

  private ok(step: string): void {
    delete this.deps.health.failing[step];
  }

  /** A step of the recount failed: shown on /readyz until it succeeds, and one recount retry scheduled. */
  private recountFailed(step: string, what: string, err: unknown): void {
    const message = errorMessage(err);
    this.deps.health.failing[step] = message;
    const delay = retryDelayMs(++this.recountFailures);
    this.deps.logger.warn(
      { err: message, attempt: this.recountFailures, retryInMs: delay },
      `${what} failed; retrying`,
    );
    this.recountRetry.schedule(delay);
  }

  private async recountStep(cause: RecountCause): Promise<void> {
    if (this.stopped) return;
    this.deps.metrics.recounts.inc({ cause });
    const seen = await this.count(cause);
    if (!seen) return;
    const { count, control } = seen;
    const { config } = this.deps;
    this.scheduleMaxWait(control, count.pending);
    let quiet = control.paused;
    // A manual request is always handed to the dispatcher: it starts the run or says why not, and drops it.
    if (firedTrigger(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow) || control.triggerAt) {
      const after = await this.dispatchStep(count.pending);
      if (after === 'done') return;
      quiet = after;
    } else {
      this.ok('dispatch'); // nothing to dispatch now: an earlier failure no longer holds anything back
    }
    const wake = wakeAtCount(count.pending, config.trainingThreshold, control, this.maxWait, control.dbNow);
    await this.publishGate(count, wake, quiet || wake === null);
  }

  /** The recount and the operator state; null when it failed (a retry is scheduled). */
  private async count(cause: RecountCause): Promise<{ count: Recount; control: Control & { dbNow: number } } | null> {
    const { config, pool, health, timers } = this.deps;
    const settles = this.writers.settleable();
    const started = timers.now();
    let count: Recount;
    let control: Control & { dbNow: number };
    try {
      count = await recount(pool, this.deps.dispatcher.tables, config.trainingThreshold);
      control = await notePending(pool, this.deps.dispatcher.tables, count.pending > 0);
    } catch (err: unknown) {
      this.recountFailed('recount', 'Recount', err);
      return null;
    }
    this.ok('recount');
    // The recount read pg_locks just as the writer wait does: that read works again too.
    this.ok('writers');
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
        this.recountFailed('dispatch', 'Dispatch', err);
      }
      return 'done';
    }
    this.ok('dispatch');
    this.recountFailures = 0;
    // The count was already stale: publish the gate from what is true now, not from it.
    if (result.kind === 'claim-race') {
      // Once at once; again only after a growing delay: a pending row the claim can never take (or a row a
      // Triage transaction keeps locked) must not turn the loop into thousands of dispatches a second.
      if (++this.claimRaces === 1) this.requestRecount('claim-race');
      else this.recountRetry.schedule(retryDelayMs(this.claimRaces - 1));
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
    this.maxWaitTimer.schedule(due - control.dbNow);
  }

  private async publishGate(count: Recount, wakeAt: number | null, quiet: boolean): Promise<void> {
    const { pool } = this.deps;
    try {
      const target = notifyAt({ gateBefore: count.gateBefore, pending: count.pending, threshold: wakeAt ?? 0, quiet });
      const gateAfter = await publishNotifyAt(pool, this.deps.dispatcher.tables, target);
      if (missedWhilePublishing(target, gateAfter)) this.requestRecount('gate');
    } catch (err: unknown) {
      return this.recountFailed('gate', 'Publishing the notification gate', err);
    }
    this.ok('gate');
    this.recountFailures = 0;
  }

  /** Returns whether the gate may go quiet: the controller will recount on its own when it can act. */
  private afterDispatch(result: Exclude<DispatchResult, { kind: 'claim-race' }>): boolean {
    switch (result.kind) {
      case 'dispatched':
        this.blockedByForeignJob = false;
        this.requestRecount('dispatched');
        if (result.submit === 'retry') this.reconcileRetry.schedule(this.deps.reconciler?.createLeaseMs ?? 10_000);
        if (result.submit === 'failed') this.requestRecount('run-finished');
        return true;
      case 'skipped':
        if (result.decision.reason === 'backoff' && result.decision.retryInMs !== undefined)
          this.backoffEnd.schedule(Math.max(0, result.decision.retryInMs));
        this.blockedByForeignJob = result.foreignJob;
        return result.decision.reason !== 'below-threshold';
      case 'locked':
        // Another replica is dispatching; look again shortly in case it dies before finishing.
        this.recountRetry.schedule(1000);
        return false;
      case 'rehearsed':
        return true;
    }
  }

  private async reconcileStep(): Promise<void> {
    const deps = this.deps.reconciler;
    if (!deps || this.stopped) return;
    try {
      const result = await reconcile(deps);
      this.reconcileFailures = 0;
      this.ok('reconcile');
      this.deps.watchNamespaces?.(result.namespaces);
      if (result.finished) this.requestRecount('run-finished');
      if (result.retrySubmit) this.reconcileRetry.schedule(deps.createLeaseMs);
      if (this.blockedByForeignJob && result.foreignJobs.length === 0 && !result.retrySubmit) {
        this.blockedByForeignJob = false;
        this.requestRecount('run-finished');
      }
    } catch (err: unknown) {
      if (err instanceof ChunkInterrupted) return this.deps.logger.info(err.message);
      const message = errorMessage(err);
      if (this.deps.health.cluster && err instanceof KubeError) this.deps.health.cluster.error = message;
      else this.deps.health.failing.reconcile = message;
      const delay = retryDelayMs(++this.reconcileFailures);
      this.deps.logger.warn(
        { err: message, attempt: this.reconcileFailures, retryInMs: delay },
        'Reconcile failed; retrying',
      );
      this.reconcileRetry.schedule(delay);
    }
  }
}

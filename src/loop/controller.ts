// The control loop: listen → recount → decide → dispatch → reconcile.
//
// Work runs on one serial queue (workQueue.ts), so a recount, a dispatch and a reconcile never overlap in one
// process. The waits around it each have a module: the debounce of notifications (debounce.ts), the wait for
// writers a recount could not see (awaitWriters.ts), and retries, at most one pending per kind (OneShot), so
// the request rate stays flat however long a dependency is down. Nothing here throws out of the loop: every
// failure is logged, kept on /readyz until that step succeeds again, and retried on the back-off table.
//
// Recount causes and their timing:
//   notification, gate, writers-ended, gate-watch → debounced (at once when quiet, else one trailing recount DEBOUNCE_MS
//                                        after the last, DEBOUNCE_MAX_WAIT_MS cap: debounce.ts)
//   startup, reconnect, poll, run-finished, dispatched, backoff-ended, retry, claim-race, control, max-wait
//                                     → at once
// The recount itself (count → trigger → dispatch → gate) is recountStep.ts; this class owns its timers.
import { AwaitWriters } from './awaitWriters.js';
import { retryDelayMs } from '../core/backoff.js';
import { ChunkInterrupted } from '../db/chunks.js';
import { Debouncer } from './debounce.js';
import { errorMessage } from '../core/errors.js';
import { KubeError } from '../kube/errors.js';
import { readGate, stillWriting } from '../db/annotations.js';
import { GateWatch } from './gateWatch.js';
import type { RecountCause } from '../core/recountCauses.js';
import { RecountStep, type RecountDeps, type RecountEffect } from './recountStep.js';
import { reconcile, type ReconcilerDeps } from './reconciler.js';
import { OneShot } from '../core/timers.js';
import { WorkQueue } from './workQueue.js';

/** Debug log line the benchmark reads to split the trigger latency (RECOUNTED is in recountStep.ts). */
export const NOTIFIED = 'Notification received';

const DEBOUNCED: ReadonlySet<RecountCause> = new Set(['notification', 'gate', 'writers-ended', 'gate-watch']);

export interface ControllerDeps extends Omit<RecountDeps, 'createLeaseMs'> {
  /** null in print mode (no cluster): nothing is ever submitted, so there is nothing to reconcile. */
  reconciler: ReconcilerDeps | null;
  /** The namespaces whose Jobs must be watched (the configured one and the open run's), after each reconcile. */
  watchNamespaces?(namespaces: string[]): void;
}

export class Controller {
  private readonly debouncer: Debouncer;
  private debouncedCause: RecountCause | null = null;
  private readonly queue: WorkQueue<'recount' | 'reconcile'>;
  private readonly writers: AwaitWriters;
  /** Stands in for NOTIFY on a server that allows two-phase commit (gateWatch.ts); off elsewhere. */
  private readonly gateWatch: GateWatch;
  private readonly recountRetry: OneShot;
  private readonly backoffEnd: OneShot;
  private readonly reconcileRetry: OneShot;
  private readonly maxWaitTimer: OneShot;
  private readonly recount: RecountStep;
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
    this.gateWatch = new GateWatch({
      timers,
      logger,
      read: () => readGate(deps.pool, deps.dispatcher.tables),
      crossed: () => this.requestRecount('gate-watch'),
    });
    this.recountRetry = new OneShot(timers, () => this.requestRecount('retry'));
    this.backoffEnd = new OneShot(timers, () => this.requestRecount('backoff-ended'));
    this.reconcileRetry = new OneShot(timers, () => this.requestReconcile());
    this.maxWaitTimer = new OneShot(timers, () => this.requestRecount('max-wait'));
    this.recount = new RecountStep({ ...deps, createLeaseMs: deps.reconciler?.createLeaseMs ?? null }, this.writers);
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
    await this.gateWatch.stop();
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
    this.queue.push('recount', async () => {
      if (this.stopped) return;
      for (const effect of await this.recount.run(cause)) this.apply(effect);
    });
  }

  /** Carries out what a recount asked for (recountStep.ts). */
  private apply(e: RecountEffect): void {
    switch (e.kind) {
      case 'ok':
        this.ok(e.step);
        break;
      case 'failed':
        this.recountFailed(e.step, e.what, e.err);
        break;
      case 'succeeded':
        this.recountFailures = 0;
        break;
      case 'recount':
        this.requestRecount(e.cause);
        break;
      case 'retry-in':
        this.recountRetry.schedule(e.ms);
        break;
      case 'backoff-ends-in':
        this.backoffEnd.schedule(e.ms);
        break;
      case 'reconcile-in':
        this.reconcileRetry.schedule(e.ms);
        break;
      case 'max-wait-in':
        this.maxWaitTimer.schedule(e.ms);
        break;
      case 'foreign-job':
        this.blockedByForeignJob = e.blocking;
        break;
      case 'gate-watch':
        if (!this.stopped) this.gateWatch.set(e.on);
        break;
    }
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

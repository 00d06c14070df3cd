// Watches Jobs labelled app=<TRAINING_NAME> in one namespace and reports the events that can end a run
// (finished, being deleted, deleted) or need a reconcile at once (added: a cancelled run's create that landed
// late, whose pod would otherwise train on a released batch until the next periodic pass). JobWatches keeps one per namespace that holds work: the configured one
// and the open run's, which differ after TRAINING_NAMESPACE changed while a run trained.
// list → watch from its resourceVersion → on a closed stream watch again; on 410 Gone / Expired or any
// error, list again after a back-off. client-node 1.4's Watch has no client-side timeout, so a stream that
// hangs without closing is aborted after WATCH_MAX_MS.
import { jobOutcome } from '../core/jobOutcome.js';
import { retryDelayMs } from '../core/backoff.js';
import { interruptibleSleep, type Timers } from '../core/timers.js';
import type { JobsApi } from '../kube/jobs.js';
import type { WatchHandle } from '../kube/watch.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { V1Job } from '@kubernetes/client-node';

// The server closes a watch after timeoutSeconds=300; 330 s leaves it room before we give up on the socket.
const WATCH_MAX_MS = 330_000;

export class JobWatch {
  private stopped = false;
  private handle: WatchHandle | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly jobs: JobsApi,
    readonly namespace: string,
    private readonly timers: Timers,
    private readonly logger: Logger,
    /** A Job appeared, finished or disappeared: something to reconcile. */
    private readonly onChange: () => void,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.handle?.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        let { resourceVersion } = await this.jobs.list(this.namespace, this.jobs.instance.selector);
        failures = 0;
        // Anything may have happened while we were not watching.
        this.onChange();
        let expired = false;
        while (!this.stopped && !expired) {
          const handle = await this.jobs.watch(
            this.namespace,
            this.jobs.instance.selector,
            resourceVersion,
            (type, obj) => {
              const job = obj as V1Job & { code?: number; reason?: string };
              if (type === 'ERROR') {
                if (job.code === 410 || job.reason === 'Expired' || job.reason === 'Gone') expired = true;
                return;
              }
              if (job.metadata?.resourceVersion) resourceVersion = job.metadata.resourceVersion;
              if (
                type === 'DELETED' ||
                type === 'ADDED' ||
                (type !== 'BOOKMARK' && (jobOutcome(job).finished || job.metadata?.deletionTimestamp))
              )
                this.onChange();
            },
          );
          this.handle = handle;
          const opened = this.timers.now();
          const timer = this.timers.setTimeout(() => handle.abort(), WATCH_MAX_MS);
          const err = await handle.done;
          this.timers.clearTimeout(timer);
          this.handle = null;
          if (err && !this.stopped) throw err;
          // A server (or proxy) that closes every watch at once must not turn this into a busy loop.
          if (this.timers.now() - opened < 1000 && !this.stopped) await interruptibleSleep(this.timers, 1000).done;
        }
      } catch (err: unknown) {
        if (this.stopped) break;
        failures++;
        const delay = retryDelayMs(failures);
        this.logger.warn(
          { namespace: this.namespace, err: errorMessage(err), retryInMs: delay },
          'Job watch failed; listing again',
        );
        const pause = interruptibleSleep(this.timers, delay);
        this.wake = pause.wake;
        await pause.done;
        this.wake = null;
      }
    }
  }
}

/** One JobWatch per namespace that holds work; the set follows what the reconciler reports. */
export class JobWatches {
  private readonly watches = new Map<string, JobWatch>();
  private stopped = false;

  constructor(private readonly make: (namespace: string) => JobWatch) {}

  /** Starts a watch for each namespace not yet watched and stops those no longer listed. */
  ensure(namespaces: readonly string[]): void {
    if (this.stopped) return;
    for (const ns of namespaces) {
      if (this.watches.has(ns)) continue;
      const w = this.make(ns);
      this.watches.set(ns, w);
      w.start();
    }
    for (const [ns, w] of this.watches) {
      if (namespaces.includes(ns)) continue;
      this.watches.delete(ns);
      void w.stop();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.watches.values()].map((w) => w.stop()));
    this.watches.clear();
  }
}

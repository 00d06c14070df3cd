// Prometheus metrics, one registry per controller instance (no prom-client global), so tests can run several.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RECOUNT_CAUSES } from '../core/recountCauses.js';
import { SKIP_REASONS } from '../core/decide.js';
import type { Health } from '../core/health.js';
import type { RunState } from '../core/run.js';

// Every label value a counter can take, created at 0 with the registry: a series that appears only at its
// first increment makes `increase(runs_finished_total{state="failed"}[10m]) > 0` miss the first failure after
// a restart (issue #15).
const FINISHED_STATES: readonly RunState[] = ['succeeded', 'failed', 'lost', 'cancelled'];

export type Metrics = ReturnType<typeof createMetrics>;

/** What some gauges read when scraped, so they are true at that moment and not as of the last event. */
export interface MetricSources {
  /** The bounded pending count (db/annotations.ts countPending); the gate makes recounts rare, so it runs per scrape. */
  countPending?: () => Promise<number>;
  /** Runs open now (submitting or running: 0 or 1, a unique index), so an alert can tell "waiting" from "stuck". */
  countOpenRuns?: () => Promise<number>;
  /** What /readyz answers now (health.ts readiness): an alert sees every reason it names, not only some. */
  ready?: () => boolean;
  /** The cluster's last answer (health.ts); null in print mode, and then no cluster series exist. */
  health?: Pick<Health, 'cluster'>;
  /** When the last run succeeded (ms since the epoch, null if none ever), read from the database when scraped:
   * a restart does not reset it, so "no success in a day" holds across restarts. */
  lastSuccessAt?: () => Promise<number | null>;
  /** package.json's version, for build_info. */
  version?: string;
  /** TRAINING_NAME: a label on every series, so two controllers scraped as one job stay apart in the alerts. */
  trainingName?: string;
}

// A scrape must not hang on a database that does not answer (Prometheus' default scrape_timeout is 10 s, and
// the pool may wait 10 s for a connection): after 1 s the pending gauge keeps its last value. The count itself
// takes ~1 ms through the partial index.
const SCRAPE_COUNT_TIMEOUT_MS = 1_000;

export function createMetrics(now: () => number = Date.now, sources: MetricSources = {}) {
  const registry = new Registry();
  // Every series, the default ones too: the alert rules aggregate by it (found by review: two controllers
  // scraped as one job made every max() alert fire only when both were broken).
  if (sources.trainingName) registry.setDefaultLabels({ training_name: sources.trainingName });
  // Unprefixed (process_*, nodejs_*): the names the standard Node.js dashboards and alerts look for.
  collectDefaultMetrics({ register: registry });
  const started = now();
  new Gauge({
    name: 'training_controller_build_info',
    help: 'Always 1; the version label says which build runs',
    labelNames: ['version'] as const,
    registers: [registry],
  }).set({ version: sources.version ?? 'unknown' }, 1);
  const m = {
    registry,
    ...scrapedGauges(registry, sources),
    ...listenerMetrics(registry, now, started),
    ...loopCounters(registry, now),
    ...notificationMetrics(registry, now, started),
    threshold: new Gauge({ name: 'training_controller_threshold', help: 'TRAINING_THRESHOLD', registers: [registry] }),
    ready: new Gauge({
      name: 'training_controller_ready',
      help: '1 when /readyz answers ready, 0 while it names a reason (a step failing, row-level security hiding rows, the listener or the cluster down)',
      registers: [registry],
      collect() {
        if (sources.ready) this.set(sources.ready() ? 1 : 0);
      },
    }),
    paused: new Gauge({
      name: 'training_controller_paused',
      help: '1 while paused by `training-controller pause` (as of the last recount: a pause NOTIFYs one at once)',
      registers: [registry],
    }),
    runPodWaiting: new Gauge({
      name: 'training_controller_run_pod_waiting',
      help: "Pods of the open run's Job that cannot start, by reason (CreateContainerConfigError, ImagePullBackOff, Unschedulable, ...)",
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
  };
  if (sources.health?.cluster) clusterGauges(registry, sources.health.cluster, started);
  return m;
}

/** What the loop did, by cause, reason and outcome; every known label value exported at 0 from the start. */
function loopCounters(registry: Registry, now: () => number) {
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  const c = {
    recounts: counter('training_controller_recounts_total', 'Recounts of pending annotations, by what caused them', [
      'cause',
    ] as const),
    dispatches: counter(
      'training_controller_dispatches_total',
      'Runs started (annotations claimed and a Job submitted)',
    ),
    skips: counter('training_controller_dispatch_skips_total', 'A trigger fired but no run started, by reason', [
      'reason',
    ] as const),
    runsFinished: counter('training_controller_runs_finished_total', 'Runs that ended, by final state', [
      'state',
    ] as const),
    createLatency: new Histogram({
      name: 'training_controller_job_create_seconds',
      help: 'Duration of Job create requests to the API server',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    runDuration: new Histogram<'state'>({
      name: 'training_controller_run_duration_seconds',
      help: 'Time from a run claiming its annotations to its recorded end, by final state',
      labelNames: ['state'] as const,
      // A cancel or a rejected Job ends in seconds; training takes minutes to the Job's 12 h deadline.
      buckets: [10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400],
      registers: [registry],
    }),
    annotationsTrained: counter(
      'training_controller_annotations_trained_total',
      'Annotations marked used by a succeeded run (those un-verified during training are released, not counted)',
    ),
  };
  for (const cause of RECOUNT_CAUSES) c.recounts.inc({ cause }, 0);
  for (const reason of SKIP_REASONS) c.skips.inc({ reason }, 0);
  for (const state of FINISHED_STATES) {
    c.runsFinished.inc({ state }, 0);
    c.runDuration.zero({ state });
  }
  /** A run's end was recorded (by this replica: the UPDATE that moved it said so), counted once at that commit. */
  const noteRunFinished = (state: RunState, run: { createdAt: Date }): void => {
    c.runsFinished.inc({ state });
    c.runDuration.observe({ state }, Math.max(0, now() - run.createdAt.getTime()) / 1000);
  };
  /** A succeeded run's settle completed, here or after a restart: its annotations marked used, counted once. */
  const noteTrained = (trained: number): void => {
    if (trained > 0) c.annotationsTrained.inc(trained);
  };
  return { ...c, noteRunFinished, noteTrained };
}

/** NOTIFYs from verifications: rare by design (the gate), so their age is no liveness signal. */
function notificationMetrics(registry: Registry, now: () => number, started: number) {
  let lastNotificationAt: number | null = null;
  const notifications = new Counter({
    name: 'training_controller_notifications_total',
    help: 'NOTIFY messages received',
    registers: [registry],
  });
  const lastNotification = new Gauge({
    name: 'training_controller_last_notification_timestamp_seconds',
    help: 'When the last NOTIFY from a verification arrived (the process start if none yet). Rare by design (the notification gate): not a liveness signal, see listener_last_alive_timestamp_seconds',
    registers: [registry],
    collect() {
      this.set((lastNotificationAt ?? started) / 1000);
    },
  });
  const noteNotification = (): void => {
    lastNotificationAt = now();
    notifications.inc();
  };
  return { notifications, lastNotification, noteNotification };
}

/** Gauges read from the database when scraped; on an error or a slow answer each keeps its last value. */
function scrapedGauges(registry: Registry, sources: MetricSources) {
  const scraped = (name: string, help: string, read: (() => Promise<number>) | undefined) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        if (!read) return;
        const value = await withTimeout(read(), SCRAPE_COUNT_TIMEOUT_MS).catch(() => null);
        if (value !== null) this.set(value);
      },
    });
  return {
    pending: scraped(
      'training_controller_pending_annotations',
      'Verified annotations not yet claimed, counted when scraped (up to the threshold); on a database error, the last value',
      sources.countPending,
    ),
    openRuns: scraped(
      'training_controller_open_runs',
      'Runs submitting or running, read when scraped (at most 1); on a database error, the last value',
      sources.countOpenRuns,
    ),
    lastSuccess: scraped(
      'training_controller_last_success_timestamp_seconds',
      'When the last run succeeded (0 if none ever), read from the database when scraped, so a restart keeps it; on a database error, the last value',
      sources.lastSuccessAt && (async () => ((await sources.lastSuccessAt?.()) ?? 0) / 1000),
    ),
  };
}

/** The LISTEN connection, judged by its own liveness ping (listener.ts), not by verification traffic. */
function listenerMetrics(registry: Registry, now: () => number, started: number) {
  let aliveAt: number | null = null;
  return {
    listenerConnected: new Gauge({
      name: 'training_controller_listener_connected',
      help: '1 while the LISTEN connection is subscribed and its liveness ping comes back; 0 while it reconnects',
      registers: [registry],
    }),
    listenerLost: new Counter({
      name: 'training_controller_listener_lost_total',
      help: 'Times the LISTEN connection was lost (killed, network, or its liveness ping missing); a reconnect may take only milliseconds, too short for listener_connected to show 0 at a scrape',
      registers: [registry],
    }),
    listenerLastAlive: new Gauge({
      name: 'training_controller_listener_last_alive_timestamp_seconds',
      help: 'When the LISTEN connection last proved it delivers notifications (its own ping came back, or it subscribed; the process start if never); at most LISTEN_CHECK_INTERVAL_MS ago when healthy',
      registers: [registry],
      collect() {
        this.set((aliveAt ?? started) / 1000);
      },
    }),
    /** The LISTEN connection delivered its liveness ping (or subscribed). */
    noteListenerAlive(): void {
      aliveAt = now();
    },
  };
}

/** Whether the API server answers, as /readyz sees it (health.cluster, written by every Kubernetes call). */
function clusterGauges(registry: Registry, cluster: NonNullable<Health['cluster']>, started: number) {
  new Gauge({
    name: 'training_controller_cluster_reachable',
    help: '1 when the last request to the Kubernetes API server succeeded, 0 when it failed or none has yet',
    registers: [registry],
    collect() {
      this.set(cluster.error === null && cluster.okAt !== null ? 1 : 0);
    },
  });
  new Gauge({
    name: 'training_controller_cluster_last_answer_timestamp_seconds',
    help: 'When the Kubernetes API server last answered a request (the process start if never); the reconcile lists Jobs every RECONCILE_INTERVAL_SECONDS',
    registers: [registry],
    collect() {
      this.set((cluster.okAt ?? started) / 1000);
    },
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

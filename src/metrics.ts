// Prometheus metrics, one registry per controller instance (no prom-client global), so tests can run several.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RECOUNT_CAUSES } from './recountCauses.js';
import { SKIP_REASONS } from './decide.js';
import type { RunState } from './runs.js';

// Every label value a counter can take, created at 0 with the registry: a series that appears only at its
// first increment makes `increase(runs_finished_total{state="failed"}[10m]) > 0` miss the first failure after
// a restart (issue #15).
const FINISHED_STATES: readonly RunState[] = ['succeeded', 'failed', 'lost', 'cancelled'];

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(now: () => number = Date.now) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'training_controller_' });
  let lastNotificationAt: number | null = null;
  const started = now();
  const m = {
    registry,
    pending: new Gauge({
      name: 'training_controller_pending_annotations',
      help: 'Verified annotations not yet claimed, as of the last recount (counted up to the threshold)',
      registers: [registry],
    }),
    threshold: new Gauge({ name: 'training_controller_threshold', help: 'TRAINING_THRESHOLD', registers: [registry] }),
    paused: new Gauge({
      name: 'training_controller_paused',
      help: '1 while paused by `training-controller pause` (as of the last recount: a pause NOTIFYs one at once)',
      registers: [registry],
    }),
    notifications: new Counter({
      name: 'training_controller_notifications_total',
      help: 'NOTIFY messages received',
      registers: [registry],
    }),
    recounts: new Counter({
      name: 'training_controller_recounts_total',
      help: 'Recounts of pending annotations, by what caused them',
      labelNames: ['cause'] as const,
      registers: [registry],
    }),
    dispatches: new Counter({
      name: 'training_controller_dispatches_total',
      help: 'Runs started (annotations claimed and a Job submitted)',
      registers: [registry],
    }),
    skips: new Counter({
      name: 'training_controller_dispatch_skips_total',
      help: 'Threshold reached but no run started, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    runsFinished: new Counter({
      name: 'training_controller_runs_finished_total',
      help: 'Runs that ended, by final state',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    createLatency: new Histogram({
      name: 'training_controller_job_create_seconds',
      help: 'Duration of Job create requests to the API server',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    listenerConnected: new Gauge({
      name: 'training_controller_listener_connected',
      help: '1 while the LISTEN connection is up',
      registers: [registry],
    }),
    sinceNotification: new Gauge({
      name: 'training_controller_seconds_since_last_notification',
      help: 'Seconds since the last NOTIFY (since start if none): a silently dead LISTEN shows as a steady climb while verifications go on',
      registers: [registry],
      collect() {
        this.set((now() - (lastNotificationAt ?? started)) / 1000);
      },
    }),
    noteNotification(): void {
      lastNotificationAt = now();
      m.notifications.inc();
    },
  };
  for (const cause of RECOUNT_CAUSES) m.recounts.inc({ cause }, 0);
  for (const reason of SKIP_REASONS) m.skips.inc({ reason }, 0);
  for (const state of FINISHED_STATES) m.runsFinished.inc({ state }, 0);
  return m;
}

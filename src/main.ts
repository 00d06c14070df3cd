// The composition root: builds every adapter from the Config and starts them in order; stop() undoes it in
// reverse. Nothing else creates a pool, a timer or a client.
//
// Start: template and cluster configuration (fail fast, nothing started yet) → database (embedded or
//        DATABASE_URL) → schema → HTTP → controller → Job watch → listener (its first `connected` triggers the
//        startup recount).
// Stop:  listener (no new notifications) → watch → Kubernetes requests in flight aborted → controller (the
//        in-flight step finishes: a dispatch commits or rolls back) → HTTP → pool → embedded server.
import type { V1Job } from '@kubernetes/client-node';
import type { Config, DispatchMode } from './core/config.js';
import { Controller } from './loop/controller.js';
import { newHealth, readiness, type Health, type ReadinessLimits } from './core/health.js';
import { startHttp, type HttpServer } from './ops/http.js';
import { JobWatch, JobWatches } from './loop/jobWatch.js';
import { createJobsApi, lateCreateWindowMs, type JobsApi } from './kube/jobs.js';
import type { ClusterConfig } from './kube/clusterConfig.js';
import { CHANNEL, Listener } from './loop/listener.js';
import type { Logger } from './core/logger.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { countPending } from './db/annotations.js';
import { safeUrl } from './core/redact.js';
import { lastSuccessAt, openRun } from './db/runs.js';
import { listenApplicationName } from './db/pool.js';
import { packageVersion } from './core/paths.js';
import { instanceNamed, type Instance } from './core/instance.js';
import { checkOnCluster } from './kube/templateCheck.js';
import type { Presence } from './db/presence.js';
import { claimSchema, openDatabase, precheck, refuseAnotherName, type Cleanup, type Database } from './startup.js';
import { realTimers, type Timers } from './core/timers.js';
import { maxWaitOf } from './core/triggers.js';
import { publishSettings, settingsOf } from './db/control.js';

/** Logged once the service is up and listening (tests and scripts/container-test.sh wait for it). */
export const LISTENING = 'Listening for verified annotations';

export interface Service {
  config: Config;
  mode: DispatchMode;
  httpPort: number;
  health: Health;
  metrics: Metrics;
  controller: Controller;
  /** Idempotent: every call returns the same promise. */
  stop(): Promise<void>;
}

interface Cluster {
  mode: DispatchMode;
  jobs: JobsApi | null;
  namespace: string;
  instance: Instance;
}

function connectCluster(config: Config, cluster: ClusterConfig | null, logger: Logger): Cluster {
  const mode: DispatchMode = cluster ? config.dispatchMode : 'print';
  const instance = instanceNamed(config.trainingName);
  const jobs: JobsApi | null = cluster ? createJobsApi(cluster, config.kubeRequestTimeoutMs, instance) : null;
  const namespace = cluster?.namespace ?? (config.trainingNamespace || 'default');
  if (!cluster) {
    logger.warn(
      'No Kubernetes configuration found (KUBECONFIG, ~/.kube/config, in-cluster): nothing will be submitted or claimed; each Job that would be submitted is printed instead',
    );
  } else {
    logger.info({ cluster: jobs?.server, namespace, source: cluster.source, mode }, 'Kubernetes configuration loaded');
  }
  return { mode, jobs, namespace, instance };
}

interface Parts {
  config: Config;
  logger: Logger;
  timers: Timers;
  db: Database;
  template: V1Job;
  cluster: Cluster;
  health: Health;
  metrics: Metrics;
  /** This service's lock on its schema (db/presence.ts). */
  presence: Pick<Presence, 'conflict'>;
}

function buildController(p: Parts): { controller: Controller; watches: JobWatches | null } {
  const { config, logger, timers, health, metrics, cluster } = p;
  const { jobs, mode, namespace } = cluster;
  const onClusterAnswer = (error: string | null): void => {
    if (!health.cluster) return;
    health.cluster.error = error;
    if (error === null) health.cluster.okAt = timers.now();
  };
  const createLandsWithinMs = lateCreateWindowMs(config);
  const submitDeps = {
    pool: p.db.pool,
    tables: p.db.tables,
    template: p.template,
    logger,
    metrics,
    chunkRows: config.chunkRows,
    stopping: () => controller.stopping,
    onClusterAnswer,
  };
  const watches =
    jobs && mode === 'kubernetes'
      ? new JobWatches((ns) => new JobWatch(jobs, ns, timers, logger, () => controller.requestReconcile()))
      : null;
  const controller: Controller = new Controller({
    config,
    pool: p.db.pool,
    logger,
    timers,
    metrics,
    health,
    dispatcher: {
      ...submitDeps,
      config,
      jobs,
      mode,
      namespace,
      instance: p.cluster.instance,
      conflict: () => p.presence.conflict,
      maxWait: maxWaitOf(config),
      createLandsWithinMs,
      now: () => timers.now(),
    },
    // A create attempt may be in flight for the whole request timeout (+250 ms for the clocks of two
    // replicas). Should a slow server still create the Job after that, the retry's 409 adopts it by its label.
    reconciler: jobs
      ? {
          ...submitDeps,
          jobs,
          createLeaseMs: config.kubeRequestTimeoutMs + 250,
          createLandsWithinMs,
          now: () => timers.now(),
        }
      : null,
    watchNamespaces: (namespaces) => watches?.ensure(namespaces),
  });
  return { controller, watches };
}

function readinessLimits(config: Config): ReadinessLimits {
  return {
    // Recounts happen at least every poll; three missed polls means the loop is stuck.
    recountMaxAgeMs:
      config.pollIntervalSeconds > 0 ? config.pollIntervalSeconds * 3000 + 30_000 : Number.POSITIVE_INFINITY,
    clusterMaxAgeMs: config.reconcileIntervalSeconds * 3000 + config.kubeRequestTimeoutMs,
  };
}

function startServer(p: Parts): Promise<HttpServer> {
  const { config, timers } = p;
  return startHttp(config.httpPort, p.health, p.metrics, readinessLimits(config), () => timers.now(), p.logger);
}

function createListener(p: Parts, controller: Controller, httpPort: number): Listener {
  const { config, logger, health, metrics } = p;
  const url = config.listenDatabaseUrl || p.db.url;
  const up = (): void => {
    health.listenerConnected = true;
    metrics.listenerConnected.set(1);
    metrics.noteListenerAlive();
  };
  const connected = (initial: boolean, proven: boolean): void => {
    // An unproven subscription (its predecessor's ping never came back) is up only once a ping arrives.
    if (proven) up();
    if (initial)
      logger.info(
        { database: safeUrl(url), threshold: config.trainingThreshold, mode: p.cluster.mode, httpPort },
        LISTENING,
      );
    controller.requestRecount(initial ? 'startup' : 'reconnect');
  };
  const disconnected = (): void => {
    if (health.listenerConnected) metrics.listenerLost.inc();
    health.listenerConnected = false;
    metrics.listenerConnected.set(0);
  };
  const ping = async (payload: string): Promise<void> => {
    await p.db.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
  };
  const handlers = {
    notification: () => controller.notification(),
    control: () => controller.control(),
    connected,
    disconnected,
    ping,
    alive: up,
  };
  const urlFile = config.listenDatabaseUrl ? config.listenDatabaseUrlFile : '';
  const name = listenApplicationName(config.annotationsSchema);
  return new Listener(url, logger, p.timers, handlers, config.listenCheckIntervalMs, urlFile, name);
}

async function start(config: Config, logger: Logger, timers: Timers, cleanup: Cleanup): Promise<Omit<Service, 'stop'>> {
  const { template, cluster: clusterConfig } = await precheck(config);
  const cluster = connectCluster(config, clusterConfig, logger);
  // Before the database: a template the cluster refuses is exit 2 before anything is opened.
  if (cluster.jobs) {
    const source = config.jobTemplateFile ? `JOB_TEMPLATE_FILE ${config.jobTemplateFile}` : 'TRAINING_IMAGE';
    const unchecked = await checkOnCluster(cluster.jobs, template, source);
    if (unchecked)
      logger.warn(
        { err: unchecked },
        'Could not have the API server check the Job template; starting anyway (its values were checked offline, but a field the client library does not know would be dropped from each Job unnoticed: restart once the API server answers to have it checked)',
      );
  }
  const db = await openDatabase(config, logger, cleanup);
  const { presence, others } = await claimSchema(config, db, logger, timers, cleanup, (message) => {
    // Only after a lost connection (the database restarted): the other name started meanwhile. No run starts
    // (dispatcher.ts), /readyz and the TrainingControllerNotReady alert say why, until an operator stops one.
    if (message) {
      logger.error({ err: message }, 'Another TRAINING_NAME serves this schema');
      health.failing.presence = message;
    } else {
      logger.info('No other TRAINING_NAME serves this schema any more');
      delete health.failing.presence;
    }
  });
  await refuseAnotherName(config, db, cluster.jobs, logger, others);
  // For `status`, which would otherwise show its own shell's threshold and back-off (issue #15).
  await publishSettings(db.pool, db.tables, settingsOf(config, cluster.mode, cluster.namespace));
  const health = newHealth(clusterConfig !== null);
  const metrics = createMetrics(() => timers.now(), {
    health,
    countPending: () => countPending(db.pool, db.tables, config.trainingThreshold),
    countOpenRuns: async () => ((await openRun(db.pool, db.tables)) ? 1 : 0),
    ready: () => readiness(health, timers.now(), readinessLimits(config)).ready,
    lastSuccessAt: () => lastSuccessAt(db.pool, db.tables),
    version: packageVersion(),
    trainingName: config.trainingName,
  });
  const parts: Parts = { config, logger, timers, db, template, cluster, health, metrics, presence };
  const { controller, watches } = buildController(parts);
  const http = await startServer(parts);
  cleanup.push(() => http.close());
  const listener = createListener(parts, controller, http.port);
  cleanup.push(() => controller.stop());
  // Before the controller: a create in flight is abandoned (the run stays `submitting`, and the next
  // start creates it under the same name) rather than held for up to KUBE_REQUEST_TIMEOUT_MS.
  const { jobs } = cluster;
  if (jobs) cleanup.push(async () => jobs.close());
  if (watches) cleanup.push(() => watches.stop());
  cleanup.push(() => listener.stop());
  controller.start();
  watches?.ensure([cluster.namespace]);
  listener.start();
  return { config, mode: cluster.mode, httpPort: http.port, health, metrics, controller };
}

export async function startService(config: Config, logger: Logger, timers: Timers = realTimers): Promise<Service> {
  const cleanup: Cleanup = [];
  const undo = async () => {
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  };
  try {
    const service = await start(config, logger, timers, cleanup);
    let stopping: Promise<void> | null = null;
    return { ...service, stop: () => (stopping ??= undo()) };
  } catch (err: unknown) {
    await undo();
    throw err;
  }
}

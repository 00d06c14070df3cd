// The composition root: builds every adapter from the Config and starts them in order; stop() undoes it in
// reverse. Nothing else creates a pool, a timer or a client.
//
// Start: template (fail fast) → database (embedded or DATABASE_URL) → schema → cluster → HTTP → controller
//        → Job watch → listener (its first `connected` triggers the startup recount).
// Stop:  listener (no new notifications) → watch → Kubernetes requests in flight aborted → controller (the
//        in-flight step finishes: a dispatch commits or rolls back) → HTTP → pool → embedded server.
import type { V1Job } from '@kubernetes/client-node';
import type { Config } from './config.js';
import { Controller } from './controller.js';
import { createPool } from './db.js';
import { realTimers, type Timers } from './timers.js';
import type { Mode } from './dispatcher.js';
import { startEmbedded, type Embedded } from './embedded.js';
import { newHealth, type Health } from './health.js';
import { startHttp, type HttpServer } from './http.js';
import { JobWatch, JobWatches } from './jobWatch.js';
import { checkTemplate, defaultTemplate, loadJobTemplate } from './jobTemplate.js';
import { createJobsApi, loadClusterConfig, type JobsApi } from './kubeJobs.js';
import { CHANNEL, Listener } from './listener.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { migrate } from './migrate.js';
import { countPending } from './pending.js';
import { openRun } from './runs.js';
import { safeUrl } from './redact.js';
import { invalidIndexWarning, missingPrivileges, missingSchema } from './schemaCheck.js';
import { tables } from './tables.js';

export interface Service {
  config: Config;
  mode: Mode;
  httpPort: number;
  health: Health;
  metrics: Metrics;
  controller: Controller;
  /** Idempotent: every call returns the same promise. */
  stop(): Promise<void>;
}

/** A startup problem the operator must fix (not a transient outage): logged as one line, exit 1. */
export class StartupError extends Error {
  override name = 'StartupError';
}

export async function resolveTemplate(config: Config): Promise<V1Job> {
  if (config.jobTemplateFile) return loadJobTemplate(config.jobTemplateFile);
  const template = defaultTemplate(config.trainingImage, config.jobTtlSeconds);
  checkTemplate(template, 'TRAINING_IMAGE');
  return template;
}

export async function startService(config: Config, logger: Logger, timers: Timers = realTimers): Promise<Service> {
  const template = await resolveTemplate(config);
  const cleanup: (() => Promise<unknown>)[] = [];
  const undo = async () => {
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  };
  try {
    let embedded: Embedded | null = null;
    let databaseUrl = config.databaseUrl;
    if (databaseUrl === '') {
      logger.info(
        { dir: config.embeddedDataDir, port: config.embeddedPort },
        'DATABASE_URL is not set: starting the embedded PostgreSQL (development only)',
      );
      embedded = await startEmbedded(config, logger);
      const e = embedded;
      cleanup.push(() => e.stop());
      databaseUrl = embedded.url;
    }
    const pool = createPool(databaseUrl, logger);
    cleanup.push(() => pool.end());
    const t = tables(config.annotationsSchema);
    if (embedded) await migrate(pool, logger, t);
    const missing = await missingSchema(pool, t);
    if (missing.length > 0)
      throw new StartupError(
        `database ${safeUrl(databaseUrl)} is not migrated for ANNOTATIONS_SCHEMA=${t.schema} (missing ${missing.join(', ')}): run \`training-controller migrate\` or apply migrations/*.sql with psql -v schema=${t.schema}`,
      );
    const lacking = await missingPrivileges(pool, t);
    if (lacking.length > 0)
      throw new StartupError(
        `the database role lacks privileges the service needs: ${lacking.join('; ')} (README "Privileges" has the GRANT script)`,
      );
    const indexWarning = await invalidIndexWarning(pool, t);
    if (indexWarning) logger.warn(indexWarning);

    const cluster = loadClusterConfig(config.kubeconfig, config.trainingNamespace);
    if (!cluster && config.production)
      throw new StartupError(
        'no Kubernetes configuration (KUBECONFIG, ~/.kube/config or an in-cluster service account) and NODE_ENV=production',
      );
    const mode: Mode = cluster ? config.dispatchMode : 'print';
    const jobs: JobsApi | null = cluster ? createJobsApi(cluster, config.kubeRequestTimeoutMs) : null;
    const namespace = cluster?.namespace ?? (config.trainingNamespace || 'default');
    if (!cluster) {
      logger.warn(
        'No Kubernetes configuration found (KUBECONFIG, ~/.kube/config, in-cluster): nothing will be submitted or claimed; each Job that would be submitted is printed instead',
      );
    } else {
      logger.info(
        { cluster: jobs?.server, namespace, source: cluster.source, mode },
        'Kubernetes configuration loaded',
      );
    }

    const health = newHealth(cluster !== null);
    const metrics = createMetrics(() => timers.now(), {
      health,
      countPending: () => countPending(pool, t, config.trainingThreshold),
      countOpenRuns: async () => ((await openRun(pool, t)) ? 1 : 0),
    });
    const onClusterAnswer = (error: string | null): void => {
      if (!health.cluster) return;
      health.cluster.error = error;
      if (error === null) health.cluster.okAt = timers.now();
    };
    const submitDeps = {
      pool,
      tables: t,
      template,
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
      pool,
      logger,
      timers,
      metrics,
      health,
      dispatcher: { ...submitDeps, config, jobs, mode, namespace, now: () => timers.now() },
      // A create attempt may be in flight for the whole request timeout (+250 ms for the clocks of two
      // replicas). Should a slow server still create the Job after that, the retry's 409 adopts it by its label.
      reconciler: jobs
        ? { ...submitDeps, jobs, createLeaseMs: config.kubeRequestTimeoutMs + 250, now: () => timers.now() }
        : null,
      watchNamespaces: (namespaces) => watches?.ensure(namespaces),
    });

    const limits = {
      // Recounts happen at least every poll; three missed polls means the loop is stuck.
      recountMaxAgeMs:
        config.pollIntervalSeconds > 0 ? config.pollIntervalSeconds * 3000 + 30_000 : Number.POSITIVE_INFINITY,
      clusterMaxAgeMs: config.reconcileIntervalSeconds * 3000 + config.kubeRequestTimeoutMs,
    };
    const http: HttpServer = await startHttp(config.httpPort, health, metrics, limits, () => timers.now(), logger);
    cleanup.push(() => http.close());

    const listener = new Listener(
      config.listenDatabaseUrl || databaseUrl,
      logger,
      timers,
      {
        notification: () => controller.notification(),
        connected: (initial) => {
          health.listenerConnected = true;
          metrics.listenerConnected.set(1);
          metrics.noteListenerAlive();
          if (initial)
            logger.info(
              {
                database: safeUrl(config.listenDatabaseUrl || databaseUrl),
                threshold: config.trainingThreshold,
                mode,
                httpPort: http.port,
              },
              'Listening for verified annotations',
            );
          controller.requestRecount(initial ? 'startup' : 'reconnect');
        },
        disconnected: () => {
          if (health.listenerConnected) metrics.listenerLost.inc();
          health.listenerConnected = false;
          metrics.listenerConnected.set(0);
        },
        alive: () => metrics.noteListenerAlive(),
        ping: async (payload) => {
          await pool.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
        },
      },
      config.listenCheckIntervalMs,
    );
    cleanup.push(() => controller.stop());
    // Before the controller: a create in flight is abandoned (the run stays `submitting`, and the next
    // start creates it under the same name) rather than held for up to KUBE_REQUEST_TIMEOUT_MS.
    if (jobs) cleanup.push(async () => jobs.close());
    if (watches) cleanup.push(() => watches.stop());
    cleanup.push(() => listener.stop());
    controller.start();
    watches?.ensure([namespace]);
    listener.start();

    let stopping: Promise<void> | null = null;
    return {
      config,
      mode,
      httpPort: http.port,
      health,
      metrics,
      controller,
      stop: () => (stopping ??= undo()),
    };
  } catch (err: unknown) {
    await undo();
    throw err;
  }
}

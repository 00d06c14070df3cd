// Issue 15: any failure to start npm start's PostgreSQL printed `undefined`; after a `kill -9` of the service
// its postgres kept running, and every later start failed. Against real embedded PostgreSQL, one data directory
// for the whole file (one initdb, ~1.5 s): a second start beside a live one is refused in one line; a kill -9
// leaves an orphan that the next start stops before starting its own; a port held by someone else is named.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspectLock, lockPid, processInfo } from '../src/dev/lock.js';
import { type ChildController, runCli, spawnCli } from './support/child.js';
import { FAST } from './support/harness.js';
import { freePort } from './support/ports.js';

/** `run` to its end (these all fail at startup), with the test settings. */
const cli = (env: Record<string, string>) =>
  runCli(['run'], { HOME: process.env.HOME ?? '/root', ...FAST, ...env }, 60_000);

describe('the embedded PostgreSQL of npm start: who holds it', () => {
  let dir = '';
  let env: Record<string, string> = {};
  let running: ChildController | null = null;
  const cluster = () => join(dir, 'pg');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tc-embedded-'));
    await chmod(dir, 0o755); // as root, PostgreSQL runs as `postgres`, which must reach it
    env = { EMBEDDED_DATA_DIR: dir, EMBEDDED_PORT: String(await freePort()), HOME: '/nonexistent' };
  });
  after(async () => {
    running?.proc.kill('SIGTERM');
    await running?.exited;
    const left = inspectLock(cluster());
    if (left.kind !== 'free' && left.kind !== 'stale') process.kill(left.pid, 'SIGINT');
    await rm(dir, { recursive: true, force: true });
  });

  it('a second start beside a running service: one line naming it, exit 1, the first untouched', async () => {
    running = spawnCli(['run'], env);
    await running.logs.waitForMsg('Listening for verified annotations', 60_000);
    const r = await cli(env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `^training-controller: the embedded PostgreSQL of ${cluster()} is in use by another training-controller \\(pid ${running.proc.pid}; its postgres is pid \\d+\\)`,
      ),
    );
    assert.equal(inspectLock(cluster()).kind, 'live');
  });

  it('after kill -9 of the service, the next start stops the orphan and starts its own', async () => {
    const orphan = lockPid(readFileSync(join(cluster(), 'postmaster.pid'), 'utf8'))!;
    running!.proc.kill('SIGKILL');
    await running!.exited;
    assert.notEqual(processInfo(orphan), null, 'kill -9 leaves its postgres running');
    assert.deepEqual(inspectLock(cluster()), { kind: 'orphan', pid: orphan });
    running = spawnCli(['run'], env);
    const warned = await running.logs.waitForMsg(/outlived its service/, 60_000);
    assert.equal(warned.pid, orphan);
    await running.logs.waitForMsg('Listening for verified annotations', 60_000);
    assert.equal(processInfo(orphan), null, 'the orphan is gone');
    assert.equal(inspectLock(cluster()).kind, 'live');
    running.proc.kill('SIGTERM');
    assert.equal((await running.exited).code, 0);
    running = null;
    assert.equal(inspectLock(cluster()).kind, 'free', 'a clean stop leaves no postgres behind');
  });

  it('a port held by another process: one line naming it, exit 1', async () => {
    const server: Server = createServer();
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    try {
      const r = await cli({ ...env, EMBEDDED_PORT: String(port) });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(
          `^training-controller: the embedded PostgreSQL cannot listen on 127\\.0\\.0\\.1:${port}: it is in use by pid ${process.pid} \\(`,
        ),
      );
      assert.doesNotMatch(r.stderr, /undefined/);
    } finally {
      server.close();
    }
  });
});

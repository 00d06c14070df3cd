// What a postmaster.pid in npm start's data directory means (issue 15): pure, from what /proc says.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classify, lockPid, type ProcessInfo } from '../../src/dev/lock.js';

const DIR = '/work/repo/.data/pg';
const PID_FILE = `4242\n${DIR}\n1795806155\n54329\n\n127.0.0.1\n  2165447        51\nready   \n`;
const postgres = (args: string[], cwd: string | null, ppid: number): ProcessInfo => ({ args, cwd, ppid });
const ours = postgres(['/x/native/bin/postgres', '-D', DIR, '-p', '54329'], DIR, 1);
const node: ProcessInfo = { args: ['node', '/work/repo/dist/src/cli.js', 'run'], cwd: '/work/repo', ppid: 100 };
const init: ProcessInfo = { args: ['/sbin/init'], cwd: '/', ppid: 0 };

describe('the embedded data directory lock', () => {
  it('reads the postmaster pid from the first line', () => {
    assert.equal(lockPid(PID_FILE), 4242);
    assert.equal(lockPid(null), null);
    assert.equal(lockPid('garbage\n'), null);
  });

  for (const [name, pidFile, postmaster, parent, expected] of [
    ['no postmaster.pid', null, null, null, { kind: 'free' }],
    ['a pid that is gone', PID_FILE, null, null, { kind: 'stale', pid: 4242 }],
    ['a pid reused by another program', PID_FILE, postgres(['vim'], '/home', 1), init, { kind: 'stale', pid: 4242 }],
    [
      'a postgres of another directory',
      PID_FILE,
      postgres(['postgres', '-D', '/var/lib/pg'], null, 1),
      init,
      { kind: 'stale', pid: 4242 },
    ],
    ['ours, reparented to init', PID_FILE, ours, init, { kind: 'orphan', pid: 4242 }],
    [
      'ours, its cwd only (argv unreadable)',
      PID_FILE,
      postgres(['postgres'], DIR, 1),
      init,
      { kind: 'orphan', pid: 4242 },
    ],
    ['ours, run by a live node', PID_FILE, { ...ours, ppid: 777 }, node, { kind: 'live', pid: 4242, parent: 777 }],
  ] as const) {
    it(name, () => assert.deepEqual(classify(DIR, pidFile, postmaster, parent), expected));
  }
});

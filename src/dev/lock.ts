// Who holds the embedded PostgreSQL's data directory or port, and what to do about it. A `kill -9` of the
// service (or a closed terminal) leaves its postgres running, reparented to init; every later `npm start`
// then failed on postgres' `lock file "postmaster.pid" already exists`, printed as `undefined`.
//
// Decision: an orphan of OUR data directory is stopped and a fresh one started, not reused. Reusing it would
// mean running on a server this process did not start: it may listen on another EMBEDDED_PORT than the one
// configured now, and no one would stop it at our shutdown, so the next kill -9 leaves two generations of it.
// Stopping costs ~1 s. It is stopped with SIGINT, PostgreSQL's "fast" shutdown (pg_ctl's default): a clean
// checkpoint that ends any client still connected; SIGTERM ("smart") would wait forever on the psql the README
// has the reader open in a second terminal.
// A postmaster whose parent is a live node process belongs to a running service (a second `npm start` of the
// same checkout): it is never touched; the new one refuses in one line.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface ProcessInfo {
  /** argv, as the kernel has it. */
  args: string[];
  /** The working directory (postgres runs in its data directory), when readable. */
  cwd: string | null;
  ppid: number;
}

export type LockState =
  | { kind: 'free' }
  /** postmaster.pid names a process that is gone, or that is not a postgres of this directory (a reused pid). */
  | { kind: 'stale'; pid: number }
  /** A postgres of this directory whose service died (reparented to init or a subreaper). */
  | { kind: 'orphan'; pid: number }
  /** A postgres of this directory run by a live node process: another service. */
  | { kind: 'live'; pid: number; parent: number };

/** The postmaster's pid: the first line of postmaster.pid (the second is the data directory, the fourth the port). */
export function lockPid(pidFile: string | null): number | null {
  const pid = Number.parseInt(pidFile?.split('\n')[0] ?? '', 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

const isNode = (info: ProcessInfo | null): boolean =>
  !!info && /^node(js)?(\.exe)?$/.test(basename(info.args[0] ?? ''));

/** Pure: what a postmaster.pid in `dir` means, given what the system says of its pid and that pid's parent. */
export function classify(
  dir: string,
  pidFile: string | null,
  postmaster: ProcessInfo | null,
  parent: ProcessInfo | null,
): LockState {
  const pid = lockPid(pidFile);
  if (pid === null) return { kind: 'free' };
  const args = postmaster?.args ?? [];
  const ours =
    postmaster !== null && (postmaster.cwd === dir || args.some((a, i) => a === dir && args[i - 1] === '-D'));
  if (!ours) return { kind: 'stale', pid };
  if (isNode(parent)) return { kind: 'live', pid, parent: postmaster.ppid };
  return { kind: 'orphan', pid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: unknown) {
    // EPERM: it exists, and belongs to someone we may not signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What Linux's /proc (or, elsewhere, ps) says of a process; null when it does not exist. */
export function processInfo(pid: number): ProcessInfo | null {
  if (!alive(pid)) return null;
  try {
    if (existsSync('/proc/self/stat')) {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      let cwd: string | null = null;
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // another user's process: its argv still tells
      }
      return { args, cwd, ppid };
    }
    const out = execFileSync('ps', ['-o', 'ppid=,args=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    const [ppid = '0', ...args] = out.split(/\s+/);
    return { args, cwd: null, ppid: Number(ppid) };
  } catch {
    return null;
  }
}

/** The state of `dir`'s lock, as the system shows it now. */
export function inspectLock(dir: string): LockState {
  let pidFile: string | null = null;
  try {
    pidFile = readFileSync(join(dir, 'postmaster.pid'), 'utf8');
  } catch {
    return { kind: 'free' };
  }
  const pid = lockPid(pidFile);
  const postmaster = pid === null ? null : processInfo(pid);
  const parent = postmaster ? processInfo(postmaster.ppid) : null;
  return classify(dir, pidFile, postmaster, parent);
}

/** SIGINT (fast shutdown), then up to `waitMs` for the process to be gone. */
export async function stopOrphan(pid: number, waitMs = 15_000): Promise<void> {
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + waitMs;
  while (alive(pid)) {
    if (Date.now() > deadline)
      throw new Error(
        `an orphaned embedded PostgreSQL (pid ${pid}) did not stop within ${waitMs / 1000} s of SIGINT: kill it`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The inode of the socket listening on 127.0.0.1/0.0.0.0/:: at `port`, from /proc/net/tcp{,6}. */
function listeningInode(port: number): string | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is the tenth field.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A') return f[9] ?? null;
    }
  }
  return null;
}

/** `pid N (command line)` of the process listening on `port`, when this user can see it (Linux only). */
export function portHolder(port: number): string | null {
  const inode = listeningInode(port);
  if (!inode) return null;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== `socket:[${inode}]`) continue;
      } catch {
        continue;
      }
      const args = processInfo(Number(pid))?.args.join(' ') ?? '?';
      return `pid ${pid} (${args.length > 100 ? `${args.slice(0, 99)}…` : args})`;
    }
  }
  return null;
}

// The CLI: the controller as its own process (as deployed) for signal and crash tests, and one command at a
// time, in this process or as its own.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { runCommandLine, type CliIo } from '../../src/cli/program.js';
import { packageRoot } from '../../src/core/paths.js';
import { FAST, LogCapture } from './harness.js';

export interface ChildController {
  proc: ChildProcess;
  logs: LogCapture;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function cliPath(): string {
  return join(packageRoot(), 'dist', 'src', 'cli.js');
}

export function spawnCli(args: string[], env: Record<string, string>): ChildController {
  const proc = spawn(process.execPath, [cliPath(), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...FAST, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = new LogCapture();
  const stderr: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    if (l.startsWith('{')) logs.write(`${l}\n`);
  });
  createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, logs, stderr, exited };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * One command of the CLI run to its end: its exit code and output (a failure is a result to assert on, not a
 * throw). In this process (cli/program.ts, as cli.ts calls it) for every command but `run`, whose service and
 * signal handlers own a process: a process per call cost ~0.15 s of CPU, and the suite makes dozens.
 * HOME points nowhere, so no ~/.kube/config is found unless KUBECONFIG says so.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  if ((args[0] ?? 'run') === 'run') return runCliProcess(args, env, timeoutMs);
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    env: { HOME: '/nonexistent', ...env },
    out: (text) => {
      stdout += text;
    },
    err: (text) => {
      stderr += text;
    },
    stdoutIsTty: false,
    readFile: (path) => readFileSync(path, 'utf8'),
    // The logs on stdout, as the process writes them (a stream: LOG_FORMAT=pretty pipes into it).
    logDestination: new Writable({
      write(chunk: Buffer | string, _encoding, done) {
        stdout += String(chunk);
        done();
      },
    }),
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${args.join(' ')}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([runCommandLine(args, io), timeout])
    .then((code) => ({ code, stdout, stderr }))
    .finally(() => clearTimeout(timer));
}

/** The CLI as its own process (dist/src/cli.js), for the exit code and output a process really gives. */
export function runCliProcess(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath(), ...args],
      { env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

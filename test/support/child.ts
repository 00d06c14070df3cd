// The controller as its own process (the CLI, as deployed), for signal and crash tests.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
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
 * One command of the CLI as its own process, run to its end: its exit code and output (a failure is a result
 * to assert on, not a throw). HOME points nowhere, so no ~/.kube/config is found unless KUBECONFIG says so.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
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

// The controller as its own process (the CLI, as deployed), for signal and crash tests.
import { spawn, type ChildProcess } from 'node:child_process';
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

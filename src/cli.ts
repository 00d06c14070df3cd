#!/usr/bin/env node
// training-controller <command> [flags]: the command line (cli/program.ts) bound to this process.
import { readFileSync } from 'node:fs';
import { runCommandLine } from './cli/program.js';

// `training-controller status | head -1`: a reader gone before the answer is written is no failure of ours (an
// unhandled EPIPE printed a stack trace); anything else on stdout still is.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});

const code = await runCommandLine(process.argv.slice(2), {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  stdoutIsTty: process.stdout.isTTY === true,
  readFile: (path) => readFileSync(path, 'utf8'),
});
// A failure exits now, as before: a pool or timer a failed command left behind must not hold the process.
// Success ends when nothing is left to do (run: when the service stops).
if (code !== 0) process.exit(code);

// `npm test`: runs every test file with node:test against a real PostgreSQL — the one in DATABASE_URL when
// given, otherwise an embedded one started here for the whole run (one initdb, ~1 s, instead of one per file).
// Each test gets its own database on it, a copy of one template migrated here once (test/support/db.ts).
// Extra arguments filter the files by substring.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { prepareEmbedded } from '../../src/dev/embeddedAsRoot.js';
import { errorMessage } from '../../src/core/errors.js';
import { packageRoot } from '../../src/core/paths.js';
import { createTemplate, dropStaleDatabases, TEMPLATE_ENV } from './db.js';
import { startOwnPostgres, type OwnPostgres } from './ownPostgres.js';

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return testFiles(path);
    return entry.endsWith('.test.js') ? [path] : [];
  });
}

const root = packageRoot();
const filters = process.argv.slice(2);
const files = testFiles(join(root, 'dist', 'test'))
  .filter((f) => filters.length === 0 || filters.some((p) => relative(root, f).includes(p.replace(/\.ts$/, ''))))
  .sort();

let own: OwnPostgres | null = null;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  try {
    const prepared = await prepareEmbedded();
    if (prepared?.staged)
      process.stdout.write(
        `# the postgres user cannot reach node_modules: PostgreSQL runs from a copy in ${prepared.staged}\n`,
      );
    // Six files at once held at most 47 connections (sampled on PostgreSQL 15, 2026-12-07); 200 leaves room
    // for TEST_CONCURRENCY above 6 on a machine with more cores.
    own = await startOwnPostgres({ max_connections: '200' });
  } catch (err: unknown) {
    // One line saying what to do, not a stack trace (each message names the fix).
    process.stderr.write(`npm test: cannot start the embedded PostgreSQL: ${errorMessage(err).split('\n')[0]}\n`);
    process.exit(1);
  }
  env.DATABASE_URL = own.url;
  process.stdout.write(
    `# Node ${process.version}, embedded PostgreSQL on port ${own.port} (set DATABASE_URL to use another server)\n`,
  );
} else {
  process.stdout.write(`# Node ${process.version}, PostgreSQL from DATABASE_URL (${new URL(env.DATABASE_URL).host})\n`);
}

// Databases of crashed runs (a killed `npm test` leaves its template and up to six files' databases) are
// dropped after an hour: the longest file takes ~30 s and a test times out at 4 min, so an hour-old database
// nobody is connected to belongs to no run still going on the shared server.
const STALE_AFTER_MS = 60 * 60_000;
const server = env.DATABASE_URL;
const stale = await dropStaleDatabases(server, STALE_AFTER_MS);
if (stale.length > 0) process.stdout.write(`# dropped ${stale.length} test databases left by earlier runs\n`);
const templateStarted = performance.now();
const template = await createTemplate(server).catch(async (err: unknown) => {
  process.stderr.write(`npm test: cannot migrate the template database: ${errorMessage(err)}\n`);
  await own?.destroy();
  process.exit(1);
});
env[TEMPLATE_ENV] = template.name;
process.stdout.write(`# migrated template ${template.name} in ${Math.round(performance.now() - templateStarted)} ms\n`);

// Files at a time: each uses its own database, and most of a file's time is spent waiting on the loop,
// PostgreSQL or a child process, so more files than cores keep both cores busy. On 2 cores (2026-12-07):
// 4 at a time took 78 s, 6 took 72–74 s, 8 took 68 s with the CPU near saturation (a timing test's margin is
// what that costs); 6 it is. TEST_CONCURRENCY overrides.
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 6);
const child = spawn(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=240000', ...files],
  {
    stdio: 'inherit',
    env,
  },
);
// Ctrl-C reaches the whole process group: the tests stop on their own; this process stays to drop the template.
// A signal sent to this process alone is passed on.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await template.drop().catch((err: unknown) => {
  process.stderr.write(`npm test: could not drop the template ${template.name}: ${errorMessage(err)}\n`);
});
await own?.destroy();
process.exit(code);

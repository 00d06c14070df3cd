// `npm test`: runs every test file with node:test against a real PostgreSQL — the one in DATABASE_URL when
// given, otherwise an embedded one started here for the whole run (one initdb, ~1 s, instead of one per file).
// Each test file creates its own database on it. Extra arguments filter the files by substring.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { prepareEmbedded } from '../../src/embeddedAsRoot.js';
import { errorMessage } from '../../src/errors.js';
import { packageRoot } from '../../src/paths.js';
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
    own = await startOwnPostgres();
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

// Two files at a time on this 2-core machine: each uses its own database, and the timing-sensitive
// assertions allow for a neighbour.
const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=240000', ...files], {
  stdio: 'inherit',
  env,
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await own?.destroy();
process.exit(code);

// The README is the front door (issue 23: what it does, the two commands, the shortest path to a cluster,
// links); docs/ holds the rest. Both must stay true to the code: the configuration table, the commands, the
// GRANTs, and every link between them.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';
import { COMMANDS } from '../src/cli/commands.js';
import { ENV_DEFAULTS } from '../src/core/config.js';
import { packageRoot } from '../src/core/paths.js';
import { readmeGrants } from './support/roles.js';

const root = packageRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const readme = read('README.md');
const DOCS = readdirSync(join(root, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .map((f) => `docs/${f}`);
/** The `## title` section of a markdown text, up to the next `## `. */
const sectionOf = (text: string, title: string) => text.split(/^## /m).find((s) => s.startsWith(title)) ?? '';
const section = (title: string) => sectionOf(readme, title);

/** GitHub's anchor of a heading: lowercased, punctuation dropped, spaces as hyphens. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replace(/ /g, '-');
const anchorsOf = (text: string) => new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => anchor(m[1] ?? '')));

describe('README and docs/', () => {
  it('the README is a front door of at most ~200 lines that links every page of docs/', () => {
    assert.ok(readme.split('\n').length <= 200, `${readme.split('\n').length} lines`);
    for (const doc of DOCS) assert.ok(readme.includes(`](${doc})`), `README links ${doc}`);
  });

  it('every relative link of the README and docs/ reaches a file, and its #anchor a heading there', () => {
    for (const from of ['README.md', ...DOCS]) {
      for (const [, target = ''] of read(from).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue;
        const [file = '', hash] = target.split('#');
        const path = file === '' ? from : normalize(join(dirname(from), file));
        assert.ok(existsSync(join(root, path)), `${from}: ${target} (no ${path})`);
        if (hash && path.endsWith('.md')) assert.ok(anchorsOf(read(path)).has(hash), `${from}: ${target} (no heading)`);
      }
    }
  });

  // Found by review: `npx training-controller` (README) ran the bin as a file, and each build made it anew without
  // its execute bit: `Permission denied` after any `npm start` once npx had run before.
  it('the bin the README runs with npx is executable after every build', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    const bin = pkg.bin['training-controller'] ?? '';
    assert.ok(statSync(join(root, bin)).mode & 0o111, `${bin} is executable`);
  });

  it('docs/migrations.md grants exactly what the tests grant the service role', () => {
    const sql = sectionOf(read('docs/migrations.md'), 'Privileges');
    const grants = [...sql.matchAll(/^GRANT .+?(?=;$)/gm)].map((m) => m[0]);
    // The same statements; the tests quote the schema as the code does ("public"), the docs need not.
    const unquoted = readmeGrants('training_controller').map((g) => g.replaceAll('"', ''));
    assert.deepEqual(grants, unquoted);
  });

  const rows = read('docs/configuration.md')
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split('|').map((c) => c.trim()))
    .map(([, variable, def]) => ({ variable: variable!.replaceAll('`', ''), def: def! }));

  it('docs/configuration.md lists every setting the code reads, and no other', () => {
    assert.deepEqual(rows.map((r) => r.variable).sort(), Object.keys(ENV_DEFAULTS).sort());
  });

  it('gives each setting the default the code has', () => {
    for (const { variable, def } of rows) {
      const code = ENV_DEFAULTS[variable] ?? '';
      if (variable === 'LISTEN_DATABASE_URL') continue; // documented as "DATABASE_URL", which is what it means
      if (code === '') assert.equal(def, '(none)', variable);
      else assert.equal(def, `\`${code}\``, variable);
    }
  });

  it('starts with the two commands that matter', () => {
    const first = readme
      .split(/^## /m)
      .slice(1, 3)
      .map((s) => s.split('\n')[0]);
    assert.deepEqual(first, ['Run it', 'Test it']);
    assert.match(section('Run it'), /npm ci && npm start/);
    assert.match(section('Test it'), /^npm test$/m);
  });

  it('names the CLI commands the CLI has', () => {
    for (const command of ['run', 'migrate', 'status', 'render-job']) assert.ok(command in COMMANDS, command);
    for (const command of Object.keys(COMMANDS))
      assert.match(section('Commands'), new RegExp(`\\| \`${command}`), command);
  });
});

// The README is the front door: its configuration table and commands must stay true to the code.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { COMMANDS } from '../src/cli/commands.js';
import { ENV_DEFAULTS } from '../src/core/config.js';
import { packageRoot } from '../src/core/paths.js';

const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
const section = (title: string) => readme.split(/^## /m).find((s) => s.startsWith(title)) ?? '';

describe('README', () => {
  const rows = section('Configuration')
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split('|').map((c) => c.trim()))
    .map(([, variable, def]) => ({ variable: variable!.replaceAll('`', ''), def: def! }));

  it('lists every setting the code reads, and no other', () => {
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

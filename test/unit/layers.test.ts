// docs/architecture.md "Layout": the import rules of src/ hold because `npm run check` fails when one is broken. This runs
// the project's own Biome configuration on small trees in a temporary directory: one that keeps every rule
// passes, and each violation (a layer importing upward, a static import of dev/, a cycle of type-only imports)
// fails with the rule's message.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packageRoot } from '../../src/core/paths.js';

const root = packageRoot();
const made: string[] = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** Lints a tree of `src/` files with the project's biome.jsonc; returns the exit code and what Biome printed. */
function lint(files: Record<string, string>): { code: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tc-layers-'));
  made.push(dir);
  copyFileSync(join(root, 'biome.jsonc'), join(dir, 'biome.jsonc'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, dirname(path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  const r = spawnSync(
    join(root, 'node_modules', '.bin', 'biome'),
    ['lint', '--vcs-enabled=false', '--max-diagnostics=50', 'src'],
    { cwd: dir, encoding: 'utf8' },
  );
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

const pure = 'export const x = 1;\n';

describe('layers: npm run check enforces the import rules of src/', () => {
  it('a tree that keeps the rules passes', () => {
    const r = lint({
      'src/core/a.ts': pure,
      'src/db/b.ts': "import { x } from '../core/a.js';\nexport const y = x;\n",
      'src/loop/c.ts': "import { y } from '../db/b.js';\nexport const z = y;\n",
      'src/startup.ts':
        "export async function start(): Promise<unknown> {\n  // biome-ignore lint/style/noRestrictedImports: the dynamic import is the point\n  return import('./dev/d.js');\n}\n",
      'src/dev/d.ts': "import { x } from '../core/a.js';\nexport const d = x;\n",
    });
    assert.equal(r.code, 0, r.output);
  });

  it('core/ importing a layer above it fails', () => {
    const r = lint({
      'src/core/a.ts': "import { y } from '../db/b.js';\nexport const x = y;\n",
      'src/db/b.ts': pure.replace('x', 'y'),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /core\/ is pure: it imports nothing of ours outside core\//);
  });

  it('db/ importing loop/ fails', () => {
    const r = lint({
      'src/db/b.ts': "import { z } from '../loop/c.js';\nexport const y = z;\n",
      'src/loop/c.ts': pure.replace('x', 'z'),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /db\/, kube\/ and ops\/ import only core\//);
  });

  it('a static import of dev/ from production code fails', () => {
    const r = lint({
      'src/cli/commands.ts': "import { d } from '../dev/d.js';\nexport const c = d;\n",
      'src/dev/d.ts': pure.replace('x', 'd'),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /dev\/ \(the embedded PostgreSQL\) is reached only through a dynamic import/);
  });

  it('an import cycle fails, type-only imports included', () => {
    const r = lint({
      'src/loop/a.ts': "import type { B } from './b.js';\nexport interface A { b?: B }\n",
      'src/loop/b.ts': "import type { A } from './a.js';\nexport interface B { a?: A }\n",
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /noImportCycles/);
  });
});

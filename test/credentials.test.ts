// Credentials from a mounted Secret (issue 23): DATABASE_URL_FILE starts the service, and a rotated password
// (the Secret's file rewritten, the role's password changed, its sessions ended by the DBA) is used without a
// restart, by the pool and by the LISTEN connection; neither password is ever logged. The test's own server:
// the shared one trusts every local connection, so a password would never be checked there.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { RECONNECTED } from '../src/loop/listener.js';
import { LISTENING } from '../src/main.js';
import { spawnCli, type ChildController } from './support/child.js';
import { runRows, verifyNew } from './support/db.js';
import { eventually, useOwnServer } from './support/harness.js';
import { createRole, readmeGrants, type TestRole } from './support/roles.js';

describe('DATABASE_URL_FILE, and a password rotated while the service runs', () => {
  const s = useOwnServer();
  let role: TestRole;
  let c: ChildController | null = null;
  const dir = mkdtempSync(join(tmpdir(), 'tc-secret-'));
  const file = join(dir, 'url');
  /** As the kubelet updates a mounted Secret: the new file renamed over the old one. */
  const writeSecret = (password: string) => {
    const u = new URL(role.url);
    u.password = password;
    writeFileSync(`${file}.new`, `${u.toString()}\n`);
    renameSync(`${file}.new`, file);
  };

  before(async () => {
    role = await createRole(s.db, readmeGrants);
    s.onCleanup(async () => {
      c?.proc.kill('SIGKILL');
      await c?.exited;
      await role.drop();
      rmSync(dir, { recursive: true, force: true });
    });
  });

  it('starts from the file, and after the rotation trains with the new password, logging neither', async () => {
    const { db, kube } = s;
    await db.pool.query(`ALTER ROLE ${role.name} PASSWORD 'first-secret-1'`);
    writeSecret('first-secret-1');
    c = spawnCli(['run'], {
      DATABASE_URL_FILE: file,
      KUBECONFIG: kube.kubeconfigPath,
      TRAINING_THRESHOLD: '5',
      POLL_INTERVAL_SECONDS: '0',
    });
    await c.logs.waitForMsg(LISTENING, 20_000);

    // The rotation: the new password in the role and in the Secret, then every session of the old one ended.
    await db.pool.query(`ALTER ROLE ${role.name} PASSWORD 'second-secret-2'`);
    writeSecret('second-secret-2');
    const from = c.logs.lines.length;
    await db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role.name]);
    await c.logs.waitForMsg(RECONNECTED, 30_000, from);

    await verifyNew(db.pool, 5); // the LISTEN connection hears it; the pool claims with new connections
    await eventually(() => kube.creates.length === 1, 'the Job after the rotation', 20_000);
    assert.equal((await runRows(db.pool))[0]?.annotation_count, 5);
    const sessions = await db.pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [
      role.name,
    ]);
    assert.ok(sessions.rows[0].n >= 2, 'the pool and the LISTEN connection, both with the new password');
    const everything = [...c.logs.lines.map((l) => JSON.stringify(l)), ...c.stderr].join('\n');
    assert.ok(!everything.includes('first-secret-1') && !everything.includes('second-secret-2'), 'a password logged');
  });
});

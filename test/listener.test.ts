// The LISTEN connection survives what production throws at it, and what it missed is made up by a recount.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, verifyNew, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { Listener, RECONNECTED } from '../src/loop/listener.js';
import { createLogger } from '../src/core/logger.js';
import { realTimers } from '../src/core/timers.js';
import {
  counterValue,
  eventually,
  killListener,
  LogCapture,
  startController,
  useOwnServer,
  useStack,
  type Running,
} from './support/harness.js';
import { TcpProxy } from './support/tcpProxy.js';

const recounts = (c: Running, cause: string) => counterValue(c, 'recounts', { cause });

/**
 * A database, an API server and a controller whose LISTEN connection (only that one) goes through a proxy the
 * test can cut or black-hole; the fallback poll is off, so nothing else recounts.
 */
function useProxiedListen(env: Record<string, string> = {}): {
  db: TestDb;
  kube: FakeKube;
  proxy: TcpProxy;
  c: Running;
} {
  const s = {} as { db: TestDb; kube: FakeKube; proxy: TcpProxy; c: Running };
  before(async () => {
    s.db = await freshDatabase();
    s.kube = await FakeKube.start();
    s.proxy = await TcpProxy.start(s.db.url);
    s.c = await startController(s.db.url, s.kube, {
      LISTEN_DATABASE_URL: s.proxy.via(s.db.url),
      POLL_INTERVAL_SECONDS: '0',
      ...env,
    });
  });
  after(async () => {
    await s.c?.stop();
    await s.proxy?.stop();
    await s.kube?.stop();
    await s.db?.drop();
  });
  return s;
}

describe('listener: backend killed with pg_terminate_backend', () => {
  const s = useStack({ POLL_INTERVAL_SECONDS: '0' });

  it('reconnects, recounts, and still dispatches on the next crossing', async () => {
    assert.equal(await killListener(s.db.pool), 1, 'exactly one LISTEN backend');
    await s.c.logs.waitForMsg(RECONNECTED, 10_000);
    await eventually(async () => (await recounts(s.c, 'reconnect')) >= 1, 'a reconnect recount');
    assert.equal(s.c.service.health.listenerConnected, true);
    await verifyNew(s.db.pool, 50);
    await eventually(() => s.kube.creates.length === 1, 'a Job after the reconnect', 10_000);
  });
});

describe('listener: a half-open LISTEN connection (socket kept, traffic dropped)', () => {
  const s = useProxiedListen({ LISTEN_CHECK_INTERVAL_MS: '500' });

  // README: "a dead or pooled LISTEN is noticed within two intervals" (issue #9, case 10).
  it('is noticed by its liveness ping, shown as disconnected, and replaced; what it missed is recounted', async () => {
    s.proxy.blackHole();
    const started = Date.now();
    await s.c.logs.waitForMsg(/^LISTEN connection delivers no notifications/, 5000);
    assert.equal(s.c.service.health.listenerConnected, false);
    assert.ok(
      Date.now() - started < 2500,
      `noticed after ${Date.now() - started} ms (two 500 ms intervals, plus slack)`,
    );
    await verifyNew(s.db.pool, 50); // its NOTIFY goes nowhere
    assert.equal(s.kube.creates.length, 0);
    s.proxy.clearBlackHole();
    await eventually(() => s.kube.creates.length === 1, 'a Job after the subscription was replaced', 20_000);
    // Up once its first ping comes back (an unproven subscription is not), which may follow the Job's recount.
    await eventually(() => s.c.service.health.listenerConnected, 'the new subscription proven', 5000);
  });
});

describe('listener: notifications lost while disconnected', () => {
  const s = useProxiedListen();

  it('are made up by the recount on reconnect', async () => {
    await s.proxy.cut();
    await eventually(() => !s.c.service.health.listenerConnected, 'the listener to notice the cut');
    await verifyNew(s.db.pool, 50); // its NOTIFY reaches no one
    assert.equal(s.kube.creates.length, 0);
    await s.proxy.restore();
    await eventually(() => s.kube.creates.length === 1, 'a Job after reconnecting', 20_000);
    assert.ok((await recounts(s.c, 'reconnect')) >= 1);
    // The Job came from the recount after the reconnect, not from some other recount while the LISTEN was cut.
    const reconnected = s.c.logs.lines.findIndex((l) => l.msg === RECONNECTED);
    const triggered = s.c.logs.lines.findIndex((l) => /^Triggering training/.test(l.msg));
    assert.ok(
      reconnected >= 0 && triggered > reconnected,
      `reconnected at line ${reconnected}, triggered at ${triggered}`,
    );
  });
});

describe('listener: the database stopped for 8 s and started again', () => {
  const s = useOwnServer();
  let c: Running;
  before(async () => {
    c = await startController(s.db.url, s.kube, { POLL_INTERVAL_SECONDS: '0' });
    s.c = c;
  });

  it('keeps running and dispatches on the next crossing, without a restart', async () => {
    const { server, db, kube } = s;
    await server.stop();
    await eventually(() => !c.service.health.listenerConnected, 'the listener to notice the outage');
    await new Promise((r) => setTimeout(r, 8000));
    await server.start();
    await c.logs.waitForMsg(RECONNECTED, 30_000);
    const direct = new pg.Pool({ connectionString: db.url });
    try {
      await verifyNew(direct, 50);
    } finally {
      await direct.end();
    }
    await eventually(() => kube.creates.length === 1, 'a Job after the outage', 20_000);
    assert.ok(
      c.logs.count('LISTEN connection lost; reconnecting') + c.logs.count(/Cannot connect/) >= 1,
      'the outage was logged',
    );
  });
});

// Issue 10, item 2: pg echoes an sslkey it cannot open, and LISTEN_DATABASE_URL is first used after startup,
// so its failures reach the log (and /readyz through `disconnected`) rather than the startup error.
describe('listener: a key pasted in place of the sslkey path of LISTEN_DATABASE_URL', () => {
  it('logs the connect failure and reports it without the key', async () => {
    const key = '-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC';
    const logs = new LogCapture();
    const reasons: string[] = [];
    const listener = new Listener(
      `postgres://app@127.0.0.1:1/x?sslmode=require&sslkey=${encodeURIComponent(key)}`,
      createLogger('debug', logs),
      realTimers,
      {
        notification: () => undefined,
        control: () => undefined,
        connected: () => undefined,
        disconnected: (reason) => reasons.push(reason),
        ping: async () => undefined,
      },
      10_000,
    );
    listener.start();
    try {
      const line = await logs.waitForMsg('Cannot connect the LISTEN connection; retrying');
      assert.equal(line.err, "ENOENT: no such file or directory, open '***'");
      assert.deepEqual(reasons, ["ENOENT: no such file or directory, open '***'"]);
      assert.ok(!logs.raw.join('\n').includes('MIIEvQ'));
    } finally {
      await listener.stop();
    }
  });
});

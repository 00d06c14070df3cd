// Runs the real service in-process (real pg, real client-node against the fake API server), with its log
// captured so tests can assert on what an operator would read.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, afterEach, before, beforeEach } from 'node:test';
import pg from 'pg';
import type { Counter } from 'prom-client';
import { loadConfig } from '../../src/core/config.js';
import { RECOUNTED } from '../../src/loop/recountStep.js';
import { CHANNEL, PING_PREFIX } from '../../src/loop/listener.js';
import { listenApplicationName } from '../../src/db/pool.js';
import { createLogger } from '../../src/core/logger.js';
import { LISTENING, startService, type Service } from '../../src/main.js';
import type { RecountCause } from '../../src/core/recountCauses.js';
import { realTimers, type Timers } from '../../src/core/timers.js';
import type { Metrics } from '../../src/ops/metrics.js';
import { freshDatabase, invariantViolations, type TestDb } from './db.js';
import { FakeKube } from './fakeKube.js';
import { startOwnPostgres, type OwnPostgres } from './ownPostgres.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export class LogCapture extends Writable {
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const text of chunk.toString('utf8').split('\n')) {
      if (!text) continue;
      this.raw.push(text);
      const line = JSON.parse(text) as LogLine;
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
    }
    done();
  }

  count(msg: string | RegExp): number {
    return this.lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))).length;
  }

  /** Resolves with the first line (already logged or to come) matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    const seen = this.lines.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`no log line matched within ${timeoutMs} ms; last lines:\n${this.raw.slice(-8).join('\n')}`),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }

  waitForMsg(msg: string | RegExp, timeoutMs?: number, from?: number): Promise<LogLine> {
    return this.waitFor((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)), timeoutMs, from);
  }
}

/** Settings that make the loop fast enough to test; each test overrides what it is about. */
export const FAST: Record<string, string> = {
  HTTP_PORT: '0',
  DEBOUNCE_MS: '50',
  DEBOUNCE_MAX_WAIT_MS: '500',
  RECONCILE_INTERVAL_SECONDS: '1',
  KUBE_REQUEST_TIMEOUT_MS: '2000',
  RETRY_BACKOFF_SECONDS: '1',
  LOG_LEVEL: 'debug',
};

export interface Running {
  service: Service;
  logs: LogCapture;
  stop(): Promise<void>;
}

/** The real service in-process; `timers` lets a test run it on a fake or skewed clock. */
export async function startController(
  databaseUrl: string,
  kube: FakeKube | null,
  env: Record<string, string> = {},
  timers: Timers = realTimers,
): Promise<Running> {
  const logs = new LogCapture();
  const config = loadConfig({ ...FAST, DATABASE_URL: databaseUrl, KUBECONFIG: kube?.kubeconfigPath ?? '', ...env });
  const service = await startService(config, createLogger(config.logLevel, logs), timers);
  await logs.waitForMsg(LISTENING);
  await service.controller.idle();
  return { service, logs, stop: () => service.stop() };
}

/** Polls `fn` until it returns a truthy value; rejects with `what` after `timeoutMs`. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A pause. Only where time passing is what the test is about (an outage of a given length, a pace); to learn
 * that something did not happen, wait for the step that would have done it (nextRecount, controller.idle()).
 */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The first recount `c` logs at or after log line `from` (of `cause`, if given), once the loop is idle after
 * it: whatever that recount decided (a dispatch, a skip) is done. Its line says what it saw (`pending`).
 */
export async function nextRecount(
  c: Running,
  from: number,
  cause?: RecountCause,
  timeoutMs = 10_000,
): Promise<LogLine> {
  const line = await c.logs.waitFor((l) => l.msg === RECOUNTED && (!cause || l.cause === cause), timeoutMs, from);
  await c.service.controller.idle();
  return line;
}

/**
 * A recount now, as the fallback poll would do it, and the loop idle after it: the controller has looked at
 * everything committed so far and acted on it. A recount queued or debounced before is folded into this one.
 */
export async function recountNow(c: Running): Promise<LogLine> {
  await c.service.controller.idle();
  const from = c.logs.lines.length;
  c.service.controller.requestRecount('poll');
  return nextRecount(c, from);
}

/**
 * The payloads NOTIFYed on the controller's channel while `during` ran, read by a LISTEN session of the test's
 * own. After `during`, a marker is sent: PostgreSQL delivers a session's notifications in commit order, so once
 * the marker arrives every notification committed before it has too, and the list is complete. The marker
 * looks like another replica's liveness ping (PING_PREFIX), which a controller ignores.
 */
export async function notificationsSent(url: string, during: () => Promise<void>): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const got: string[] = [];
    const marker = `${PING_PREFIX}test-marker-${process.pid}-${Date.now()}`;
    const seen = new Promise<void>((resolve) =>
      client.on('notification', (n) => (n.payload === marker ? resolve() : got.push(n.payload ?? ''))),
    );
    await client.query(`LISTEN ${CHANNEL}`);
    await during();
    await client.query('SELECT pg_notify($1, $2)', [CHANNEL, marker]);
    await seen;
    return got;
  } finally {
    await client.end();
  }
}

/**
 * Ends the controller's LISTEN connection the way a failover or an idle-session killer does
 * (pg_terminate_backend, as pg-boss's tests do). Returns how many backends it ended: one per controller.
 */
export async function killListener(pool: pg.Pool, schema = 'public'): Promise<number> {
  const { rowCount } = await pool.query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
    [listenApplicationName(schema)],
  );
  return rowCount ?? 0;
}

export interface Infra {
  db: TestDb;
  kube: FakeKube;
}

export interface EachRun extends Infra {
  /** The test's controller, if it started one: stopped after the test. */
  c: Running | null;
  /** Runs `fn` after the test, once its controller stopped and before its database goes (last added, first run). */
  onCleanup(fn: () => Promise<unknown>): void;
}

/**
 * For each test of the enclosing describe(): a fresh database and fake API server; after it, the controller
 * stopped, the invariant checked (invariantViolations), and both torn down.
 */
export function useEachRun(): EachRun {
  const { s, open, close } = eachRun();
  beforeEach(open);
  afterEach(close);
  return s;
}

/**
 * useEachRun() for one test that runs beside others (a describe() with `concurrency: true`): the same fresh
 * database and API server for `fn`, the same checks and teardown after it.
 */
export async function inOwnRun(fn: (s: EachRun) => Promise<void>): Promise<void> {
  const { s, open, close } = eachRun();
  await open();
  try {
    await fn(s);
  } catch (err: unknown) {
    await close().catch(() => undefined); // the test's own failure is the one to read
    throw err;
  }
  await close();
}

/** What a test adds with onCleanup(), run last added, first run. */
function cleanupStack(): { onCleanup(fn: () => Promise<unknown>): void; runAll(): Promise<void> } {
  const fns: (() => Promise<unknown>)[] = [];
  return {
    onCleanup: (fn) => void fns.push(fn),
    async runAll() {
      for (const fn of fns.splice(0).reverse()) await fn();
    },
  };
}

function eachRun(): { s: EachRun; open(): Promise<void>; close(): Promise<void> } {
  const cleanups = cleanupStack();
  const s = { c: null, onCleanup: cleanups.onCleanup } as EachRun;
  return {
    s,
    async open() {
      s.db = await freshDatabase();
      s.kube = await FakeKube.start();
    },
    async close() {
      await s.c?.stop();
      s.c = null;
      await cleanups.runAll();
      assert.deepEqual(await invariantViolations(s.db.pool), []);
      await s.kube.stop();
      await s.db.drop();
    },
  };
}

/** A fresh database and a fake API server for the enclosing describe(), torn down after it. */
export function useInfra(): Infra {
  const s = {} as Infra;
  before(async () => {
    s.db = await freshDatabase();
    s.kube = await FakeKube.start();
  });
  after(async () => {
    await s.kube?.stop();
    await s.db?.drop();
  });
  return s;
}

export interface OwnServer extends Infra {
  server: OwnPostgres;
  /** The describe()'s controller, if it started one: stopped first. */
  c: Running | null;
  /** Runs `fn` after the describe(), once its controller stopped and before the database and server go. */
  onCleanup(fn: () => Promise<unknown>): void;
}

/**
 * A PostgreSQL server of the enclosing describe()'s own (for tests that stop it, or that need a setting only a
 * restart changes: `settings`, such as max_prepared_transactions), a fresh database on it and a fake API server,
 * torn down after it. Never the shared server: stopping that would break every other test file.
 */
export function useOwnServer(settings: Record<string, string> = {}): OwnServer {
  const cleanups = cleanupStack();
  const s = { c: null, onCleanup: cleanups.onCleanup } as OwnServer;
  before(async () => {
    s.server = await startOwnPostgres(settings);
    s.db = await freshDatabase(s.server.url);
    s.kube = await FakeKube.start();
  });
  after(async () => {
    await s.c?.stop();
    await cleanups.runAll();
    await s.kube?.stop();
    await s.db?.drop().catch(() => undefined);
    await s.server?.destroy();
  });
  return s;
}

export interface Stack extends Infra {
  c: Running;
}

/** A fresh database, a fake API server and a controller for the enclosing describe(), torn down after it. */
export function useStack(env: Record<string, string> = {}): Stack {
  const s = {} as Stack;
  before(async () => {
    s.db = await freshDatabase();
    s.kube = await FakeKube.start();
    s.c = await startController(s.db.url, s.kube, env);
  });
  after(async () => {
    await s.c?.stop();
    await s.kube?.stop();
    await s.db?.drop();
  });
  return s;
}

type CounterName = { [K in keyof Metrics]: Metrics[K] extends Counter<string> ? K : never }[keyof Metrics];

/** A counter of a running controller, summed over the series whose labels match. */
export async function counterValue(
  c: Running,
  name: CounterName,
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await (c.service.metrics[name] as Counter<string>).get();
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((sum, v) => sum + v.value, 0);
}

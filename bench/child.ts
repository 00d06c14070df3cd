// What every benchmark case does around the controller it runs as its own process: wait for a condition,
// read its HTTP port and a metric, stop it.
import type pg from 'pg';
import type { ChildController } from '../test/support/child.js';
import type { FakeKube } from '../test/support/fakeKube.js';

/** Polls `fn` every 5 ms until it returns a truthy value; throws naming `what` after `timeoutMs`. */
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function stopChild(c: ChildController): Promise<void> {
  c.proc.kill('SIGTERM');
  await c.exited;
}

/** The sum of a metric's series as the controller exposes it on /metrics. */
export async function metricValue(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** Waits for the controller to listen and returns its HTTP port. */
export async function httpPort(c: ChildController): Promise<number> {
  const line = await c.logs.waitForMsg('Listening for verified annotations', 30_000);
  return Number(line.httpPort);
}

/** Completes the Job and waits until its run is settled, so the next trial can start one. */
export async function finishRun(pool: pg.Pool, kube: FakeKube, jobName: string): Promise<void> {
  kube.setPhase(jobName, 'complete');
  await until(
    async () =>
      (await pool.query("SELECT 1 FROM training_runs WHERE state IN ('submitting', 'running')")).rowCount === 0,
    'the run to settle',
  );
}

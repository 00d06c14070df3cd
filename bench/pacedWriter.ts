// The Triage API as the issues measured it: one write every ~5 ms on its own connection, each timed from
// send to answer. "Worst writer wait" is the longest of those while something of ours runs; an unloaded
// single-row UPDATE answers in ~0.2 ms here, so anything above a few ms is time spent queued behind us.
import pg from 'pg';

export interface PacedWriter {
  /** Longest answer time (ms) since the last mark() (or the start). */
  worst(): number;
  /** Answers since the last mark() that took longer than `ms` (issue 21: a commit must stay ≤ 100 ms). */
  over(ms: number): number;
  /** Starts a new window for worst(); returns the old window's worst. */
  mark(): number;
  count(): number;
  stop(): Promise<void>;
}

export async function startPacedWriter(url: string, sql: string, ids: () => number, everyMs = 5): Promise<PacedWriter> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let worst = 0;
  let n = 0;
  let window: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await c.query(sql, [ids()]);
      const took = performance.now() - t0;
      worst = Math.max(worst, took);
      window.push(took);
      n++;
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - took)));
    }
  })();
  return {
    worst: () => worst,
    over: (ms) => window.filter((t) => t > ms).length,
    mark() {
      const w = worst;
      worst = 0;
      window = [];
      return w;
    },
    count: () => n,
    async stop() {
      running = false;
      await loop;
      await c.end();
    },
  };
}

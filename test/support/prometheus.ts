// A real Prometheus (Debian's `prometheus` package) scraping one target every second and evaluating a rules file
// every second, with its HTTP API on a free port. Starts in ~1 s here; its TSDB lives in `dir`.
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from './harness.js';
import { freePort } from './ports.js';

/** Whether a command runs here (`tool --version`): promtool and prometheus come from Debian's `prometheus`. */
export function installed(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The skip reason of a test that needs promtool, or false when it is there. */
export const needsPromtool = (): string | false =>
  installed('promtool') ? false : 'promtool not installed (apt-get install prometheus)';

export interface Prometheus {
  /** The value of an instant query's first sample, or null when it has none. */
  query(expr: string): Promise<number | null>;
  /** Alerts in state firing. */
  firing(): Promise<{ labels: Record<string, string> }[]>;
  stop(): Promise<void>;
}

export async function startPrometheus(dir: string, rulesFile: string, target: string): Promise<Prometheus> {
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [rulesFile],
      scrape_configs: [{ job_name: 'training-controller', static_configs: [{ targets: [target] }] }],
    }),
  );
  const proc = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stderr: string[] = [];
  proc.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    const body = (await res.json()) as { status: string; data: T };
    if (body.status !== 'success') throw new Error(`${path}: ${JSON.stringify(body)}`);
    return body.data;
  };
  const ready = async () => (await fetch(`http://127.0.0.1:${port}/-/ready`).catch(() => null))?.ok ?? false;
  await eventually(ready, `Prometheus ready (${stderr.join('').slice(-500)})`, 20_000, 100);
  return {
    async query(expr) {
      const data = await api<{ result: { value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent(expr)}`,
      );
      const v = data.result[0]?.value[1];
      return v === undefined ? null : Number(v);
    },
    async firing() {
      const data = await api<{ alerts: { state: string; labels: Record<string, string> }[] }>('/api/v1/alerts');
      return data.alerts.filter((a) => a.state === 'firing');
    },
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

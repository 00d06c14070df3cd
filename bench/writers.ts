// The verifying clients of the benchmark: `UPDATE annotations SET verified = true WHERE id = $1` in autocommit,
// each client on its own rows (a row verified twice would skip the trigger and flatter it). pgbench (C, one
// prepared statement per transaction) when the machine has it, since Node clients on 2 cores measure Node
// rather than PostgreSQL; otherwise Node clients, and the table says so.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface UpdateLoad {
  clients: number;
  /** Run for this long … */
  seconds?: number;
  /** … or this many transactions per client. */
  transactions?: number;
  firstId: number;
  rowsPerClient: number;
}

export function havePgbench(): boolean {
  return spawnSync('pgbench', ['--version']).status === 0;
}

/** Runs the load and returns transactions per second. */
export async function pgbenchUpdates(url: string, load: UpdateLoad): Promise<number> {
  if (!havePgbench()) return nodeUpdates(url, load);
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  const script = join(dir, 'verify.sql');
  writeFileSync(
    script,
    '\\set n :n + 1\n\\set id :base + :client_id * :stride + :n\nUPDATE annotations SET verified = true WHERE id = :id;\n',
  );
  const args = [
    '-n',
    '-M',
    'prepared',
    '-c',
    String(load.clients),
    '-j',
    '2',
    '-D',
    'n=0',
    '-D',
    `base=${load.firstId - 1}`,
    '-D',
    `stride=${load.rowsPerClient}`,
    '-f',
    script,
  ];
  args.push(...(load.seconds ? ['-T', String(load.seconds)] : ['-t', String(load.transactions ?? 1000)]), url);
  const r = spawnSync('pgbench', args, { encoding: 'utf8' });
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`pgbench failed: ${r.stderr || r.stdout}`);
  return Number(m[1]);
}

async function nodeUpdates(url: string, load: UpdateLoad): Promise<number> {
  const clients = Array.from({ length: load.clients }, () => new pg.Client({ connectionString: url }));
  await Promise.all(clients.map((c) => c.connect()));
  const end = load.seconds ? performance.now() + load.seconds * 1000 : Infinity;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c, i) => {
      for (let n = 1; performance.now() < end && (load.transactions === undefined || n <= load.transactions); n++) {
        await c.query({
          name: 'verify',
          text: 'UPDATE annotations SET verified = true WHERE id = $1',
          values: [load.firstId - 1 + i * load.rowsPerClient + n],
        });
        done++;
      }
    }),
  );
  const tps = done / ((performance.now() - t0) / 1000);
  await Promise.all(clients.map((c) => c.end()));
  return tps;
}

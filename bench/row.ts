// One line of the benchmark's table: a measured value, and what it is compared with.
export interface Row {
  case: string;
  metric: string;
  value: number;
  unit: string;
  baseline?: { label: string; value: number };
  target?: { text: string; met: boolean };
}

export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
export const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * 0.95) - 1] ?? NaN;
export const log = (s: string) => process.stderr.write(`# ${s}\n`);

// A clock that moves only when told, with timers and intervals that fire as it passes them.
import type { Timers } from '../../src/core/timers.js';

interface Entry {
  at: number;
  fn: () => void;
  every: number | null;
}

export class FakeTimers implements Timers {
  t = 0;
  private next = 1;
  private readonly timers = new Map<number, Entry>();
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => this.add(fn, ms, null);
  clearTimeout = (h: unknown) => void this.timers.delete(h as number);
  setInterval = (fn: () => void, ms: number) => this.add(fn, ms, ms);
  clearInterval = (h: unknown) => void this.timers.delete(h as number);

  /** Timers and intervals not yet fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, entry] = due;
      if (entry.every === null) this.timers.delete(id);
      else entry.at += entry.every;
      this.t = Math.max(this.t, entry.at - (entry.every ?? 0));
      entry.fn();
    }
    this.t = end;
  }

  private add(fn: () => void, ms: number, every: number | null): number {
    const id = this.next++;
    this.timers.set(id, { at: this.t + Math.max(ms, every === null ? 0 : 1), fn, every });
    return id;
  }
}

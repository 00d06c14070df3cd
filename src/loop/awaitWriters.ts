// Gate case 1 (gate.ts): a recount that saw transactions writing to annotations (db/annotations.ts reads them from
// pg_locks) may have missed a verification one of them holds, so it must be followed by another recount once
// they end. This is the wait for those writers, one wait for all of them:
//
//   idle     nobody awaited. `settledUpTo`: every gate number up to it belongs to a transaction that had ended
//            before some completed recount began.
//   waiting  records of {gate number of the recount, writers it saw}. Polled every 25 ms, slowing to 1 s
//            while nothing ends (a relabelling transaction held open for minutes); as soon as ANY awaited
//            writer ends, onEnded() asks for a recount, and the others stay awaited. A record whose writers
//            have all ended is settled by the next recount that completes. Back to idle when none is open.
//
// A recount at a gate number already settled adds nothing: writers that verify nothing (relabels) do not move
// the gate, so they cannot keep the wait (and a recount per second) going forever.
import { errorMessage } from '../core/errors.js';
import { interruptibleSleep, type Timers } from '../core/timers.js';

interface WriterRecord {
  gate: bigint;
  writers: Set<string>;
}

export interface AwaitWritersDeps {
  timers: Timers;
  /** Which of these virtual transaction ids still hold their write lock on annotations. */
  stillOpen(writers: string[]): Promise<string[]>;
  /** Some awaited writer ended: recount. */
  onEnded(): void;
  onError(what: string, err: unknown): void;
}

export class AwaitWriters {
  private records: WriterRecord[] = [];
  private settledUpTo = -1n;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private stopped = false;

  constructor(private readonly deps: AwaitWritersDeps) {}

  /** Before a recount: the gate number the recount settles if it completes (records whose writers all ended). */
  settleable(): bigint {
    return (
      this.records
        .filter((r) => r.writers.size === 0)
        // biome-ignore lint/complexity/useMathMinMax: bigints; Math.max takes numbers only
        .reduce((max, r) => (r.gate > max ? r.gate : max), this.settledUpTo)
    );
  }

  /** After a completed recount that read the gate at `gate` and saw `writers`; `settles` from settleable(). */
  recounted(settles: bigint, gate: bigint, writers: readonly string[]): void {
    this.settle(settles);
    if (writers.length === 0) {
      // Nobody holds a write lock now, so everyone awaited has ended and this count saw their rows.
      this.records = [];
      this.settle(gate);
      return;
    }
    if (gate <= this.settledUpTo) return;
    const awaited = this.awaited();
    const fresh = writers.some((w) => !awaited.has(w));
    this.records.push({ gate, writers: new Set(writers) });
    if (fresh) this.wake?.(); // poll at the fast rate again: a verifier is usually quick
    this.loop ??= this.poll().finally(() => (this.loop = null));
  }

  /** Writers currently awaited (for logs and tests). */
  awaited(): Set<string> {
    return new Set(this.records.flatMap((r) => [...r.writers]));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  private settle(upTo: bigint): void {
    if (upTo > this.settledUpTo) this.settledUpTo = upTo;
    this.records = this.records.filter((r) => r.writers.size > 0 || r.gate > this.settledUpTo);
  }

  private async poll(): Promise<void> {
    // Verifying transactions are short: 25 ms first, doubling to 1 s for a long-running writer.
    for (let wait = 25; !this.stopped; ) {
      const awaited = [...this.awaited()];
      if (awaited.length === 0) return;
      let open: Set<string>;
      try {
        open = new Set(await this.deps.stillOpen(awaited));
      } catch (err: unknown) {
        // The retry recount this leads to calls recounted() again, which restarts the wait.
        this.deps.onError('Waiting for writers', errorMessage(err));
        return;
      }
      const ended = awaited.filter((w) => !open.has(w));
      if (ended.length > 0) {
        for (const r of this.records) for (const w of ended) r.writers.delete(w);
        this.deps.onEnded();
        wait = 25;
      } else {
        wait = Math.min(1000, wait * 2);
      }
      const pause = interruptibleSleep(this.deps.timers, wait);
      this.wake = () => {
        wait = 25;
        pause.wake();
      };
      await pause.done;
      this.wake = null;
    }
  }
}

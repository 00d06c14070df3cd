// The pace of our bulk writes (claims, settles, baselines: db/chunks.ts), the way online schema tools throttle
// by what they observe (issue 21). A Triage writer's commit waits for the WAL flush ahead of its own commit
// record, so while one of our chunks commits, a relabel committing at that moment waits for our whole flush;
// on PostgreSQL 15 with fsync on, settling 1,000,000 rows in 2,000-row chunks held such a relabel up to
// 186 ms here and 250-330 ms on the reviewer's disk (CPU-only, fsync off: <= 50 ms).
//
// Each chunk's COMMIT time is the signal: it is the flush every other commit of that moment waits behind. Like
// TCP's congestion window, the chunk halves when its commit took longer than COMMIT_TARGET_MS and grows back by
// a quarter (up to CHUNK_ROWS) when it took less than half of that; and after each chunk the walk pauses as long
// as its commit took, so whatever the disk is slow with (a checkpoint, another tenant) the Triage API's commits
// get it first, and a slow disk slows us down rather than them.

/** A commit of ours longer than this shrinks the next chunk: a fifth of the 100 ms a writer's commit may take. */
export const COMMIT_TARGET_MS = 20;
/** The smallest chunk: below it a chunk's fixed cost (~2 ms: the run's row, the round trips) dominates. */
export const MIN_CHUNK_ROWS = 100;
/** No pause longer than this: a disk stalled for seconds must not stretch a settle into hours. */
export const MAX_PAUSE_MS = 1_000;

export class Pace {
  /** The size of the next chunk. */
  rows: number;

  constructor(private readonly maxRows: number) {
    this.rows = maxRows;
  }

  /** After a chunk whose COMMIT took `commitMs`: adjusts the next chunk's size; returns the pause before it. */
  committed(commitMs: number): number {
    if (commitMs > COMMIT_TARGET_MS)
      this.rows = Math.max(Math.min(MIN_CHUNK_ROWS, this.maxRows), Math.floor(this.rows / 2));
    else if (commitMs < COMMIT_TARGET_MS / 2) this.rows = Math.min(this.maxRows, Math.ceil(this.rows * 1.25));
    return Math.min(MAX_PAUSE_MS, Math.max(0, commitMs));
  }
}

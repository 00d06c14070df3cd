// The notification where the trigger cannot send one. On a server that allows two-phase commit
// (max_prepared_transactions > 0) a Triage API may PREPARE its transactions, which PostgreSQL refuses after a
// NOTIFY; so there the trigger (migration 009) takes its gate number and sends nothing, and this watch makes
// the trigger's test instead: every GATE_WATCH_INTERVAL_MS it reads the gate sequence and the published target
// (one query, ~0.1 ms on the server) and asks for a recount when a verification reached the target since the
// last look (gate.ts crossedSince). Every rule of the gate holds as with NOTIFY: a prepared transaction not yet
// committed holds its lock on annotations, so the recount's writer wait (awaitWriters.ts) sees it.
//
// The recount says whether the server allows two-phase commit (a restart changes it), and the controller turns
// the watch on or off from that; elsewhere it never runs.
import { errorMessage } from '../core/errors.js';
import { crossedSince } from '../core/gate.js';
import type { Logger } from '../core/logger.js';
import type { Timers } from '../core/timers.js';

/**
 * 250 ms: training starts within ~0.3 s of the crossing verification's commit (with NOTIFY: ~30 ms), for four
 * sequence reads a second, which no database notices.
 */
export const GATE_WATCH_INTERVAL_MS = 250;

/** Logged once when the watch starts: why verifications are seen without notifications on this server. */
export const GATE_WATCH_ON =
  'The server allows two-phase commit (max_prepared_transactions > 0): the trigger sends no NOTIFY there, so the gate sequence is watched instead';

export interface GateWatchDeps {
  timers: Timers;
  logger: Logger;
  /** The gate sequence and the published target (db/annotations.ts readGate). */
  read(): Promise<{ gate: bigint; target: bigint }>;
  /** A verification reached the target: recount. */
  crossed(): void;
}

export class GateWatch {
  private handle: unknown = null;
  private previous: bigint | null = null;
  private inFlight: Promise<void> | null = null;
  private failing = false;

  constructor(private readonly deps: GateWatchDeps) {}

  /** On while the server allows two-phase commit; idempotent. */
  set(on: boolean): void {
    if (on === (this.handle !== null)) return;
    if (!on) {
      this.deps.timers.clearInterval(this.handle);
      this.handle = null;
      return;
    }
    this.deps.logger.info({ intervalMs: GATE_WATCH_INTERVAL_MS }, GATE_WATCH_ON);
    this.previous = null;
    this.handle = this.deps.timers.setInterval(() => this.look(), GATE_WATCH_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    this.set(false);
    await this.inFlight;
  }

  private look(): void {
    if (this.inFlight) return; // a slow database: one read at a time
    this.inFlight = this.deps
      .read()
      .then(
        ({ gate, target }) => {
          if (crossedSince(this.previous, gate, target)) this.deps.crossed();
          this.previous = gate;
          this.failing = false;
        },
        (err: unknown) => {
          // The recount's own retries report an unreachable database on /readyz; say it here once per streak.
          if (!this.failing) this.deps.logger.warn({ err: errorMessage(err) }, 'Reading the gate sequence failed');
          this.failing = true;
        },
      )
      .finally(() => {
        this.inFlight = null;
      });
  }
}

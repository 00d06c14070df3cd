// What the service says when the operator state changes (issue #11): one log line per pause, resume and
// trigger request as the service first sees it, and the training_controller_paused gauge. The CLI writes the
// state; the service is what an operator's log search finds, so it says it too.
import type { Logger } from '../core/logger.js';
import type { Metrics } from './metrics.js';
import type { Control } from '../core/triggers.js';

export const PAUSED_LOG = 'Paused by the operator: no new run starts until `training-controller resume`';
export const RESUMED_LOG = 'Resumed: runs may start again';
export const TRIGGER_REQUESTED_LOG = 'Manual trigger requested';

export class ControlLog {
  private paused: boolean | null = null;
  private triggerAt: number | null = null;

  constructor(
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  observe(c: Control): void {
    this.metrics.paused.set(c.paused ? 1 : 0);
    if (c.paused !== this.paused) {
      // At startup only a pause is worth a line: "not paused" is the normal state.
      if (c.paused) this.logger.warn({ since: c.pausedAt, by: c.pausedBy, reason: c.pauseReason }, PAUSED_LOG);
      else if (this.paused !== null) this.logger.info(RESUMED_LOG);
      this.paused = c.paused;
    }
    const at = c.triggerAt?.getTime() ?? null;
    if (at !== null && at !== this.triggerAt)
      this.logger.info({ at: c.triggerAt, by: c.triggerBy, reason: c.triggerReason }, TRIGGER_REQUESTED_LOG);
    this.triggerAt = at;
  }
}

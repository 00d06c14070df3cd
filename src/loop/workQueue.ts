// The controller's serial queue: a recount, a dispatch and a reconcile never overlap in one process (replicas
// are kept apart by the advisory lock and the one-open-run index).
//
// Each kind of step is in one of three states:
//   idle     not queued, not running
//   queued   waiting behind other steps; asking for it again adds nothing (requests coalesce)
//   running  started; asking for it again queues one more run after it (it may have started too early to
//            see what the new request is about)
// A step that throws is reported to onError and the queue goes on: the loop can never die.
export class WorkQueue<K extends string> {
  private tail: Promise<void> = Promise.resolve();
  private readonly queued = new Set<K>();

  constructor(private readonly onError: (err: unknown) => void) {}

  /** Queues `step` unless a step of this kind is already queued. Returns whether it was queued. */
  push(kind: K, step: () => Promise<void>): boolean {
    if (this.queued.has(kind)) return false;
    this.queued.add(kind);
    this.tail = this.tail
      .then(() => {
        this.queued.delete(kind);
        return step();
      })
      .catch(this.onError);
    return true;
  }

  /** Resolves when the queue is empty: every step has run, including those queued by steps while it waited. */
  async idle(): Promise<void> {
    for (let tail = this.tail; ; tail = this.tail) {
      await tail;
      if (tail === this.tail) return;
    }
  }
}

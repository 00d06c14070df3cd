// The notification gate (see migrations/004_verified_trigger.sql). Pure arithmetic on gate numbers, which are
// bigints in PostgreSQL and kept as bigint here.
//
// After a recount that saw `pending` (< threshold) with the gate sequence at `gateBefore` (read *before* the
// count's snapshot), the threshold can be reached at the earliest by the (threshold - pending)-th verification
// after it, whose gate number is gateBefore + (threshold - pending). Publishing exactly that is early-or-exact
// for every verification that takes its number after `gateBefore`. Two cases are not covered by it alone,
// and the controller covers them by recounting again:
//  1. A transaction that took its number at or before `gateBefore` but had not committed when the count ran
//     (it was still writing to annotations, see db/annotations.ts): its row is not counted and it compared its number
//     with the *previous* target. The controller waits for those writers to end, then recounts
//     (loop/awaitWriters.ts).
//  2. A verification that took its number between reading `gateBefore` and publishing the new target compared
//     with the previous target, which may have been higher. The controller reads the sequence again after
//     publishing; if it already reached the new target, it recounts (missedWhilePublishing).

/** The largest bigint: "send no notification", used while the controller will recount anyway. */
export const NEVER = 9223372036854775807n;

export interface GateInput {
  gateBefore: bigint;
  pending: number;
  threshold: number;
  /** True when the controller needs no hint: a run is open, it is backing off, or it is about to dispatch. */
  quiet: boolean;
}

export function notifyAt(g: GateInput): bigint {
  if (g.quiet || g.pending >= g.threshold) return NEVER;
  return g.gateBefore + BigInt(g.threshold - g.pending);
}

/** Case 2: the sequence passed the new target before the target was published. */
export function missedWhilePublishing(target: bigint, gateAfterPublish: bigint): boolean {
  return target !== NEVER && gateAfterPublish >= target;
}

/**
 * The gate watch (loop/gateWatch.ts), where the trigger cannot NOTIFY: a verification took a gate number at or
 * past the published target since the last look (`previous`, null before the first). The same test the
 * trigger makes, once per look instead of once per row; a target of NEVER means the controller needs no hint.
 */
export function crossedSince(previous: bigint | null, gate: bigint, target: bigint): boolean {
  return target !== NEVER && gate >= target && (previous === null || gate > previous);
}

// Why a recount ran: the label values of training_controller_recounts_total (each exported at 0 from the start)
// and the causes the controller's loop knows (controller.ts says which are debounced). `control`: a pause,
// resume, trigger or cancel NOTIFY (control.ts); `max-wait`: TRAINING_MAX_WAIT_SECONDS ran out (triggers.ts);
// `gate-watch`: the gate sequence passed its target where the trigger cannot NOTIFY (loop/gateWatch.ts).
export const RECOUNT_CAUSES = [
  'startup',
  'notification',
  'reconnect',
  'poll',
  'run-finished',
  'dispatched',
  'backoff-ended',
  'retry',
  'claim-race',
  'gate',
  'writers-ended',
  'control',
  'max-wait',
  'gate-watch',
] as const;
export type RecountCause = (typeof RECOUNT_CAUSES)[number];

// Why a recount ran: the label values of training_controller_recounts_total (each exported at 0 from the start)
// and the causes the controller's loop knows (controller.ts says which are debounced).
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
] as const;
export type RecountCause = (typeof RECOUNT_CAUSES)[number];

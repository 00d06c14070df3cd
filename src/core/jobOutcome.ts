import type { V1Job } from '@kubernetes/client-node';

export type JobOutcome =
  | { finished: false }
  | { finished: true; succeeded: true; reason: string }
  | { finished: true; succeeded: false; reason: string };

/**
 * A Job is finished only when a `Complete` or `Failed` condition has status "True". Everything else is
 * still running: `status: {}` before the controller-manager looks at it, `active: 0` between pod retries,
 * `Suspended`, and the interim `FailureTarget` / `SuccessCriteriaMet` conditions of Kubernetes 1.31+, which
 * precede the terminal condition while pods are still being cleaned up.
 */
export function jobOutcome(job: V1Job): JobOutcome {
  for (const c of job.status?.conditions ?? []) {
    if (c.status !== 'True') continue;
    if (c.type === 'Complete') return { finished: true, succeeded: true, reason: c.reason ?? 'Complete' };
    if (c.type === 'Failed') {
      const reason = [c.reason, c.message].filter(Boolean).join(': ') || 'Failed';
      return { finished: true, succeeded: false, reason };
    }
  }
  return { finished: false };
}

/**
 * The outcome of a Job that is being deleted before a terminal condition: its pods are going, so no Complete
 * will come. Success already decided is still success: `SuccessCriteriaMet` (Kubernetes 1.31+), or as many
 * succeeded pods as completions (the pod finished before the Job controller wrote its condition). Anything else
 * is not finished, and the caller records it as lost.
 */
export function deletedOutcome(job: V1Job): JobOutcome {
  const settled = jobOutcome(job);
  if (settled.finished) return settled;
  const criteriaMet = (job.status?.conditions ?? []).some(
    (c) => c.type === 'SuccessCriteriaMet' && c.status === 'True',
  );
  if (criteriaMet || (job.status?.succeeded ?? 0) >= (job.spec?.completions ?? 1)) {
    return {
      finished: true,
      succeeded: true,
      reason: criteriaMet ? 'SuccessCriteriaMet (deleted before Complete)' : 'pods succeeded (deleted before Complete)',
    };
  }
  return { finished: false };
}

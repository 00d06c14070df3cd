// Why the open run's pod cannot start, read from the pod status the kubelet and the scheduler write. Pure.
//
// A Job whose pod never starts stays `running` (no Complete or Failed condition) until activeDeadlineSeconds,
// 12 h in deploy/job-template.yaml: a missing Secret (`envFrom: secretRef`) leaves the container in
// CreateContainerConfigError, a wrong image tag in ErrImagePull / ImagePullBackOff, a missing GPU node in
// Unschedulable. None of these fails the Job, and this does not fail the run either: each is fixed from
// outside (create the Secret, push the image, add the node) and the kubelet or scheduler then starts the same
// pod within its back-off (at most 5 min for image pulls), so the run goes on with its annotations. Failing it
// would release them only for the next run to meet the same cause. It is made visible instead (reconciler).
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';

/**
 * Waiting reasons that do not go away by themselves. Kubelet's: a config error (missing Secret, ConfigMap or
 * key), the image, the container runtime. ContainerCreating and PodInitializing are progress, not problems.
 */
export const STUCK_WAITING: ReadonlySet<string> = new Set([
  'CreateContainerConfigError',
  'CreateContainerError',
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'RunContainerError',
]);

/**
 * A pod the scheduler cannot place yet is normal for a while: a cluster autoscaler adding a GPU node takes
 * ~3–7 min on the common clouds. Reported only after 10 min, still ~70 times sooner than the 12 h deadline.
 */
export const UNSCHEDULABLE_AFTER_MS = 10 * 60_000;

export interface PodProblem {
  pod: string;
  /** The kubelet's waiting reason, or `Unschedulable`. */
  reason: string;
  message: string;
}

export function podProblem(pods: readonly V1Pod[], now: number, unschedulableAfterMs = UNSCHEDULABLE_AFTER_MS) {
  for (const pod of pods) {
    const phase = pod.status?.phase;
    // Finished pods (an earlier attempt under backoffLimit) and pods being deleted are history.
    if (phase === 'Succeeded' || phase === 'Failed' || pod.metadata?.deletionTimestamp) continue;
    const name = pod.metadata?.name ?? '?';
    const statuses: V1ContainerStatus[] = [
      ...(pod.status?.initContainerStatuses ?? []),
      ...(pod.status?.containerStatuses ?? []),
    ];
    for (const s of statuses) {
      const waiting = s.state?.waiting;
      if (waiting?.reason && STUCK_WAITING.has(waiting.reason))
        return problem(name, waiting.reason, `container ${s.name}: ${waiting.message ?? waiting.reason}`);
    }
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
      const since = new Date(scheduled.lastTransitionTime ?? pod.metadata?.creationTimestamp ?? now).getTime();
      if (now - since >= unschedulableAfterMs)
        return problem(
          name,
          'Unschedulable',
          `unschedulable for ${Math.round((now - since) / 60_000)} min: ${scheduled.message ?? ''}`.trim(),
        );
    }
  }
  return null;
}

const problem = (pod: string, reason: string, message: string): PodProblem => ({ pod, reason, message });

const PREFIX = 'pod cannot start';

/** What the run's `reason` column (and so `status`) shows. */
export function problemText(p: PodProblem): string {
  return `${PREFIX} (${p.reason}): ${p.message} [pod ${p.pod}]`;
}

/**
 * The problem a reason written by problemText names, compared by kind: the kubelet alternates ErrImagePull and
 * ImagePullBackOff at every pull attempt, which is one problem, not a new one every few minutes.
 */
export function problemKind(text: string | null): string | null {
  const reason = text === null ? undefined : new RegExp(`^${PREFIX} \\((\\w+)\\)`).exec(text)?.[1];
  if (reason === undefined) return null;
  return reason === 'ImagePullBackOff' ? 'ErrImagePull' : reason;
}

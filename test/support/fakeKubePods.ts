// Pods for the fake API server: the one pod a Job (backoffLimit 0) makes, in the status shapes the kubelet and
// the scheduler write, copied from `kubectl get pod -o json` of Kubernetes 1.29–1.31:
//   container-config-error  envFrom a Secret that does not exist: Pending, scheduled, the container waiting in
//                           CreateContainerConfigError `secret "training-database" not found`
//   err-image-pull / image-pull-backoff   a tag the registry does not have (the kubelet alternates the two)
//   invalid-image-name      an image reference that does not parse
//   create-container-error  the runtime refused the container
//   unschedulable           no node fits (PodScheduled False, reason Unschedulable; no container statuses)
//   container-creating      normal progress (waiting ContainerCreating)
//   running                 started
import type { V1ContainerStatus, V1Job, V1Pod, V1PodCondition } from '@kubernetes/client-node';
import { matches } from './labelSelector.js';

export type PodState =
  | 'container-config-error'
  | 'err-image-pull'
  | 'image-pull-backoff'
  | 'invalid-image-name'
  | 'create-container-error'
  | 'unschedulable'
  | 'container-creating'
  | 'running';

const WAITING: Partial<Record<PodState, (image: string) => { reason: string; message: string }>> = {
  'container-config-error': () => ({
    reason: 'CreateContainerConfigError',
    message: 'secret "training-database" not found',
  }),
  'err-image-pull': (image) => ({
    reason: 'ErrImagePull',
    message: `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found`,
  }),
  'image-pull-backoff': (image) => ({ reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` }),
  'invalid-image-name': (image) => ({
    reason: 'InvalidImageName',
    message: `Failed to apply default image tag "${image}": couldn't parse image name "${image}": invalid reference format`,
  }),
  'create-container-error': () => ({
    reason: 'CreateContainerError',
    message: 'failed to generate container spec: failed to apply OCI options: no such file or directory',
  }),
  'container-creating': () => ({ reason: 'ContainerCreating', message: '' }),
};

const condition = (type: string, status: string, at: Date, reason?: string, message?: string): V1PodCondition => ({
  type,
  status,
  lastProbeTime: undefined,
  lastTransitionTime: at,
  ...(reason ? { reason } : {}),
  ...(message ? { message } : {}),
});

/** The pod of `job` in `state`; `since`: when it entered it (the scheduler's lastTransitionTime). */
export function podFor(job: V1Job, state: PodState, since: Date, previous?: V1Pod): V1Pod {
  const name = job.metadata?.name ?? '';
  const template = job.spec?.template;
  const containers = template?.spec?.containers ?? [];
  const podName = previous?.metadata?.name ?? `${name}-${Math.random().toString(36).slice(2, 7)}`;
  const scheduled = state !== 'unschedulable';
  const ready = state === 'running';
  const names = containers.map((c) => c.name).join(' ');
  const statuses: V1ContainerStatus[] = containers.map((c) => {
    const waiting = WAITING[state]?.(c.image ?? '');
    return {
      name: c.name,
      image: c.image ?? '',
      imageID: ready ? `${c.image}@sha256:${'0'.repeat(64)}` : '',
      ready,
      started: ready,
      restartCount: 0,
      state: waiting ? { waiting } : { running: { startedAt: since } },
      lastState: {},
    };
  });
  return {
    metadata: {
      name: podName,
      namespace: job.metadata?.namespace,
      uid: previous?.metadata?.uid ?? crypto.randomUUID(),
      creationTimestamp: previous?.metadata?.creationTimestamp ?? since,
      labels: { ...template?.metadata?.labels },
      ownerReferences: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          name,
          uid: job.metadata?.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: template?.spec ?? { containers: [] },
    status: {
      phase: ready ? 'Running' : 'Pending',
      qosClass: 'Burstable',
      startTime: scheduled ? since : undefined,
      ...(scheduled ? { hostIP: '10.0.0.12', podIP: '10.244.1.17', containerStatuses: statuses } : {}),
      conditions: scheduled
        ? [
            condition('PodReadyToStartContainers', 'True', since),
            condition('Initialized', 'True', since),
            condition(
              'Ready',
              ready ? 'True' : 'False',
              since,
              ready ? undefined : 'ContainersNotReady',
              ready ? undefined : `containers with unready status: [${names}]`,
            ),
            condition(
              'ContainersReady',
              ready ? 'True' : 'False',
              since,
              ready ? undefined : 'ContainersNotReady',
              ready ? undefined : `containers with unready status: [${names}]`,
            ),
            condition('PodScheduled', 'True', since),
          ]
        : [
            condition(
              'PodScheduled',
              'False',
              since,
              'Unschedulable',
              '0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.',
            ),
          ],
    },
  };
}

/** A PodList as the server returns it: items without kind and apiVersion. */
export function podList(pods: Iterable<V1Pod>, namespace: string, selector: string | null, rv: number) {
  const items = [...pods]
    .filter((p) => p.metadata?.namespace === namespace && matches(selector, p.metadata?.labels))
    .map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
  return { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items };
}

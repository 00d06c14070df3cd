// What the API server's own validation (not its OpenAPI schema) rejects in a Job a template can get wrong, as
// "field: problem" lines: names, labels, the restart policy, the TTL floor, volumes and their mounts.
// Run on a Job built from the template (so controller-owned fields are what they will be).
import type { V1Container, V1Job, V1PodSpec } from '@kubernetes/client-node';
import { MIN_JOB_TTL_SECONDS } from '../core/config.js';
import { fieldPath } from './templateShape.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const isDnsLabel = (s: string | undefined): s is string => !!s && s.length <= 63 && DNS_LABEL.test(s);

function badLabelKey(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const prefix = slash >= 0 ? key.slice(0, slash) : '';
  return (
    name.length > 63 || !LABEL_NAME.test(name) || (prefix !== '' && (prefix.length > 253 || !LABEL_PREFIX.test(prefix)))
  );
}

function labelErrors(path: string, labels: Record<string, string> | undefined): string[] {
  const errors: string[] = [];
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (badLabelKey(key)) errors.push(`${path}: invalid label key "${key}"`);
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value))
      errors.push(`${fieldPath(path, key)}: invalid label value "${String(value)}"`);
  }
  return errors;
}

const COUNTS = ['backoffLimit', 'ttlSecondsAfterFinished', 'activeDeadlineSeconds', 'completions', 'parallelism'];

function specErrors(spec: NonNullable<V1Job['spec']>): string[] {
  const errors: string[] = [];
  for (const field of COUNTS) {
    const v = (spec as unknown as Record<string, unknown>)[field];
    if (v != null && (!Number.isInteger(v) || (v as number) < 0))
      errors.push(`spec.${field}: must be a non-negative integer`);
  }
  const ttl = spec.ttlSecondsAfterFinished;
  if (Number.isInteger(ttl) && (ttl as number) < MIN_JOB_TTL_SECONDS) {
    errors.push(
      `spec.ttlSecondsAfterFinished: at least ${MIN_JOB_TTL_SECONDS} (a shorter TTL deletes a finished Job and its logs before anyone can read them)`,
    );
  }
  return errors;
}

function containerErrors(pod: V1PodSpec): string[] {
  const errors: string[] = [];
  if ((pod.containers ?? []).length === 0) errors.push('spec.template.spec.containers: Required value');
  const seen = new Set<string>();
  const all: [string, V1Container[] | undefined][] = [
    ['initContainers', pod.initContainers],
    ['containers', pod.containers],
  ];
  for (const [kind, list] of all)
    (list ?? []).forEach((c, i) => {
      const at = `spec.template.spec.${kind}[${i}]`;
      if (!isDnsLabel(c.name)) errors.push(`${at}.name: "${c.name ?? ''}" must be a DNS-1123 label`);
      else if (seen.has(c.name)) errors.push(`${at}.name: Duplicate value "${c.name}"`);
      else seen.add(c.name);
      if (!c.image || c.image.trim() === '') errors.push(`${at}.image: Required value`);
    });
  return errors;
}

/** Volume names are DNS-1123 labels, unique; every volumeMount names one of them (else a 422 "Not found"). */
function volumeErrors(pod: V1PodSpec): string[] {
  const errors: string[] = [];
  const names = new Set<string>();
  (pod.volumes ?? []).forEach((v, i) => {
    const at = `spec.template.spec.volumes[${i}].name`;
    if (!isDnsLabel(v.name))
      errors.push(`${at}: "${v.name ?? ''}" must be a DNS-1123 label (lowercase letters, digits and -, at most 63)`);
    else if (names.has(v.name)) errors.push(`${at}: Duplicate value "${v.name}"`);
    names.add(v.name);
  });
  for (const kind of ['initContainers', 'containers'] as const)
    (pod[kind] ?? []).forEach((c, i) => {
      (c.volumeMounts ?? []).forEach((m, j) => {
        if (!names.has(m.name))
          errors.push(`spec.template.spec.${kind}[${i}].volumeMounts[${j}].name: "${m.name}" names no volume`);
      });
    });
  return errors;
}

function podErrors(pod: V1PodSpec): string[] {
  const restart =
    pod.restartPolicy === 'Never' || pod.restartPolicy === 'OnFailure'
      ? []
      : [`spec.template.spec.restartPolicy: must be Never or OnFailure for a Job, not "${pod.restartPolicy ?? ''}"`];
  return [...restart, ...containerErrors(pod), ...volumeErrors(pod)];
}

/**
 * The checks the API server applies to a Job that a template can get wrong, as "field: problem" lines.
 * Catching them at startup beats a 422 at the first dispatch, hours later.
 */
export function validateJob(job: V1Job): string[] {
  const errors: string[] = [];
  const name = job.metadata?.name ?? '';
  if (!isDnsLabel(name)) errors.push(`metadata.name: "${name}" must be a DNS-1123 label of at most 63 characters`);
  if (job.apiVersion !== 'batch/v1') errors.push(`apiVersion: must be batch/v1, not "${job.apiVersion ?? ''}"`);
  if (job.kind !== 'Job') errors.push(`kind: must be Job, not "${job.kind ?? ''}"`);
  errors.push(...labelErrors('metadata.labels', job.metadata?.labels));
  const spec = job.spec;
  if (!spec?.template?.spec) return [...errors, 'spec.template.spec: Required value'];
  errors.push(...specErrors(spec));
  errors.push(...labelErrors('spec.template.metadata.labels', spec.template.metadata?.labels));
  return [...errors, ...podErrors(spec.template.spec)];
}

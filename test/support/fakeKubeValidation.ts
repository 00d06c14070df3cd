// The fake API server's own validation of a Job, written from the API server's messages rather than shared
// with src/jobTemplate.ts: a test double that reuses the code under test would agree with its bugs.
import * as k8s from '@kubernetes/client-node';
import type { V1Job } from '@kubernetes/client-node';

export interface Cause {
  reason: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueNotSupported' | 'FieldValueDuplicate';
  message: string;
  field: string;
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function validateJobLikeApiServer(job: V1Job): Cause[] {
  const causes: Cause[] = [];
  const add = (reason: Cause['reason'], field: string, message: string) => causes.push({ reason, field, message });
  const name = job.metadata?.name;
  if (!name) add('FieldValueRequired', 'metadata.name', 'Required value: name or generateName is required');
  else if (name.length > 63)
    add('FieldValueInvalid', 'metadata.name', `Invalid value: "${name}": must be no more than 63 characters`);
  else if (!dns1123Label.test(name))
    add(
      'FieldValueInvalid',
      'metadata.name',
      `Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`,
    );
  for (const [where, labels] of [
    ['metadata.labels', job.metadata?.labels],
    ['spec.template.metadata.labels', job.spec?.template?.metadata?.labels],
  ] as const) {
    for (const [k, v] of Object.entries(labels ?? {})) {
      if (typeof v !== 'string' || v.length > 63 || !labelValue.test(v))
        add(
          'FieldValueInvalid',
          where,
          `Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.' (label ${k})`,
        );
    }
  }
  const pod = job.spec?.template?.spec;
  if (!pod) {
    add('FieldValueRequired', 'spec.template.spec.containers', 'Required value');
    return causes;
  }
  const policy = pod.restartPolicy ?? 'Always';
  if (policy !== 'Never' && policy !== 'OnFailure')
    add(
      'FieldValueNotSupported',
      'spec.template.spec.restartPolicy',
      `Unsupported value: "${policy}": supported values: "OnFailure", "Never"`,
    );
  if (!pod.containers || pod.containers.length === 0)
    add('FieldValueRequired', 'spec.template.spec.containers', 'Required value');
  const names = new Set<string>();
  (pod.containers ?? []).forEach((c, i) => {
    if (!c.name) add('FieldValueRequired', `spec.template.spec.containers[${i}].name`, 'Required value');
    else if (names.has(c.name))
      add('FieldValueDuplicate', `spec.template.spec.containers[${i}].name`, `Duplicate value: "${c.name}"`);
    names.add(c.name ?? '');
    if (!c.image) add('FieldValueRequired', `spec.template.spec.containers[${i}].image`, 'Required value');
  });
  for (const f of ['backoffLimit', 'ttlSecondsAfterFinished', 'activeDeadlineSeconds'] as const) {
    const v = job.spec?.[f];
    if (v !== undefined && (typeof v !== 'number' || v < 0))
      add('FieldValueInvalid', `spec.${f}`, `Invalid value: ${String(v)}: must be greater than or equal to 0`);
  }
  return causes;
}

// Strict field validation (fieldValidation=Strict): every field the API server's types do not have, named as
// its strict decoder names them (`spec.template.spec.toleration`, `…containers[0].resources.limit`). The types
// come from client-node's models (generated from the Kubernetes OpenAPI document), not from src/.
interface Attribute {
  baseName: string;
  type: string;
}
type Model = { getAttributeTypeMap(): Attribute[] };

function model(type: string): Model | null {
  const found = (k8s as unknown as Record<string, unknown>)[type] as Partial<Model> | undefined;
  return typeof found?.getAttributeTypeMap === 'function' ? (found as Model) : null;
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

function unknownIn(path: string, value: unknown, type: string, found: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const inner = ARRAY.exec(type)?.[1] ?? MAP.exec(type)?.[1];
  const at = (k: string) => (path === '' ? k : `${path}.${k}`);
  if (inner) {
    for (const [k, v] of Object.entries(value))
      unknownIn(Array.isArray(value) ? `${path}[${k}]` : at(k), v, inner, found);
    return;
  }
  const fields = model(type)?.getAttributeTypeMap();
  if (!fields || Array.isArray(value)) return;
  const byName = new Map(fields.map((f) => [f.baseName, f.type]));
  for (const [k, v] of Object.entries(value)) {
    const fieldType = byName.get(k);
    if (fieldType === undefined) found.push(at(k));
    else unknownIn(at(k), v, fieldType, found);
  }
}

/** The paths of the fields a batch/v1 Job does not have (status aside: the server drops it on create). */
export function unknownFieldsLikeApiServer(job: unknown): string[] {
  const found: string[] = [];
  unknownIn('', job, 'V1Job', found);
  return found.filter((p) => !p.startsWith('status.'));
}

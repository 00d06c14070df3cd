// A Job template checked against the Kubernetes OpenAPI schema of batch/v1 Job, as the API server would check
// it at the first dispatch (hours later, as a 422): issue 15's `toleration:` for `tolerations:`, `limit:` for
// `limits:`, `nvidia.com/gpu: one`, an uppercase volume name. Three sources, because none covers all:
// - `kubernetes-models` (Kubernetes 1.34's schema compiled to ajv validators): kinds, enums, required fields,
//   quantities (`nvidia.com/gpu: one`), int-or-string. Its schemas allow unknown fields (no
//   additionalProperties) and carry no property lists at run time.
// - @kubernetes/client-node's models (generated from the same 1.34 OpenAPI document): the fields each type
//   has, so an unknown one is reported, with the nearest known name.
// - Names the OpenAPI document does not constrain but the API server's validation does (volumes, mounts).
import * as k8s from '@kubernetes/client-node';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { fieldPath } from './templateShape.js';

interface Attribute {
  baseName: string;
  type: string;
}
type Model = { getAttributeTypeMap(): Attribute[] };

/** `a.b`, or just `b` at the top. */
const child = (path: string, key: string): string => (path === '' ? key : fieldPath(path, key));

function model(type: string): Model | null {
  const found = (k8s as unknown as Record<string, unknown>)[type] as Partial<Model> | undefined;
  return typeof found?.getAttributeTypeMap === 'function' ? (found as Model) : null;
}

/** Edit distance, for "did you mean": `toleration` → `tolerations` is 1, `limit` → `limits` 1. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

function unknownField(path: string, key: string, known: string[]): string {
  const near = known
    .map((k) => [k, distance(key.toLowerCase(), k.toLowerCase())] as const)
    .filter(([k, d]) => d <= Math.max(2, Math.floor(k.length / 4)))
    .sort((x, y) => x[1] - y[1])[0];
  return `${child(path, key)}: unknown field${near ? ` (did you mean ${near[0]}?)` : ''}`;
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

/** The fields of `value` that its type (`V1Job`, `Array<V1Container>`, a map of …) does not have. */
function unknownIn(path: string, value: unknown, type: string, errors: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const inner = ARRAY.exec(type)?.[1] ?? MAP.exec(type)?.[1];
  if (inner) {
    for (const [k, v] of Object.entries(value))
      unknownIn(Array.isArray(value) ? `${path}[${k}]` : child(path, k), v, inner, errors);
    return;
  }
  const fields = model(type)?.getAttributeTypeMap();
  if (!fields || Array.isArray(value)) return; // a scalar type, `any`, or the wrong kind (reported elsewhere)
  const byName = new Map(fields.map((f) => [f.baseName, f.type]));
  for (const [k, v] of Object.entries(value)) {
    const fieldType = byName.get(k);
    if (fieldType === undefined) errors.push(unknownField(path, k, [...byName.keys()]));
    else unknownIn(child(path, k), v, fieldType, errors);
  }
}

export function unknownFieldErrors(doc: unknown): string[] {
  const errors: string[] = [];
  unknownIn('', doc, 'V1Job', errors);
  return errors;
}

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** `/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu` as `…containers[0]…limits["nvidia.com/gpu"]`. */
function readablePath(doc: unknown, pointer: string): string {
  let path = '';
  let at: unknown = doc;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    path = Array.isArray(at) ? `${path}[${key}]` : child(path, key);
    at = at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[key] : undefined;
  }
  return path;
}

const QUANTITY = 'must be a quantity such as 2, 500m, 1.5 or 16Gi';

/** One problem per field: ajv reports a quantity's `oneOf` branches (number, string of format quantity) apart. */
function problem(errors: AjvError[], value: unknown): string {
  const shown = JSON.stringify(value) ?? String(value);
  if (errors.some((e) => e.keyword === 'format' && e.params.format === 'quantity')) return `${QUANTITY} (got ${shown})`;
  const e = errors.find((x) => x.keyword !== 'oneOf') ?? errors[0]!;
  if (e.keyword === 'enum') return `must be one of ${(e.params.allowedValues as unknown[]).join(', ')} (got ${shown})`;
  if (e.keyword === 'type')
    return `must be ${e.params.type === 'integer' ? 'an' : 'a'} ${e.params.type} (got ${shown})`;
  return `${e.message ?? e.keyword} (got ${shown})`;
}

function valueAt(doc: unknown, pointer: string): unknown {
  return pointer
    .split('/')
    .slice(1)
    .reduce<unknown>(
      (at, raw) => (at as Record<string, unknown> | null)?.[raw.replaceAll('~1', '/').replaceAll('~0', '~')],
      doc,
    );
}

/** What the OpenAPI schema says of each field's value: kinds, enums, quantities, required fields. */
export function schemaErrors(doc: Record<string, unknown>): string[] {
  try {
    new Job({ apiVersion: 'batch/v1', kind: 'Job', ...doc } as ConstructorParameters<typeof Job>[0]).validate();
    return [];
  } catch (err: unknown) {
    // A template's status is ignored by the API server on create: not worth a refusal.
    const errors = ((err as { errors?: AjvError[] }).errors ?? []).filter((e) => !e.instancePath.startsWith('/status'));
    const byPath = new Map<string, AjvError[]>();
    for (const e of errors) {
      const pointer =
        e.keyword === 'required' ? `${e.instancePath}/${String(e.params.missingProperty)}` : e.instancePath;
      byPath.set(pointer, [...(byPath.get(pointer) ?? []), e]);
    }
    return [...byPath].map(([pointer, list]) =>
      list[0]!.keyword === 'required'
        ? `${readablePath(doc, pointer)}: Required value`
        : `${readablePath(doc, pointer)}: ${problem(list, valueAt(doc, pointer))}`,
    );
  }
}

// The values of a Job template's fields checked offline against the OpenAPI schema of batch/v1 Job, as the API
// server would check them at the first dispatch (hours later): `nvidia.com/gpu: one`, a string where a number
// goes, an enum misspelt, a required field missing. `kubernetes-models` (Kubernetes 1.34's schema compiled to
// ajv validators) knows kinds, enums, required fields, quantities and int-or-string; its schemas allow unknown
// fields, and so does this check: a field 1.34 does not know may be a newer cluster's, and with a cluster the
// API server's strict dry run at startup judges every field (templateCheck.ts).
import { Job } from 'kubernetes-models/batch/v1/Job';
import { fieldPath } from './templateShape.js';

/** `a.b`, or just `b` at the top. */
const child = (path: string, key: string): string => (path === '' ? key : fieldPath(path, key));

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

// Validates a rendered object against the JSON schema of its apiVersion and kind: the Kubernetes API's from
// kubernetes-models, the Prometheus Operator's CRDs from @kubernetes-models/prometheus-operator. Each kind's
// module is imported on its own (~0.1 s for the few the chart renders; the packages' whole index takes 1.2 s).
// The schemas catch wrong types, missing required fields and bad enum values; unknown fields pass, which is
// what `kubectl apply` with the server's field validation would refuse instead.
import type { K8sObject } from './helm.js';

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: unknown) => Validatable;

/** The module of a kind: kubernetes-models/<group>/<version>/<Kind>, the core group being the bare version. */
function modulePath(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (group === 'monitoring.coreos.com') return `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

/** Throws, naming the object and the schema's complaint, when `obj` does not match its kind's schema. */
export async function validateObject(obj: K8sObject): Promise<void> {
  const path = modulePath(obj.apiVersion, obj.kind);
  const module = (await import(path).catch(() => {
    throw new Error(`${obj.kind} ${obj.metadata.name}: no schema for ${obj.apiVersion} ${obj.kind} (${path})`);
  })) as Record<string, ModelClass>;
  const Model = module[obj.kind];
  if (!Model) throw new Error(`${path} exports no ${obj.kind}`);
  try {
    new Model(obj).validate();
  } catch (err: unknown) {
    throw new Error(`${obj.kind} ${obj.metadata.name ?? obj.metadata.generateName}: ${String(err)}`);
  }
}

// The Job the controller submits: a template (the default below, or JOB_TEMPLATE_FILE) plus what the
// controller owns: name, namespace, the app=<TRAINING_NAME> label, the run-id label, the finalizer and the
// TRAINING_* env (core/instance.ts names them).
import { readFile } from 'node:fs/promises';
import type { V1Container, V1EnvVar, V1Job } from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { schemaErrors } from './jobSchema.js';
import { validateJob } from './jobValidation.js';
import { templateShapeErrors } from './templateShape.js';
import { TemplateError } from '../core/errors.js';
import { DEFAULT_INSTANCE, jobName, type Instance } from '../core/instance.js';

export interface RunIdentity {
  name: string;
  namespace: string;
  runId: number;
  annotationCount: number;
}

/** The first of base, base-2, base-3 … that is not taken (runs started within the same second). */
export function freeName(base: string, taken: ReadonlySet<string>): string {
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

export function defaultTemplate(image: string, ttlSeconds: number): V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {},
    spec: {
      // The controller retries whole runs with its own back-off; a pod retry would re-train the same batch.
      backoffLimit: 0,
      ttlSecondsAfterFinished: ttlSeconds,
      template: {
        metadata: {},
        spec: {
          restartPolicy: 'Never',
          // A training pod must not be able to act with the controller's rights (or any API rights).
          automountServiceAccountToken: false,
          containers: [
            {
              name: 'train',
              image,
              command: [
                'sh',
                '-c',
                'echo "training run $TRAINING_RUN_ID on $TRAINING_ANNOTATION_COUNT annotations"; sleep 30',
              ],
              resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
            },
          ],
        },
      },
    },
  };
}

const OWNED_ENV = new Set(['TRAINING_RUN_ID', 'TRAINING_ANNOTATION_COUNT']);

function withRunEnv(c: V1Container, run: RunIdentity): V1Container {
  const env: V1EnvVar[] = (c.env ?? []).filter((e) => !OWNED_ENV.has(e.name));
  env.push(
    { name: 'TRAINING_RUN_ID', value: String(run.runId) },
    { name: 'TRAINING_ANNOTATION_COUNT', value: String(run.annotationCount) },
  );
  return { ...c, env };
}

/** The template with the controller-owned fields set. Never mutates the template. */
export function buildJob(template: V1Job, run: RunIdentity, instance: Instance): V1Job {
  const job = structuredClone(template);
  const labels = { [instance.appLabel]: instance.appValue, [instance.runIdLabel]: String(run.runId) };
  job.apiVersion = 'batch/v1';
  job.kind = 'Job';
  const finalizers = [...(job.metadata?.finalizers ?? []).filter((f) => f !== instance.finalizer), instance.finalizer];
  job.metadata = {
    ...job.metadata,
    name: run.name,
    namespace: run.namespace,
    labels: { ...job.metadata?.labels, ...labels },
    finalizers,
  };
  delete job.metadata.generateName;
  const spec = job.spec ?? { template: {} };
  spec.template.metadata = { ...spec.template.metadata, labels: { ...spec.template.metadata?.labels, ...labels } };
  if (spec.template.spec) {
    spec.template.spec.containers = (spec.template.spec.containers ?? []).map((c) => withRunEnv(c, run));
    if (spec.template.spec.initContainers)
      spec.template.spec.initContainers = spec.template.spec.initContainers.map((c) => withRunEnv(c, run));
  }
  job.spec = spec;
  return job;
}

/**
 * What a log may say about a Job: its name, namespace and, per container, the name, the image and the names
 * of its env variables. Never the values: a template's `env[].value` is where an S3 key ends up when the
 * cluster has no Secret for it yet, and a log is read by more people than the template. `render-job` prints
 * the whole Job, because the operator asked for it.
 */
export function jobSummary(job: V1Job): Record<string, unknown> {
  const pod = job.spec?.template?.spec;
  const containers = (list: V1Container[] | undefined) =>
    (list ?? []).map((c) => ({ name: c.name, image: c.image, env: (c.env ?? []).map((e) => e.name) }));
  return {
    name: job.metadata?.name,
    namespace: job.metadata?.namespace,
    containers: containers(pod?.containers),
    ...(pod?.initContainers?.length ? { initContainers: containers(pod.initContainers) } : {}),
  };
}

/** Reads and checks JOB_TEMPLATE_FILE. Throws TemplateError with one line naming the file and the field. */
export async function loadJobTemplate(path: string): Promise<V1Job> {
  let doc: unknown;
  try {
    doc = load(await readFile(path, 'utf8'));
  } catch (err: unknown) {
    throw new TemplateError(
      `JOB_TEMPLATE_FILE ${path}: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`,
    );
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new TemplateError(`JOB_TEMPLATE_FILE ${path}: must be one YAML Job object`);
  checkTemplate(doc, `JOB_TEMPLATE_FILE ${path}`);
  return doc;
}

/** At most this many problems on the one line; a template with more has a bigger problem than its details. */
const SHOWN = 5;

function refuse(source: string, errors: string[]): void {
  if (errors.length === 0) return;
  const more = errors.length > SHOWN ? `; and ${errors.length - SHOWN} more` : '';
  throw new TemplateError(`${source}: ${errors.slice(0, SHOWN).join('; ')}${more}`);
}

/** A Deployment pasted by mistake: its kind is the one useful line, not the Job fields it lacks. */
function typeMetaErrors(template: unknown): string[] {
  const { kind, apiVersion } = (typeof template === 'object' && template !== null ? template : {}) as Record<
    string,
    unknown
  >;
  if (typeof kind === 'string' && kind !== 'Job') return [`kind: must be Job, not "${kind}"`];
  if (typeof apiVersion === 'string' && apiVersion !== 'batch/v1')
    return [`apiVersion: must be batch/v1, not "${apiVersion}"`];
  return [];
}

/**
 * Validates a template offline, each step only when the one before found nothing: the kind of Job; the shape
 * of every field the controller touches (so building a Job cannot throw); the values of the fields the OpenAPI
 * schema knows (jobSchema.ts: kinds, enums, quantities); then a sample Job built from it, so controller-owned
 * fields are what they will be. A field this version does not know is not refused here: a newer cluster may
 * have it. With a cluster, its API server judges every field at startup (templateCheck.ts).
 */
export function checkTemplate(template: unknown, source: string): asserts template is V1Job {
  refuse(source, typeMetaErrors(template));
  refuse(source, templateShapeErrors(template));
  const doc = template as Record<string, unknown>;
  refuse(source, schemaErrors(doc));
  const job = template as V1Job;
  const sample = buildJob(
    job,
    { name: jobName(DEFAULT_INSTANCE, new Date(0)), namespace: 'default', runId: 1, annotationCount: 1 },
    DEFAULT_INSTANCE,
  );
  refuse(source, validateJob(sample));
}

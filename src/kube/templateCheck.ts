// The cluster checks the template (issue 20): at startup, with a cluster configured, a Job built from the
// template goes to the API server as a server-side dry run with strict field validation. What that cluster's
// version accepts is accepted (a copy of one version's schema refused a newer cluster's valid fields), and a typo
// (`toleration:`, `limit:`) is refused before the first run, in one line naming the field, as the API server
// named it. Without a cluster (render-job, print mode) only the offline checks of jobTemplate.ts run, and they
// refuse no field for being unknown.
import type { V1Job } from '@kubernetes/client-node';
import { errorMessage, TemplateError } from '../core/errors.js';
import { KubeError } from './errors.js';
import { jobName } from '../core/instance.js';
import { buildJob } from './jobTemplate.js';
import type { JobsApi } from './jobs.js';

/**
 * Resolves when the cluster accepted the template, or when it could not be asked (returns why: an outage must
 * not stop a start, and the first create is judged by the same server). Throws TemplateError when the cluster
 * refused it.
 */
export async function checkOnCluster(jobs: JobsApi, template: V1Job, source: string): Promise<string | null> {
  // Named for 1970, a name no run has: a dry run of an existing name would answer 409, not judge the template.
  const sample = buildJob(
    template,
    { name: jobName(jobs.instance, new Date(0)), namespace: jobs.namespace, runId: 1, annotationCount: 1 },
    jobs.instance,
  );
  try {
    await jobs.dryRunStrict(sample);
    return null;
  } catch (err: unknown) {
    if (err instanceof KubeError && (err.status === 400 || err.status === 422))
      throw new TemplateError(`${source}: ${refusal(err.detail)} (the API server's strict validation)`);
    return errorMessage(err);
  }
}

/**
 * The API server's words, made one line that starts with the field: strict decoding names each unknown field
 * (`… strict decoding error: unknown field "spec.template.spec.toleration"`), validation names the field of each
 * cause (`Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value`).
 */
export function refusal(detail: string): string {
  const unknown = [...detail.matchAll(/unknown field "([^"]+)"/g)].map((m) => `${m[1]}: unknown field`);
  if (unknown.length > 0) return unknown.join('; ');
  const invalid = /is invalid: (.*)$/s.exec(detail)?.[1];
  if (invalid) return invalid.replace(/\s+/g, ' ');
  return (/cannot be handled as a Job: (.*)$/s.exec(detail)?.[1] ?? detail).replace(/\s+/g, ' ');
}

// Issue 15: typos in JOB_TEMPLATE_FILE passed startup and met the API server only at the first dispatch (a
// Job that never schedules, runs without its GPU limit, or a 422 hours later). Each is now one line naming the
// file and the field path, exit 2, as templateShape.ts does for its own checks. Offline, a field Kubernetes 1.34
// does not know is not refused (issue 20: a newer cluster may have it); with a cluster, its API server refuses
// unknown fields at startup (test/templateCluster.test.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import { schemaErrors } from '../../src/kube/jobSchema.js';
import { TemplateError } from '../../src/core/errors.js';
import { checkTemplate, defaultTemplate } from '../../src/kube/jobTemplate.js';
import { packageRoot } from '../../src/core/paths.js';

const SOURCE = 'JOB_TEMPLATE_FILE /etc/training-controller/job.yaml';

// `any`: a template is whatever YAML the operator wrote, and each case breaks it differently.
const valid = (): any =>
  load(`
apiVersion: batch/v1
kind: Job
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 3600
  template:
    spec:
      restartPolicy: Never
      tolerations:
        - { key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }
      volumes:
        - { name: data, emptyDir: { sizeLimit: 10Gi } }
      containers:
        - name: train
          image: registry.example.com/sentinel/train:1.4.2
          ports: [{ containerPort: 8080, name: metrics }]
          resources:
            requests: { cpu: 500m, memory: 16Gi }
            limits: { memory: 16Gi, nvidia.com/gpu: 1 }
          volumeMounts: [{ name: data, mountPath: /data }]
`);

const refusal = (t: unknown): string => {
  try {
    checkTemplate(t, SOURCE);
  } catch (err: unknown) {
    assert.ok(err instanceof TemplateError, String(err));
    assert.ok(!err.message.includes('\n'), 'one line');
    return err.message;
  }
  return assert.fail('expected the template to be refused');
};

const cases: [string, (t: any) => void, string][] = [
  [
    '`nvidia.com/gpu: one`',
    (t) => (t.spec.template.spec.containers[0].resources.limits['nvidia.com/gpu'] = 'one'),
    'spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]: must be a quantity such as 2, 500m, 1.5 or 16Gi (got "one")',
  ],
  [
    'an uppercase volume name',
    (t) => {
      t.spec.template.spec.volumes[0].name = 'Data';
      t.spec.template.spec.containers[0].volumeMounts[0].name = 'Data';
    },
    'spec.template.spec.volumes[0].name: "Data" must be a DNS-1123 label (lowercase letters, digits and -, at most 63)',
  ],
  [
    'a mount of no volume',
    (t) => (t.spec.template.spec.containers[0].volumeMounts[0].name = 'datta'),
    'spec.template.spec.containers[0].volumeMounts[0].name: "datta" names no volume',
  ],
  [
    'an enum value the API does not have',
    (t) => (t.spec.template.spec.tolerations[0].operator = 'Exist'),
    'spec.template.spec.tolerations[0].operator: must be one of',
  ],
  [
    'a required field left out',
    (t) => delete t.spec.template.spec.containers[0].volumeMounts[0].mountPath,
    'spec.template.spec.containers[0].volumeMounts[0].mountPath: Required value',
  ],
  [
    'a port number written as text',
    (t) => (t.spec.template.spec.containers[0].ports[0].containerPort = '8080'),
    'spec.template.spec.containers[0].ports[0].containerPort: must be an integer (got "8080")',
  ],
];

describe('a Job template checked like the API server would', () => {
  it('accepts a valid template with GPUs, tolerations, volumes and ports', () => {
    assert.deepEqual(schemaErrors(valid()), []);
    assert.doesNotThrow(() => checkTemplate(valid(), SOURCE));
  });

  it('accepts the default template and the one shipped in deploy/job-template.yaml', () => {
    assert.doesNotThrow(() => checkTemplate(defaultTemplate('alpine:3.20.3', 3600), 'TRAINING_IMAGE'));
    const shipped = load(readFileSync(join(packageRoot(), 'deploy', 'job-template.yaml'), 'utf8'));
    assert.deepEqual(schemaErrors(shipped as Record<string, unknown>), []);
  });

  for (const [name, breakIt, expected] of cases) {
    it(`refuses ${name}: one line naming the file and the field`, () => {
      const t = valid();
      breakIt(t);
      const message = refusal(t);
      assert.ok(message.startsWith(`${SOURCE}: ${expected}`), message);
    });
  }

  it('says how many more problems there are past the first five', () => {
    const t = valid();
    t.spec.template.spec.containers[0].ports = [1, 2, 3, 4, 5, 6, 7].map((n) => ({ containerPort: `${n}` }));
    assert.match(refusal(t), /; and 2 more$/);
  });

  it('offline, accepts a field Kubernetes 1.34 does not know: a newer cluster may have it, and judges it', () => {
    const t = valid();
    t.spec.template.spec.workloadRef = { name: 'trainers' }; // a field of a version after 1.34
    t.spec.template.spec.containers[0].resources.limit = { cpu: '1' }; // or a typo: the cluster refuses it
    assert.doesNotThrow(() => checkTemplate(t, SOURCE));
  });
});

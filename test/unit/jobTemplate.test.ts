import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildJob, defaultTemplate, freeName, jobSummary, loadJobTemplate } from '../../src/kube/jobTemplate.js';
import { DEFAULT_INSTANCE, baseName as baseNameOf, jobName as jobNameOf } from '../../src/core/instance.js';

const { runIdLabel: RUN_ID_LABEL, finalizer: SETTLE_FINALIZER } = DEFAULT_INSTANCE;
const jobName = (at: Date) => jobNameOf(DEFAULT_INSTANCE, at);
const baseName = (name: string) => baseNameOf(DEFAULT_INSTANCE, name);
import { validateJob } from '../../src/kube/jobValidation.js';

const run = { name: 'sentinel-training-20261126-195426', namespace: 'ml', runId: 42, annotationCount: 57 };

describe('job naming', () => {
  it('is sentinel-training-YYYYMMDD-HHMMSS in UTC', () => {
    assert.equal(jobName(new Date('2026-11-26T19:54:26.999Z')), 'sentinel-training-20261126-195426');
    assert.equal(jobName(new Date('2026-01-02T03:04:05+05:00')), 'sentinel-training-20260101-220405');
  });

  it('stays a DNS-1123 label under 63 characters, with room for a suffix', () => {
    const name = freeName(jobName(new Date()), new Set());
    assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    assert.ok(`${name}-999`.length <= 63);
  });

  it('adds -2, -3 when runs start within the same second', () => {
    const base = 'sentinel-training-20261126-195426';
    assert.equal(freeName(base, new Set()), base);
    assert.equal(freeName(base, new Set([base])), `${base}-2`);
    assert.equal(freeName(base, new Set([base, `${base}-2`])), `${base}-3`);
    assert.equal(baseName(`${base}-3`), base);
    assert.equal(baseName('my-job-3'), 'my-job-3');
  });
});

describe('building the Job', () => {
  const job = buildJob(defaultTemplate('alpine:3.20.3', 3600), run, DEFAULT_INSTANCE);

  it('sets the name, namespace and both labels on the Job and its pods', () => {
    assert.equal(job.metadata?.name, run.name);
    assert.equal(job.metadata?.namespace, 'ml');
    for (const labels of [job.metadata?.labels, job.spec?.template.metadata?.labels]) {
      assert.equal(labels?.app, 'sentinel-training');
      assert.equal(labels?.[RUN_ID_LABEL], '42');
    }
  });

  it('gives every container TRAINING_RUN_ID and TRAINING_ANNOTATION_COUNT, replacing template values', () => {
    const template = defaultTemplate('alpine', 3600);
    template.spec!.template.spec!.containers.push({
      name: 'sidecar',
      image: 'busybox',
      env: [
        { name: 'TRAINING_RUN_ID', value: 'stale' },
        { name: 'KEEP', value: '1' },
      ],
    });
    const built = buildJob(template, run, DEFAULT_INSTANCE);
    for (const c of built.spec?.template.spec?.containers ?? []) {
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(env.TRAINING_RUN_ID, '42');
      assert.equal(env.TRAINING_ANNOTATION_COUNT, '57');
    }
    assert.equal(built.spec?.template.spec?.containers[1]?.env?.find((e) => e.name === 'KEEP')?.value, '1');
    assert.equal(template.spec?.template.spec?.containers[1]?.env?.[0]?.value, 'stale', 'the template is not mutated');
  });

  it('carries the settle finalizer, once, beside any finalizer of the template', () => {
    const template = defaultTemplate('alpine', 3600);
    template.metadata = { finalizers: ['example.com/keep', SETTLE_FINALIZER] };
    assert.deepEqual(buildJob(template, run, DEFAULT_INSTANCE).metadata?.finalizers, [
      'example.com/keep',
      SETTLE_FINALIZER,
    ]);
    assert.deepEqual(job.metadata?.finalizers, [SETTLE_FINALIZER]);
  });

  it('defaults to a safe, small Job: Never restarts, TTL, no service account token', () => {
    assert.equal(job.spec?.template.spec?.restartPolicy, 'Never');
    assert.equal(job.spec?.ttlSecondsAfterFinished, 3600);
    assert.equal(job.spec?.backoffLimit, 0);
    assert.equal(job.spec?.template.spec?.automountServiceAccountToken, false);
    assert.deepEqual(validateJob(job), []);
  });
});

describe('what a log says about a Job', () => {
  // Issue 10, item 2: an S3 secret key from a template's env appeared in the print-mode log.
  it('names the Job, its containers, images and env variables, never an env value', () => {
    const template = defaultTemplate('alpine', 3600);
    template.spec!.template.spec!.containers[0]!.env = [
      { name: 'AWS_SECRET_ACCESS_KEY', value: 'wJalrXUtnFEMI-K7MDENG' },
    ];
    template.spec!.template.spec!.initContainers = [{ name: 'fetch', image: 'busybox:1.36' }];
    const summary = jobSummary(buildJob(template, run, DEFAULT_INSTANCE));
    assert.deepEqual(summary, {
      name: run.name,
      namespace: 'ml',
      containers: [
        {
          name: 'train',
          image: 'alpine',
          env: ['AWS_SECRET_ACCESS_KEY', 'TRAINING_RUN_ID', 'TRAINING_ANNOTATION_COUNT'],
        },
      ],
      initContainers: [{ name: 'fetch', image: 'busybox:1.36', env: ['TRAINING_RUN_ID', 'TRAINING_ANNOTATION_COUNT'] }],
    });
    assert.ok(!JSON.stringify(summary).includes('wJalr'));
  });
});

describe('validating a Job like the API server', () => {
  const valid = () => buildJob(defaultTemplate('alpine', 3600), run, DEFAULT_INSTANCE);
  const cases: [string, (j: ReturnType<typeof valid>) => void, RegExp][] = [
    [
      'restartPolicy Always',
      (j) => (j.spec!.template.spec!.restartPolicy = 'Always'),
      /^spec\.template\.spec\.restartPolicy: must be Never or OnFailure/,
    ],
    [
      'no containers',
      (j) => (j.spec!.template.spec!.containers = []),
      /^spec\.template\.spec\.containers: Required value/,
    ],
    [
      'a container without image',
      (j) => (j.spec!.template.spec!.containers[0]!.image = ''),
      /^spec\.template\.spec\.containers\[0\]\.image: Required value/,
    ],
    [
      'an upper-case container name',
      (j) => (j.spec!.template.spec!.containers[0]!.name = 'Train'),
      /containers\[0\]\.name: "Train" must be a DNS-1123 label/,
    ],
    [
      'a bad label value',
      (j) => (j.metadata!.labels!.team = 'ML team'),
      /^metadata\.labels\.team: invalid label value/,
    ],
    ['a name over 63 characters', (j) => (j.metadata!.name = 'x'.repeat(64)), /^metadata\.name/],
    ['a negative backoffLimit', (j) => (j.spec!.backoffLimit = -1), /^spec\.backoffLimit/],
    [
      'a TTL that deletes a finished Job within minutes',
      (j) => (j.spec!.ttlSecondsAfterFinished = 0),
      /^spec\.ttlSecondsAfterFinished: at least 600/,
    ],
  ];
  for (const [name, mutate, expected] of cases) {
    it(`rejects ${name}`, () => {
      const j = valid();
      mutate(j);
      assert.match(validateJob(j).join('\n'), expected);
    });
  }
});

describe('JOB_TEMPLATE_FILE', () => {
  const write = async (text: string) => {
    const path = join(await mkdtemp(join(tmpdir(), 'tpl-')), 'job.yaml');
    await writeFile(path, text);
    return path;
  };

  it('loads a GPU template with tolerations and secrets', async () => {
    const path = await write(`apiVersion: batch/v1
kind: Job
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      tolerations: [{ key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }]
      containers:
        - name: train
          image: registry.example.com/sentinel/train:1.4.2
          resources: { limits: { nvidia.com/gpu: 1 } }
          envFrom: [{ secretRef: { name: training-db } }]
`);
    const template = await loadJobTemplate(path);
    const job = buildJob(template, run, DEFAULT_INSTANCE);
    assert.equal(job.spec?.template.spec?.containers[0]?.resources?.limits?.['nvidia.com/gpu'], 1);
    assert.equal(job.spec?.template.spec?.tolerations?.[0]?.key, 'nvidia.com/gpu');
    assert.equal(job.metadata?.labels?.app, 'sentinel-training');
  });

  it('names the file and the field when the template is invalid', async () => {
    const path = await write(`apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers: [{ name: train, image: alpine }]
`);
    await assert.rejects(loadJobTemplate(path), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(`^JOB_TEMPLATE_FILE ${path}: spec\\.template\\.spec\\.restartPolicy: must be Never or OnFailure`),
      );
      return true;
    });
  });

  it('rejects a file that is not YAML or not a Job', async () => {
    await assert.rejects(
      loadJobTemplate(await write('spec: [unclosed')),
      /^TemplateError: JOB_TEMPLATE_FILE .*job\.yaml: /,
    );
    await assert.rejects(loadJobTemplate(await write('kind: Deployment\nspec: {}\n')), /kind: must be Job/);
  });
});

// Issue 10, item 3: a template whose fields have the wrong shape ended in a TypeError naming neither the file
// nor the field (a containers map, an env map, `image: 5`, an initContainers map, no spec.template), was
// accepted and rendered as a character map (`metadata: hello`), or made a Job that never finishes
// (`spec.suspend: true`), whose open run blocks every later run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import { TemplateError } from '../../src/core/errors.js';
import { checkTemplate, defaultTemplate } from '../../src/kube/jobTemplate.js';
import { templateShapeErrors } from '../../src/kube/templateShape.js';

const SOURCE = 'JOB_TEMPLATE_FILE /etc/training-controller/job.yaml';

// `any`: a template is whatever YAML the operator wrote, and each case breaks it differently.
const valid = (): any =>
  load(`
apiVersion: batch/v1
kind: Job
metadata:
  labels: { team: ml }
  annotations: { owner: ml-platform }
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 3600
  template:
    metadata: { labels: { gpu: "true" } }
    spec:
      restartPolicy: Never
      initContainers:
        - { name: fetch, image: busybox:1.36, command: [sh, -c, 'true'] }
      containers:
        - name: train
          image: registry.example.com/sentinel/train:1.4.2
          args: [--epochs, '3']
          env:
            - { name: EPOCHS, value: '3' }
            - { name: DB, valueFrom: { secretKeyRef: { name: training-db, key: url } } }
`);

const cases: [string, (t: any) => void, string][] = [
  [
    'a containers map',
    (t) => (t.spec.template.spec.containers = { train: { image: 'x' } }),
    'spec.template.spec.containers: must be an array (got an object)',
  ],
  [
    'an env map',
    (t) => (t.spec.template.spec.containers[0].env = { EPOCHS: '3' }),
    'spec.template.spec.containers[0].env: must be an array (got an object)',
  ],
  [
    'a numeric image',
    (t) => (t.spec.template.spec.containers[0].image = 5),
    'spec.template.spec.containers[0].image: must be a string (got an integer; quote it)',
  ],
  [
    'an initContainers map',
    (t) => (t.spec.template.spec.initContainers = { fetch: { image: 'x' } }),
    'spec.template.spec.initContainers: must be an array (got an object)',
  ],
  ['no spec.template', (t) => delete t.spec.template, 'spec.template: Required value'],
  ['no spec', (t) => delete t.spec, 'spec: Required value'],
  ['no pod spec', (t) => (t.spec.template = { metadata: {} }), 'spec.template.spec: Required value'],
  ['no containers', (t) => delete t.spec.template.spec.containers, 'spec.template.spec.containers: Required value'],
  ['metadata as a string', (t) => (t.metadata = 'hello'), 'metadata: must be an object (got a string)'],
  [
    'a numeric label value',
    (t) => (t.metadata.labels.version = 1.1),
    'metadata.labels.version: must be a string (got a number; quote it)',
  ],
  [
    'a boolean label value under a prefixed key',
    (t) => (t.metadata.labels['example.com/gpu'] = true),
    'metadata.labels["example.com/gpu"]: must be a string (got a boolean; quote it)',
  ],
  [
    'an empty pod label value',
    (t) => (t.spec.template.metadata.labels.gpu = null),
    'spec.template.metadata.labels.gpu: must be a string (got null)',
  ],
  ['labels as a list', (t) => (t.metadata.labels = ['team=ml']), 'metadata.labels: must be an object (got an array)'],
  [
    'a numeric annotation',
    (t) => (t.metadata.annotations.cost = 12),
    'metadata.annotations.cost: must be a string (got an integer; quote it)',
  ],
  [
    'finalizers as a string',
    (t) => (t.metadata.finalizers = 'example.com/keep'),
    'metadata.finalizers: must be an array (got a string)',
  ],
  ['a numeric name', (t) => (t.metadata.name = 7), 'metadata.name: must be a string (got an integer; quote it)'],
  [
    'an object generateName',
    (t) => (t.metadata.generateName = { prefix: 'x' }),
    'metadata.generateName: must be a string (got an object)',
  ],
  [
    'a TTL as text',
    (t) => (t.spec.ttlSecondsAfterFinished = '3600'),
    'spec.ttlSecondsAfterFinished: must be an integer (got a string)',
  ],
  [
    'a fractional deadline',
    (t) => (t.spec.activeDeadlineSeconds = 1.5),
    'spec.activeDeadlineSeconds: must be an integer (got a number)',
  ],
  [
    'a backoffLimit as text',
    (t) => (t.spec.backoffLimit = 'none'),
    'spec.backoffLimit: must be an integer (got a string)',
  ],
  [
    'spec.suspend: true',
    (t) => (t.spec.suspend = true),
    'spec.suspend: must not be set (a suspended Job never finishes, and its open run would block every later run)',
  ],
  ['spec.suspend as text', (t) => (t.spec.suspend = 'false'), 'spec.suspend: must not be set'],
  [
    'a container written as a string',
    (t) => (t.spec.template.spec.containers = ['train']),
    'spec.template.spec.containers[0]: must be an object (got a string)',
  ],
  [
    'an env entry as NAME=value',
    (t) => (t.spec.template.spec.containers[0].env = ['EPOCHS=3']),
    'spec.template.spec.containers[0].env[0]: must be an object (got a string)',
  ],
  [
    'a numeric env value',
    (t) => (t.spec.template.spec.containers[0].env[0].value = 3),
    'spec.template.spec.containers[0].env[0].value: must be a string (got an integer; quote it)',
  ],
  [
    'an env entry without a name',
    (t) => delete t.spec.template.spec.containers[0].env[0].name,
    'spec.template.spec.containers[0].env[0].name: Required value',
  ],
  [
    'a valueFrom as a string',
    (t) => (t.spec.template.spec.containers[0].env[1].valueFrom = 'training-db'),
    'spec.template.spec.containers[0].env[1].valueFrom: must be an object (got a string)',
  ],
  [
    'an init container env map',
    (t) => (t.spec.template.spec.initContainers[0].env = { A: 'b' }),
    'spec.template.spec.initContainers[0].env: must be an array (got an object)',
  ],
  [
    'a command as one string',
    (t) => (t.spec.template.spec.initContainers[0].command = 'sh -c true'),
    'spec.template.spec.initContainers[0].command: must be an array (got a string)',
  ],
  [
    'a numeric argument',
    (t) => (t.spec.template.spec.containers[0].args = ['--epochs', 3]),
    'spec.template.spec.containers[0].args[1]: must be a string (got an integer; quote it)',
  ],
  [
    'a numeric container name',
    (t) => (t.spec.template.spec.containers[0].name = 1),
    'spec.template.spec.containers[0].name: must be a string (got an integer; quote it)',
  ],
  [
    'a restartPolicy list',
    (t) => (t.spec.template.spec.restartPolicy = ['Never']),
    'spec.template.spec.restartPolicy: must be a string (got an array)',
  ],
  ['kind as a number', (t) => (t.kind = 1), 'kind: must be a string (got an integer; quote it)'],
];

describe('the shape of a Job template', () => {
  it('accepts a template using every checked field, and the default template', () => {
    assert.deepEqual(templateShapeErrors(valid()), []);
    assert.deepEqual(templateShapeErrors(defaultTemplate('alpine:3.20.3', 3600)), []);
  });

  it('takes a key without a value (null) as absent, as the API server does, and suspend: false as the default', () => {
    const t = valid();
    Object.assign(t, { metadata: null });
    Object.assign(t.spec, { suspend: false, ttlSecondsAfterFinished: null });
    Object.assign(t.spec.template.spec, { initContainers: null });
    t.spec.template.spec.containers[0].env = null;
    assert.deepEqual(templateShapeErrors(t), []);
    assert.doesNotThrow(() => checkTemplate(t, SOURCE));
  });

  for (const [name, mutate, expected] of cases) {
    it(`rejects ${name}: one line naming the file and the field`, () => {
      const t = valid();
      mutate(t);
      assert.throws(
        () => checkTemplate(t, SOURCE),
        (err: unknown) => {
          assert.ok(err instanceof TemplateError, `a TemplateError, not ${String(err)}`);
          assert.ok(err.message.startsWith(`${SOURCE}: ${expected}`), err.message);
          assert.ok(!err.message.includes('\n'), 'one line');
          return true;
        },
      );
    });
  }

  it('lists every wrong field of a template in the same line', () => {
    const t = valid();
    t.metadata = 'hello';
    t.spec.template.spec.containers[0].image = 5;
    assert.deepEqual(templateShapeErrors(t), [
      'metadata: must be an object (got a string)',
      'spec.template.spec.containers[0].image: must be a string (got an integer; quote it)',
    ]);
  });
});

// Issue 20, part 4: the cluster checks the template. With a cluster configured, `run` has the API server judge
// a Job built from JOB_TEMPLATE_FILE (a server-side dry run, strict field validation) before it opens the
// database: a typo is refused in one line naming the field, exit 2; a field the cluster has is accepted even
// where this package's Kubernetes 1.34 types do not know it. The fake API server answers strict validation as
// the real one does (400, `strict decoding error: unknown field "…"`).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LISTENING } from '../src/main.js';
import { spawnCli } from './support/child.js';
import { freshDatabase, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { tripwire, type Tripwire } from './support/tripwire.js';

const template = (podExtra: string, containerExtra = '') => `apiVersion: batch/v1
kind: Job
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
${podExtra}
      containers:
        - name: train
          image: registry.example.com/sentinel/train:1.4.2
${containerExtra}
`;

async function templateFile(text: string): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'tc-template-')), 'job.yaml');
  await writeFile(file, text);
  return file;
}

describe('the cluster checks the Job template at startup', () => {
  let kube: FakeKube;
  let nowhere: Tripwire;
  let db: TestDb;
  before(async () => {
    kube = await FakeKube.start();
    nowhere = await tripwire();
    db = await freshDatabase();
  });
  after(async () => {
    await kube?.stop();
    await nowhere?.close();
    await db?.drop();
  });

  for (const [typo, pod, container, field] of [
    [
      '`toleration:` for `tolerations:`',
      '      toleration: [{ key: nvidia.com/gpu, operator: Exists }]',
      '',
      'spec.template.spec.toleration',
    ],
    [
      '`limit:` for `limits:`',
      '',
      '          resources: { limit: { nvidia.com/gpu: 1 } }',
      'spec.template.spec.containers[0].resources.limit',
    ],
  ] as const) {
    it(`refuses ${typo} in one line naming the field, exit 2, before the database`, async () => {
      const file = await templateFile(template(pod, container));
      const checks = kube.templateChecks.length;
      const r = spawnCli(['run'], {
        JOB_TEMPLATE_FILE: file,
        KUBECONFIG: kube.kubeconfigPath,
        DATABASE_URL: nowhere.url(),
      });
      assert.equal((await r.exited).code, 2);
      assert.deepEqual(r.stderr, [
        `training-controller: JOB_TEMPLATE_FILE ${file}: ${field}: unknown field (the API server's strict validation)`,
      ]);
      assert.equal(kube.templateChecks.length, checks, 'refused: nothing was accepted');
      assert.equal(nowhere.connections(), 0, 'no connection to the database');
      assert.equal(kube.creates.length, 0);
    });
  }

  it("accepts a field this package's 1.34 types do not know when the cluster has it", async () => {
    // A newer cluster: its API server knows spec.template.spec.workloadRef (gang scheduling, after 1.34).
    kube.newerFields.add('spec.template.spec.workloadRef');
    const file = await templateFile(template('      workloadRef: { name: trainers }'));
    const r = spawnCli(['run'], { JOB_TEMPLATE_FILE: file, KUBECONFIG: kube.kubeconfigPath, DATABASE_URL: db.url });
    await r.logs.waitForMsg(LISTENING, 30_000);
    r.proc.kill('SIGTERM');
    assert.equal((await r.exited).code, 0, r.stderr.join('\n'));
    const checked = kube.templateChecks.at(-1) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    assert.deepEqual(checked.spec.template.spec.workloadRef, { name: 'trainers' }, 'sent as written, not dropped');
  });

  it('starts, saying so, when the API server cannot be asked', async () => {
    const file = await templateFile(template('      tolerations: [{ key: nvidia.com/gpu, operator: Exists }]'));
    kube.inject({ verb: 'check-template', status: 503, times: 1 });
    const r = spawnCli(['run'], { JOB_TEMPLATE_FILE: file, KUBECONFIG: kube.kubeconfigPath, DATABASE_URL: db.url });
    const warned = await r.logs.waitForMsg(/^Could not have the API server check the Job template/, 30_000);
    assert.match(String(warned.err), /HTTP 503/);
    await r.logs.waitForMsg(LISTENING, 30_000);
    r.proc.kill('SIGTERM');
    assert.equal((await r.exited).code, 0, r.stderr.join('\n'));
  });
});

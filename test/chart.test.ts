// The Helm chart (charts/training-controller, issue 22) with the real helm 3.17 (test/support/helm.ts): lint and
// render every values file of its ci/, each object against its schema, the settings against the service's own
// config rules, and the same objects as deploy/.
//
// One source of truth, kept by this test rather than by rendering deploy/ from the chart: deploy/ stays plain
// YAML that people read and edit (its comments say why each setting; docs/deploying.md step 5 edits it), and
// kustomize's name hash and Helm's checksum annotation are each the native way to roll the pod on a new Job
// template. A generated deploy/ would lose its comments and be overwritten by the next render; here, a change
// to either side fails the "renders the same objects as deploy/" test until the other says the same.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { load } from 'js-yaml';
import type { V1ConfigMap, V1Deployment, V1Job, V1Role, V1RoleBinding, V1Service } from '@kubernetes/client-node';
import { ENV_DEFAULTS, loadConfig } from '../src/core/config.js';
import { packageRoot } from '../src/core/paths.js';
import { checkTemplate } from '../src/kube/jobTemplate.js';
import { PATHS } from '../src/ops/http.js';
import { CHART, helm, helmTemplate, type K8sObject, kustomize, objects } from './support/helm.js';
import { validateObject } from './support/k8sSchema.js';

const root = packageRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string };
const CI = join(CHART, 'ci');
const ciFiles = readdirSync(CI)
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();
const tmp = mkdtempSync(join(tmpdir(), 'chart-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const find = <T = K8sObject>(objs: K8sObject[], kind: string): T[] => objs.filter((o) => o.kind === kind) as T[];
const one = <T = K8sObject>(objs: K8sObject[], kind: string): T => {
  const found = find<T>(objs, kind);
  assert.equal(found.length, 1, `one ${kind}, got ${found.length}`);
  return found[0]!;
};
const controller = (objs: K8sObject[]) => {
  const d = one<V1Deployment>(objs, 'Deployment');
  return { d, pod: d.spec!.template.spec!, c: d.spec!.template.spec!.containers[0]! };
};
/** A `--set-file`/-f values file written for one test. */
function valuesFile(name: string, text: string): string {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
}

describe('charts/training-controller', () => {
  it("Chart.yaml: appVersion is package.json's version, and the default image tag", () => {
    const chart = load(read('charts/training-controller/Chart.yaml')) as { appVersion: string; name: string };
    assert.equal(chart.appVersion, pkg.version);
    assert.equal(chart.name, 'training-controller');
    const { c } = controller(helmTemplate());
    assert.equal(c.image, `registry.example.com/sentinel/training-controller:${pkg.version}`);
  });

  it('has a values file per case in ci/: defaults, monitoring, PodMonitor, migrate hook, settings', () => {
    assert.deepEqual(ciFiles, [
      'default-values.yaml',
      'migrate-values.yaml',
      'monitoring-values.yaml',
      'podmonitor-values.yaml',
      'settings-values.yaml',
    ]);
  });

  for (const file of ciFiles) {
    describe(`ci/${file}`, () => {
      const values = join(CI, file);
      const rendered = () => helmTemplate({ values: [values] });

      it('passes helm lint --strict', () => {
        const out = helm(['lint', '--strict', CHART, '-f', values, '--namespace', 'ml-training']);
        assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      });

      it('renders objects that each match their kind’s schema, in the release namespace', async () => {
        const objs = rendered();
        assert.ok(objs.length >= 6, `${objs.length} objects`);
        for (const obj of objs) {
          await validateObject(obj);
          if (obj.kind === 'Namespace') assert.equal(obj.metadata.name, 'ml-training');
          // The Role goes where the training Jobs go (tested below), the dashboard where Grafana looks.
          else if (obj.kind !== 'Role' && obj.kind !== 'RoleBinding' && !obj.metadata.name?.endsWith('-dashboard'))
            assert.equal(obj.metadata.namespace, 'ml-training', `${obj.kind} ${obj.metadata.name}`);
        }
      });

      // The settings reach the service as env vars it accepts in production (the Secrets stand in as URLs),
      // and the Job template mounted is one the service accepts at startup.
      it('sets only settings the service accepts, and mounts a Job template it accepts', () => {
        const objs = rendered();
        const { c } = controller(objs);
        const env: Record<string, string> = {};
        for (const e of c.env ?? []) {
          if (e.valueFrom?.secretKeyRef) env[e.name] = `postgres://u:p@${e.valueFrom.secretKeyRef.name}:5432/db`;
          else env[e.name] = e.value ?? '';
        }
        const config = loadConfig(env);
        assert.equal(config.production, true);
        assert.equal(config.httpPort, 8080);
        const given = load(readFileSync(values, 'utf8')) as { config?: Record<string, string> } | null;
        // A misspelt setting would be ignored by the service without a word: each is one it reads.
        for (const name of Object.keys(given?.config ?? {})) assert.ok(name in ENV_DEFAULTS, `config.${name}`);
        if (given?.config?.TRAINING_THRESHOLD)
          assert.equal(config.trainingThreshold, Number(given.config.TRAINING_THRESHOLD));
        const cm = find<V1ConfigMap>(objs, 'ConfigMap').find((m) => m.metadata?.name?.endsWith('-job-template'));
        const volume = controller(objs).pod.volumes?.find((v) => v.configMap?.name === cm?.metadata?.name);
        assert.ok(volume, 'the Deployment mounts the job-template ConfigMap');
        const mount = c.volumeMounts?.find((m) => m.name === volume.name);
        assert.equal(`${mount?.mountPath}/job.yaml`, config.jobTemplateFile);
        checkTemplate(load(cm!.data!['job.yaml']!), `${file} jobTemplate`);
      });

      it('runs one replica with Recreate, probes on the real paths, under the restricted pod security', () => {
        const { d, pod, c } = controller(rendered());
        assert.equal(d.spec?.replicas, 1);
        assert.equal(d.spec?.strategy?.type, 'Recreate');
        assert.equal(c.livenessProbe?.httpGet?.path, PATHS.health);
        assert.equal(c.readinessProbe?.httpGet?.path, PATHS.ready);
        assert.deepEqual(c.args, ['run']);
        assert.equal(pod.securityContext?.runAsNonRoot, true);
        assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault');
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
        assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL']);
      });
    });
  }

  it('the Role: exactly deploy/role.yaml’s rules, where the training Jobs go, bound to the controller', () => {
    const deployRole = load(read('deploy/role.yaml')) as V1Role;
    for (const file of ciFiles) {
      const objs = helmTemplate({ values: [join(CI, file)] });
      const role = one<V1Role>(objs, 'Role');
      const binding = one<V1RoleBinding>(objs, 'RoleBinding');
      assert.deepEqual(role.rules, deployRole.rules, file);
      assert.equal(find(objs, 'ClusterRole').length + find(objs, 'ClusterRoleBinding').length, 0);
      const jobsNamespace = file === 'settings-values.yaml' ? 'ml-jobs' : 'ml-training';
      assert.equal(role.metadata?.namespace, jobsNamespace, file);
      assert.equal(binding.metadata?.namespace, jobsNamespace, file);
      const sa = one(objs, 'ServiceAccount');
      assert.deepEqual(binding.subjects, [
        { kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'ml-training' },
      ]);
      assert.equal(binding.roleRef.name, role.metadata?.name);
      assert.equal(controller(objs).pod.serviceAccountName, sa.metadata.name);
    }
  });

  it('the pod carries the Job template’s checksum, which changes with the template (a new template restarts it)', () => {
    const checksum = (objs: K8sObject[]) =>
      controller(objs).d.spec!.template.metadata!.annotations!['checksum/job-template'];
    const jobYaml = (objs: K8sObject[]) =>
      find<V1ConfigMap>(objs, 'ConfigMap').find((m) => m.metadata?.name?.endsWith('-job-template'))!.data!['job.yaml']!;
    const before = helmTemplate();
    assert.equal(checksum(before), createHash('sha256').update(jobYaml(before)).digest('hex'));
    assert.equal(jobYaml(before), read('deploy/job-template.yaml'));
    const edited = read('deploy/job-template.yaml').replace('train:1.0.0', 'train:1.0.1');
    const after = helmTemplate({ flags: ['--set-file', `jobTemplate.content=${valuesFile('job.yaml', edited)}`] });
    assert.equal(jobYaml(after), edited);
    assert.notEqual(checksum(after), checksum(before));
    assert.equal(checksum(after), createHash('sha256').update(edited).digest('hex'));
    // Anything else changed leaves it alone: only the template restarts the pod through it.
    assert.equal(checksum(helmTemplate({ flags: ['--set', 'config.TRAINING_THRESHOLD=60'] })), checksum(before));
  });

  it('migrate: no hook by default; enabled, a pre-install/pre-upgrade hook Job that needs nothing of the release', () => {
    assert.equal(find(helmTemplate(), 'Job').length, 0);
    const objs = helmTemplate({ flags: ['--set', 'migrate.enabled=true'] });
    const job = one<V1Job>(objs, 'Job');
    assert.deepEqual(job.metadata?.annotations, {
      'helm.sh/hook': 'pre-install,pre-upgrade',
      'helm.sh/hook-weight': '0',
      'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
    });
    const pod = job.spec!.template.spec!;
    const c = pod.containers[0]!;
    assert.deepEqual(c.args, ['migrate']);
    assert.equal(c.image, controller(objs).c.image);
    // A pre-install hook runs before the release's ServiceAccount exists: it must not name it, nor need a token.
    assert.equal(pod.serviceAccountName, undefined);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.restartPolicy, 'Never');
    assert.deepEqual(pod.securityContext, controller(objs).pod.securityContext);
    assert.deepEqual(c.securityContext, controller(objs).c.securityContext);
    const url = (j: V1Job) => j.spec!.template.spec!.containers[0]!.env!.find((e) => e.name === 'DATABASE_URL');
    // The service's Secret unless migrate has its own (a role that owns annotations).
    assert.deepEqual(url(job)?.valueFrom?.secretKeyRef, { name: 'training-controller-database', key: 'url' });
    const own = one<V1Job>(helmTemplate({ values: [join(CI, 'migrate-values.yaml')] }), 'Job');
    assert.deepEqual(url(own)?.valueFrom?.secretKeyRef, { name: 'training-controller-migrate-database', key: 'url' });
    const schema = own.spec!.template.spec!.containers[0]!.env!.find((e) => e.name === 'ANNOTATIONS_SCHEMA');
    assert.equal(schema?.value, 'triage', "the controller's ANNOTATIONS_SCHEMA");
  });

  it('a Namespace object only with namespace.create, the release namespace, kept by helm uninstall', () => {
    assert.equal(find(helmTemplate(), 'Namespace').length, 0);
    const ns = one(helmTemplate({ namespace: 'ml-prod', flags: ['--set', 'namespace.create=true'] }), 'Namespace');
    assert.equal(ns.metadata.name, 'ml-prod');
    assert.equal((ns.metadata.annotations as Record<string, string>)['helm.sh/resource-policy'], 'keep');
  });

  it('the Service selects the controller’s pods and reaches its http port', () => {
    const objs = helmTemplate();
    const svc = one<V1Service>(objs, 'Service');
    const { d, c } = controller(objs);
    assert.equal(svc.spec?.type, 'ClusterIP');
    for (const [k, v] of Object.entries(svc.spec?.selector ?? {}))
      assert.equal(d.spec?.template.metadata?.labels?.[k], v);
    assert.deepEqual(svc.spec?.ports, [{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
    assert.ok(c.ports?.some((p) => p.name === 'http' && p.containerPort === 8080));
  });

  // TrainingControllerDown reads up{job="training-controller"}: whatever the release is called, the scrape's job
  // label must be that (or metricsJob, which the rules then follow).
  it('ServiceMonitor and PodMonitor: the job label is training-controller whatever the release name', () => {
    type Monitor = { spec: Record<string, { port: string; path: string; relabelings: unknown[] }[]> };
    const job = [{ action: 'replace', targetLabel: 'job', replacement: 'training-controller' }];
    const sm = one<Monitor>(
      helmTemplate({ release: 'prod', values: [join(CI, 'monitoring-values.yaml')] }),
      'ServiceMonitor',
    );
    assert.deepEqual(sm.spec.endpoints?.[0]?.relabelings, job);
    assert.equal(sm.spec.endpoints?.[0]?.port, 'http');
    assert.equal(sm.spec.endpoints?.[0]?.path, PATHS.metrics);
    const pm = one<Monitor>(
      helmTemplate({ release: 'prod', values: [join(CI, 'podmonitor-values.yaml')] }),
      'PodMonitor',
    );
    assert.deepEqual(pm.spec.podMetricsEndpoints?.[0]?.relabelings, job);
    assert.equal(pm.spec.podMetricsEndpoints?.[0]?.port, 'http');
    // The label kube-prometheus-stack selects by.
    assert.equal(
      (
        one(helmTemplate({ values: [join(CI, 'monitoring-values.yaml')] }), 'ServiceMonitor').metadata.labels as Record<
          string,
          string
        >
      ).release,
      'monitoring',
    );
  });

  // Found by review: the migrate hook runs before the release's objects, the Namespace among them.
  it('refuses the migrate hook with namespace.create, in one line saying why', () => {
    assert.throws(
      () => helmTemplate({ flags: ['--set', 'migrate.enabled=true,namespace.create=true'] }),
      /migrate.enabled with namespace.create: the migrate hook runs before the release creates the namespace/,
    );
  });

  // Found by review: two 53-character release names (Helm's longest) sharing their first 50 got one ConfigMap.
  it('gives two long release names distinct names of at most 63 characters', () => {
    const names = ['eu1', 'eu2'].map((r) =>
      helmTemplate({
        release: `image-annotations-ranker-training-controller-prod-${r}`,
        flags: ['--set', 'migrate.enabled=true,dashboard.enabled=true'],
      }).map((o) => `${o.kind}/${o.metadata.name ?? ''}`),
    );
    const [eu1 = [], eu2 = []] = names;
    for (const name of [...eu1, ...eu2]) assert.ok(name.split('/')[1]!.length <= 63 && !name.includes('--'), name);
    assert.deepEqual(
      eu1.filter((n) => eu2.includes(n)),
      [],
      'no object of one release has the name of the same kind in the other',
    );
  });

  it('refuses both monitors at once, and a setting the chart sets itself, in one line', () => {
    assert.throws(
      () => helmTemplate({ flags: ['--set', 'serviceMonitor.enabled=true,podMonitor.enabled=true'] }),
      /serviceMonitor.enabled and podMonitor.enabled: both would scrape the same pod/,
    );
    assert.throws(
      () => helmTemplate({ flags: ['--set', 'config.DATABASE_URL=postgres://x'] }),
      /config.DATABASE_URL: set by the chart/,
    );
  });

  // Main's rules change (metric renames): this test says when the chart's copy must follow.
  it('the PrometheusRule’s groups are deploy/monitoring/prometheus-rules.yaml’s, exactly', () => {
    const deployed = load(read('deploy/monitoring/prometheus-rules.yaml')) as { spec: { groups: unknown[] } };
    const objs = helmTemplate({ values: [join(CI, 'monitoring-values.yaml')] });
    const rule = one<{ spec: { groups: unknown[] }; metadata: { labels: Record<string, string> } }>(
      objs,
      'PrometheusRule',
    );
    assert.deepEqual(
      rule.spec.groups,
      deployed.spec.groups,
      'sync: cp deploy/monitoring/prometheus-rules.yaml charts/training-controller/files/prometheus-rules.yaml',
    );
    assert.equal(rule.metadata.labels.release, 'monitoring');
    // metricsJob renamed: the down alert follows it.
    const renamed = one<{ spec: { groups: { rules: { alert: string; expr: string }[] }[] } }>(
      helmTemplate({ flags: ['--set', 'prometheusRule.enabled=true,metricsJob=ml-trainer'] }),
      'PrometheusRule',
    );
    const down = renamed.spec.groups.flatMap((g) => g.rules).find((r) => r.alert === 'TrainingControllerDown');
    assert.match(down?.expr ?? '', /up\{job="ml-trainer"\}/);
    assert.doesNotMatch(down?.expr ?? '', /job="training-controller"/);
  });

  it('renders the same objects as deploy/ (kustomize), deploy/namespace.yaml and deploy/monitoring/', () => {
    const chart = helmTemplate({
      flags: [
        '--set',
        'namespace.create=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true',
      ],
    });
    const deployed = [
      ...kustomize(join(root, 'deploy')),
      ...objects(read('deploy/namespace.yaml')),
      ...kustomize(join(root, 'deploy/monitoring')),
    ];
    assert.deepEqual(byKindAndName(chart.map(normalize)), byKindAndName(deployed.map(normalize)));
  });

  it('with migrate.enabled, the hook is deploy/migrate/migrate-job.yaml (but for the hook’s name and annotations)', () => {
    const objs = helmTemplate({
      flags: ['--set', 'migrate.enabled=true,migrate.existingSecret=training-controller-migrate-database'],
    });
    const hook = normalize(one(objs, 'Job')) as K8sObject;
    const job = normalize(objects(read('deploy/migrate/migrate-job.yaml'))[0]!) as K8sObject;
    assert.equal(hook.metadata.name, 'training-controller-migrate');
    assert.equal(job.metadata.generateName, 'training-controller-migrate-');
    const { name: _n, namespace: _ns, annotations: _a, ...hookMeta } = hook.metadata;
    const { generateName: _g, ...jobMeta } = job.metadata;
    assert.deepEqual({ ...hook, metadata: hookMeta }, { ...job, metadata: jobMeta });
  });
});

// What only Helm adds: its own labels (the instance label in selectors too), the pod's checksum of the Job
// template (kustomize's name hash does that job), the Namespace's keep policy; and kustomize's name hash of
// the generated ConfigMap (training-controller-job-template-<10 characters>).
const HELM_ONLY = new Set([
  'helm.sh/chart',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/version',
  'checksum/job-template',
  'helm.sh/resource-policy',
]);
function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'string') return value.replace(/^(training-controller-job-template)-[a-z0-9]{10}$/, '$1');
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (HELM_ONLY.has(k)) continue;
    const n = normalize(v);
    // An annotations map left empty is no annotations at all.
    if (k === 'annotations' && n && typeof n === 'object' && Object.keys(n).length === 0) continue;
    out[k] = n;
  }
  return out;
}
function byKindAndName(objs: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of objs as K8sObject[]) {
    const key = `${o.kind}/${o.metadata.name}`;
    assert.ok(!(key in out), `two ${key}`);
    out[key] = o;
  }
  return out;
}

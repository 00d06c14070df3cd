// The container image, docker-compose and the Kubernetes manifests agree with the code. No Docker engine or
// cluster here, so the test reads them the way Docker and kubectl would (deploy/ as `kubectl kustomize` renders
// it, with kubectl 1.31 from test/support/helm.ts); scripts/container-test.sh builds the image and runs the
// compose stack for real (.ci/run runs it).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadAll, load } from 'js-yaml';
import type { V1ConfigMap, V1Deployment, V1Job, V1Role, V1Service } from '@kubernetes/client-node';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { missingSchema } from '../src/db/schemaCheck.js';
import { tables } from '../src/db/tables.js';
import { runCli } from './support/child.js';
import { kustomize } from './support/helm.js';
import { freshDatabase } from './support/db.js';
import { COMMANDS } from '../src/cli/commands.js';
import { loadConfig } from '../src/core/config.js';
import { PATHS } from '../src/ops/http.js';
import { checkTemplate } from '../src/kube/jobTemplate.js';
import { RBAC_POD_VERBS, RBAC_VERBS } from '../src/kube/jobs.js';
import { packageRoot } from '../src/core/paths.js';

const root = packageRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const docs = (path: string) => loadAll(read(path)) as Record<string, unknown>[];
const defaults = loadConfig({});
const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; version: string };

/** Dockerfile instructions of the last stage, continuation lines joined. */
function finalStage(): { instr: string; args: string }[] {
  const lines = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));
  const lastFrom = lines.map((l) => /^FROM\b/i.test(l)).lastIndexOf(true);
  return lines.slice(lastFrom).map((l) => {
    const [instr = '', ...rest] = l.trim().split(/\s+/);
    return { instr: instr.toUpperCase(), args: rest.join(' ') };
  });
}

describe('Dockerfile', () => {
  const stage = finalStage();
  const get = (instr: string) => stage.filter((s) => s.instr === instr).map((s) => s.args);

  it('runs on a current Node LTS, slim (the default of the NODE_IMAGE build argument)', () => {
    const from = get('FROM')[0] ?? '';
    const arg = /^\$\{?(\w+)\}?$/.exec(from)?.[1];
    const image = arg ? (new RegExp(`^ARG\\s+${arg}=(\\S+)`, 'm').exec(read('Dockerfile'))?.[1] ?? '') : from;
    assert.match(image, /^node:(22|24)[.\d]*-(bookworm-slim|slim|alpine)/);
  });

  // Issue 15: a tag alone gives another image at every rebuild.
  it('pins its base image by digest, and says how to bump it', () => {
    const arg = /^ARG\s+NODE_IMAGE=(\S+)/m.exec(read('Dockerfile'))?.[1] ?? '';
    assert.match(arg, /^node:22-bookworm-slim@sha256:[0-9a-f]{64}$/);
    assert.match(read('Dockerfile'), /docker buildx imagetools inspect node:22-bookworm-slim/);
    // The container test passes its stand-in only when set, so the pinned default is what users build.
    const override = load(read('scripts/container-test.compose.yml')) as {
      services: { migrate: { build: { args: string[] } } };
    };
    assert.deepEqual(override.services.migrate.build.args, ['NODE_IMAGE']);
  });

  it('installs production dependencies only, and runs as a non-root user with NODE_ENV=production', () => {
    assert.ok(get('RUN').some((r) => /npm ci\b.*--omit=dev/.test(r)));
    const user = get('USER').at(-1);
    assert.ok(user && user !== 'root' && user !== '0', `USER ${user}`);
    assert.ok(get('ENV').some((e) => /NODE_ENV=production/.test(e)));
  });

  it('starts the CLI in exec form (node is PID 1 and gets SIGTERM), with CMD run', () => {
    const entrypoint = JSON.parse(get('ENTRYPOINT')[0] ?? 'null') as string[];
    assert.deepEqual(entrypoint, ['node', pkg.bin['training-controller']?.replace(/^\.\//, '')]);
    assert.deepEqual(JSON.parse(get('CMD')[0] ?? 'null'), ['run']);
    assert.ok('run' in COMMANDS);
  });

  it('exposes the default HTTP_PORT and ships the migrations', () => {
    assert.deepEqual(get('EXPOSE'), [String(defaults.httpPort)]);
    assert.ok(get('COPY').some((c) => /^migrations\b/.test(c)));
  });
});

describe('deploy/', () => {
  // What `kubectl apply -k deploy/` applies: kubectl's own kustomize (1.31, from the same zip as helm).
  const rendered = kustomize(join(root, 'deploy'));
  const byKind = (kind: string) => rendered.filter((d) => d.kind === kind) as unknown[];
  const kustomization = load(read('deploy/kustomization.yaml')) as {
    namespace: string;
    resources: string[];
    configMapGenerator: { name: string; files: string[] }[];
    images: { name: string; newTag: string }[];
  };
  const generated = kustomization.configMapGenerator.flatMap((g) => g.files.map((f) => f.split('=').at(-1)));

  it('every manifest parses, and each file is a resource of the kustomization, generated from, or applied apart', () => {
    const files = readdirSync(join(root, 'deploy')).filter((f) => f.endsWith('.yaml'));
    assert.deepEqual(
      [...kustomization.resources, ...generated, 'namespace.yaml', 'kustomization.yaml'].sort(),
      files.sort(),
    );
    for (const f of files)
      for (const doc of docs(`deploy/${f}`)) assert.ok(doc.kind && doc.apiVersion, `${f}: kind and apiVersion`);
    for (const doc of rendered)
      assert.equal(doc.metadata.namespace, kustomization.namespace, `${doc.kind} ${doc.metadata.name}`);
  });

  it('the Role grants exactly the verbs the code uses: batch/v1 Jobs, and list on pods', () => {
    const [role] = byKind('Role') as V1Role[];
    assert.ok(role);
    assert.equal(role.rules?.length, 2);
    const [jobs, pods] = role.rules!;
    assert.deepEqual(jobs?.apiGroups, ['batch']);
    assert.deepEqual(jobs?.resources, ['jobs']);
    assert.deepEqual([...(jobs?.verbs ?? [])].sort(), [...RBAC_VERBS].sort());
    // Issue 15: the open run's pods, to report one that cannot start (src/loop/runPods.ts).
    assert.deepEqual(pods?.apiGroups, ['']);
    assert.deepEqual(pods?.resources, ['pods']);
    assert.deepEqual([...(pods?.verbs ?? [])].sort(), [...RBAC_POD_VERBS].sort());
    assert.equal(byKind('ClusterRole').length, 0, 'namespaced only');
  });

  // The PrometheusRule and ServiceMonitor need the Prometheus Operator's CRDs: apart, so `apply -k deploy/`
  // works on any cluster.
  it('keeps the monitoring out of the default kustomization, in deploy/monitoring/ with its own', () => {
    assert.ok(!kustomization.resources.some((r) => r.includes('monitoring') || r.includes('prometheus')));
    assert.ok(rendered.every((d) => !d.apiVersion.startsWith('monitoring.coreos.com/')));
    const monitoring = load(read('deploy/monitoring/kustomization.yaml')) as typeof kustomization;
    assert.deepEqual(monitoring.resources, ['prometheus-rules.yaml', 'servicemonitor.yaml']);
    assert.equal(monitoring.namespace, kustomization.namespace);
    const kinds = kustomize(join(root, 'deploy/monitoring')).map((d) => d.kind);
    assert.deepEqual(kinds.sort(), ['ConfigMap', 'PrometheusRule', 'ServiceMonitor']);
  });

  // Issue 15: `kubectl apply -k deploy/` on a fresh cluster failed: nothing created ml-training. Issue 22:
  // with the Namespace among its resources, `kubectl delete -k deploy/` deleted it, its Secrets and every
  // training Job with it. So it is applied on its own, first, and is no resource of the kustomization.
  it('its namespace is applied first and on its own: `delete -k deploy/` leaves it', () => {
    const [ns, ...more] = docs('deploy/namespace.yaml') as { kind: string; metadata: { name: string } }[];
    assert.equal(more.length, 0);
    assert.equal(ns?.kind, 'Namespace');
    assert.equal(ns?.metadata.name, kustomization.namespace);
    assert.ok(!kustomization.resources.includes('namespace.yaml'));
    assert.equal(byKind('Namespace').length, 0);
    // The steps, in the README's shortest path and in docs/deploying.md: the namespace before the Secret that
    // lives in it, and both before `apply -k`.
    const readme = read('README.md');
    const guide = read('docs/deploying.md');
    for (const [where, steps] of [
      ['README "Deploy it"', readme.slice(readme.indexOf('## Deploy it'))],
      ['docs/deploying.md "Kubernetes"', guide.slice(guide.indexOf('## Kubernetes'))],
    ] as const) {
      const at = (text: string) => {
        const i = steps.indexOf(text);
        assert.ok(i >= 0, `${where} mentions ${text}`);
        return i;
      };
      const nsStep = at('kubectl apply -f deploy/namespace.yaml');
      const secretStep = at(`kubectl -n ${kustomization.namespace} create secret generic training-controller-database`);
      assert.ok(nsStep < secretStep && secretStep < at('kubectl apply -k deploy/'), where);
    }
  });

  it('the Deployment: one replica, Recreate, probes on the real paths and port, hardened, secret URL', () => {
    const [d] = byKind('Deployment') as V1Deployment[];
    assert.ok(d);
    assert.equal(d.spec?.replicas, 1);
    assert.equal(d.spec?.strategy?.type, 'Recreate');
    const pod = d.spec!.template.spec!;
    const c = pod.containers[0]!;
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
    const port = c.ports?.find((p) => p.name === 'http');
    assert.equal(String(port?.containerPort), env.HTTP_PORT?.value ?? String(defaults.httpPort));
    assert.equal(c.livenessProbe?.httpGet?.path, PATHS.health);
    assert.equal(c.readinessProbe?.httpGet?.path, PATHS.ready);
    assert.equal(c.livenessProbe?.httpGet?.port, 'http');
    assert.equal(d.spec?.template.metadata?.annotations?.['prometheus.io/path'], PATHS.metrics);
    assert.deepEqual(c.args, ['run']);
    assert.equal(env.NODE_ENV?.value, 'production');
    assert.ok(env.DATABASE_URL?.valueFrom?.secretKeyRef, 'DATABASE_URL from a Secret');
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory);
    // Issue 15: 96Mi was below the measured idle (~100 MiB); the peak VmHWM measured was 135 MiB (the comment
    // in deploy/deployment.yaml, scripts/measure-rss.sh).
    const mi = (q: string) => Number(/^(\d+)Mi$/.exec(q)?.[1] ?? NaN);
    assert.ok(mi(String(c.resources.requests.memory)) >= 135, `request ${c.resources.requests.memory}`);
    assert.ok(mi(String(c.resources.limits.memory)) >= 1.5 * 135, `limit ${c.resources.limits.memory}`);
    assert.equal(pod.serviceAccountName, (byKind('ServiceAccount')[0] as { metadata: { name: string } }).metadata.name);
    // The grace period covers the controller's own shutdown watchdog.
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) * 1000 > defaults.shutdownTimeoutMs);
  });

  // Issue 22: `kustomize edit set image` changes the kustomization's images:, which names the Deployment's.
  it("the image comes from the kustomization's images:, tagged with the package version", () => {
    const [d] = byKind('Deployment') as V1Deployment[];
    const [image, ...more] = kustomization.images;
    assert.equal(more.length, 0);
    assert.equal(image?.newTag, pkg.version);
    assert.equal(d?.spec?.template.spec?.containers[0]?.image, `${image?.name}:${pkg.version}`);
    const raw = docs('deploy/deployment.yaml')[0] as unknown as V1Deployment;
    assert.equal(raw.spec?.template.spec?.containers[0]?.image, image?.name);
  });

  it('the Service selects the controller’s pods and reaches its http port', () => {
    const [svc] = byKind('Service') as V1Service[];
    const [d] = byKind('Deployment') as V1Deployment[];
    for (const [k, v] of Object.entries(svc?.spec?.selector ?? {}))
      assert.equal(d?.spec?.template.metadata?.labels?.[k], v);
    assert.ok(Object.keys(svc?.spec?.selector ?? {}).length > 0);
    const [port] = svc?.spec?.ports ?? [];
    assert.equal(port?.targetPort, 'http');
    assert.ok(d?.spec?.template.spec?.containers[0]?.ports?.some((p) => p.name === port?.targetPort));
  });

  it('the generated ConfigMap is a valid Job template, mounted where JOB_TEMPLATE_FILE points', () => {
    const [cm] = byKind('ConfigMap') as V1ConfigMap[];
    assert.equal(cm!.data!['job.yaml'], read('deploy/job-template.yaml'));
    const template = load(cm!.data!['job.yaml']!) as Parameters<typeof checkTemplate>[0];
    checkTemplate(template, 'deploy/job-template.yaml');
    const [d] = byKind('Deployment') as V1Deployment[];
    const c = d!.spec!.template.spec!.containers[0]!;
    const file = c.env?.find((e) => e.name === 'JOB_TEMPLATE_FILE')?.value ?? '';
    const mount = c.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `a volume mounted at the directory of ${file}`);
    assert.equal(file.slice(mount.mountPath.length + 1), 'job.yaml');
    const volume = d!.spec!.template.spec!.volumes?.find((v) => v.name === mount.name);
    assert.equal(volume?.configMap?.name, cm!.metadata?.name);
  });

  // Issue 22: the controller reads its template once, at startup; an edited template must restart it.
  it('editing job-template.yaml renames the ConfigMap in the Deployment, so apply -k rolls the pod', () => {
    const copy = mkdtempSync(join(tmpdir(), 'deploy-'));
    try {
      cpSync(join(root, 'deploy'), copy, { recursive: true });
      const volume = (objs: typeof rendered) =>
        (objs.find((o) => o.kind === 'Deployment') as V1Deployment).spec!.template.spec!.volumes![0]!.configMap!.name ??
        '';
      writeFileSync(
        join(copy, 'job-template.yaml'),
        read('deploy/job-template.yaml').replace('train:1.0.0', 'train:1.0.1'),
      );
      const edited = kustomize(copy);
      assert.match(volume(rendered), /^training-controller-job-template-[a-z0-9]{10}$/);
      assert.match(volume(edited), /^training-controller-job-template-[a-z0-9]{10}$/);
      assert.notEqual(volume(edited), volume(rendered));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

// Issue 23: teams that let the cluster migrate run the image's own `migrate` as a Job before the Deployment.
describe('deploy/migrate/migrate-job.yaml', () => {
  const job = load(read('deploy/migrate/migrate-job.yaml')) as V1Job;
  // The Deployment as applied: its image's tag comes from the kustomization.
  const deployment = kustomize(join(root, 'deploy')).find((d) => d.kind === 'Deployment') as V1Deployment | undefined;
  const c = job.spec!.template.spec!.containers[0]!;
  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));

  it('validates as a batch/v1 Job, and creates a new Job each time (generateName, removed a day after)', () => {
    new Job(job as ConstructorParameters<typeof Job>[0]).validate();
    assert.equal(job.metadata?.name, undefined);
    assert.match(job.metadata?.generateName ?? '', /-$/);
    assert.equal(job.spec?.template.spec?.restartPolicy, 'Never');
    assert.ok((job.spec?.ttlSecondsAfterFinished ?? 0) > 0);
    // Longer than migrate's own 30 minutes of lock retries.
    assert.ok((job.spec?.activeDeadlineSeconds ?? 0) > 30 * 60);
  });

  it("runs the Deployment's image with `migrate`, hardened like it, its URL from a Secret", () => {
    const controller = deployment!.spec!.template.spec!.containers[0]!;
    assert.equal(c.image, controller.image);
    assert.deepEqual(c.args, ['migrate']);
    assert.ok('migrate' in COMMANDS);
    assert.ok(env.DATABASE_URL?.valueFrom?.secretKeyRef?.name);
    assert.deepEqual(job.spec!.template.spec!.securityContext, deployment!.spec!.template.spec!.securityContext);
    assert.deepEqual(c.securityContext, controller.securityContext);
    assert.equal(job.spec!.template.spec!.automountServiceAccountToken, false, 'it needs no Kubernetes API');
  });

  it('with its environment (the Secret resolved), migrates a fresh database, and again harmlessly', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      const vars: Record<string, string> = {
        ...Object.fromEntries(Object.entries(env).map(([k, e]) => [k, e.value ?? ''])),
        DATABASE_URL: db.url,
      };
      const run = () => runCli(c.args ?? [], vars);
      assert.match((await run()).stdout, /Applied \d+ migration/);
      assert.match((await run()).stdout, /Database is up to date/);
      assert.deepEqual(await missingSchema(db.pool, tables(vars.ANNOTATIONS_SCHEMA || 'public')), []);
    } finally {
      await db.drop();
    }
  });
});

describe('docker-compose.yml', () => {
  const compose = load(read('docker-compose.yml')) as { services: Record<string, Record<string, unknown>> };
  const s = compose.services;

  it('PostgreSQL pinned by digest (POSTGRES_IMAGE overrides), with how to bump it', () => {
    assert.match(String(s.postgres?.image), /^\$\{POSTGRES_IMAGE:-postgres:16-bookworm@sha256:[0-9a-f]{64}\}$/);
    assert.match(read('docker-compose.yml'), /docker buildx imagetools inspect\s+(#\s*)?postgres:16-bookworm/);
  });

  // Issue 15: the controller had none. The image has no curl: node's fetch on the readiness path and port.
  it('the controller has a healthcheck: node fetching /readyz on HTTP_PORT', () => {
    const hc = s.controller?.healthcheck as { test: string[]; start_period?: string };
    assert.deepEqual(hc.test.slice(0, 3), ['CMD', 'node', '-e']);
    const env = s.controller?.environment as Record<string, string>;
    assert.ok(hc.test[3]?.includes(`fetch('http://127.0.0.1:${env.HTTP_PORT}${PATHS.ready}')`), hc.test[3]);
    assert.ok(hc.start_period);
  });

  it('PostgreSQL with a healthcheck, a one-shot migrate, and the controller after both', () => {
    assert.ok(s.postgres?.healthcheck);
    assert.deepEqual(s.migrate?.command, ['migrate']);
    assert.deepEqual(s.controller?.depends_on, {
      postgres: { condition: 'service_healthy' },
      migrate: { condition: 'service_completed_successfully' },
    });
  });

  it('the controller gets a DATABASE_URL, a mounted kubeconfig and a switchable DISPATCH_MODE', () => {
    const env = s.controller?.environment as Record<string, string>;
    assert.match(env.DATABASE_URL ?? '', /^postgres:\/\/.*@postgres:5432\//);
    assert.match(env.DISPATCH_MODE ?? '', /^\$\{DISPATCH_MODE:-(dry-run|kubernetes)\}$/);
    // The long syntax: with the short one, a kubeconfig missing on the host becomes a directory Docker creates.
    const volumes = s.controller?.volumes as { type: string; source: string; target: string; read_only: boolean }[];
    assert.deepEqual(volumes, [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a compose variable, read by docker-compose
      { type: 'bind', source: '${KUBECONFIG_HOST:-~/.kube/config}', target: env.KUBECONFIG, read_only: true },
    ]);
    // Every variable it sets is one the config knows.
    const config = loadConfig({
      ...env,
      DISPATCH_MODE: 'dry-run',
      TRAINING_THRESHOLD: '50',
      TRAINING_NAMESPACE: 'default',
      LOG_LEVEL: 'info',
    });
    assert.equal(config.httpPort, 8080);
  });

  // Issue 10: "5432:5432" failed on every machine that runs its own PostgreSQL.
  it('publishes nothing on 5432 and only on the loopback interface', () => {
    const published = Object.values(s).flatMap((svc) => (svc.ports as string[] | undefined) ?? []);
    assert.ok(published.length > 0);
    for (const p of published) {
      assert.match(p, /^127\.0\.0\.1:/, p);
      assert.doesNotMatch(p, /^127\.0\.0\.1:(\$\{\w+:-)?5432\}?:/, p);
    }
  });

  // Issue 10: migrate and controller both had `build: .`, so the same image was built twice.
  it('builds one image, on the first service to start that runs it, and migrate and controller share it', () => {
    const built = Object.entries(s)
      .filter(([, svc]) => svc.build !== undefined)
      .map(([name]) => name);
    assert.deepEqual(built, ['migrate']);
    assert.ok(s.migrate?.image && s.migrate.image === s.controller?.image);
    assert.equal(s.controller?.pull_policy, 'never');
  });
});

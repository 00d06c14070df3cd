// A fake kube-apiserver for batch/v1 Jobs over real HTTPS, reached through a real kubeconfig (CA-verified TLS,
// bearer token). It answers like the real one where the controller can tell the difference:
//   create: validation (422 with details.causes), defaults (uid, selector, job-name labels, backoffLimit 6),
//           409 AlreadyExists, 404 for an unknown namespace, dryRun=All (validated, not stored)
//   get/list: Status bodies, label selectors, list items without kind/apiVersion
//   watch: newline-delimited JSON from a resourceVersion, BOOKMARKs, 410 Expired for a compacted version
//   delete: propagationPolicy recorded (query or DeleteOptions body); a Job with metadata.finalizers is not
//           removed but marked (deletionTimestamp, MODIFIED, 200 with the Job) until a patch empties them
//   patch: merge patch and JSON patch (test/support/jsonPatch.ts) with the real server's answers: 409 Conflict
//          for a stale metadata.resourceVersion, 422 for a failed JSON-patch operation, 422 Forbidden for a new
//          finalizer on a Job being deleted, 400 for a changed name, 415 for strategic merge and apply patches
//   401 without the token
//   pods: list (core/v1, label selectors), the pod of a Job in the shapes of test/support/fakeKubePods.ts
// Test hooks (not HTTP): move a Job through its phases, set the state of its pod, inject 5xx/403/slow answers, go down and come back,
// delete as kubectl or as the TTL-after-finished controller would.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { matches } from './labelSelector.js';
import { podFor, podList, type PodState } from './fakeKubePods.js';
import { unknownFieldsLikeApiServer, validateJobLikeApiServer } from './fakeKubeValidation.js';
import { applyJsonPatch, BadPatch, jsonEqual, mergePatch, PatchFailed, type Json } from './jsonPatch.js';
import { packageRoot } from '../../src/core/paths.js';

/**
 * `check-template`: a create with dryRun=All and fieldValidation=Strict, the controller's startup check of its
 * template; its own verb so that a fault injected for the dispatch's creates is not spent on it.
 */
export type Verb = 'create' | 'check-template' | 'get' | 'list' | 'watch' | 'delete' | 'patch' | 'list-pods';
export type Phase = 'pending' | 'running' | 'complete' | 'failed' | 'failure-target' | 'suspended';

export interface Fault {
  verb: Verb;
  /** Answer with this status (a Status body) instead of serving the request. */
  status?: number;
  /** Wait this long first (combined with status, or alone for a slow success). */
  delayMs?: number;
  /** Hold the answer until this settles (a webhook that answers when the test says): order, not timing. */
  until?: Promise<unknown>;
  /** How many requests it applies to (default 1). */
  times?: number;
}

interface Watcher {
  namespace: string;
  selector: string | null;
  res: ServerResponse;
}

const tls = join(packageRoot(), 'test', 'support', 'tls');

function status(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

const finished = (j: V1Job) =>
  (j.status?.conditions ?? []).some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'AlreadyExists',
  410: 'Expired',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export class FakeKube {
  readonly jobs = new Map<string, V1Job>();
  /** Every create the server accepted (not dry runs), with performance.now() at arrival. */
  readonly creates: { name: string; at: number }[] = [];
  readonly dryRuns: V1Job[] = [];
  /** Strict dry runs (fieldValidation=Strict): the controller's startup check of its template, apart from dryRuns. */
  readonly templateChecks: V1Job[] = [];
  /** Fields this server accepts beyond the 1.34 types (a newer cluster's), as strict decoding paths. */
  readonly newerFields = new Set<string>();
  readonly requests: { verb: Verb; path: string; status: number }[] = [];
  /** Every authenticated request as it arrived (its body read, before any injected fault), with performance.now(). */
  readonly arrivals: { verb: Verb; name: string | null; at: number }[] = [];
  /** The most Jobs unfinished at one moment (unfinished(), checked at every change): the one-Job promise. */
  mostUnfinished: string[] = [];
  /** Every authenticated HTTP DELETE of a named Job (also those answered with an injected fault or 404). */
  readonly deletes: { name: string; namespace: string; propagationPolicy: string | null }[] = [];
  readonly namespaces = new Set(['default']);
  /** Pods by namespace/name; none unless a test sets one (setPod). */
  readonly pods = new Map<string, V1Pod>();
  readonly token = randomBytes(16).toString('hex');
  kubeconfigPath = '';
  private faults: (Required<Omit<Fault, 'until'>> & Pick<Fault, 'until'>)[] = [];
  private rv = 1;
  private history: { rv: number; type: string; job: V1Job }[] = [];
  private expiredBefore = 0;
  private watchers = new Set<Watcher>();
  private sockets = new Set<Socket>();
  private port = 0;
  private host = '127.0.0.1';
  private server: Server;

  private constructor() {
    this.server = createServer(
      { key: readFileSync(join(tls, 'key.pem')), cert: readFileSync(join(tls, 'cert.pem')) },
      (req, res) => void this.handle(req, res),
    );
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /**
   * `host`: the address to listen on (default 127.0.0.1). scripts/container-test.sh listens on the Docker
   * bridge so that a container can reach it; its kubeconfig then names another server (writeKubeconfig).
   */
  static async start(options: { host?: string } = {}): Promise<FakeKube> {
    const kube = new FakeKube();
    kube.host = options.host ?? '127.0.0.1';
    await kube.listen(0);
    const dir = mkdtempSync(join(tmpdir(), 'fake-kube-'));
    kube.kubeconfigPath = join(dir, 'kubeconfig');
    kube.writeKubeconfig(kube.kubeconfigPath, kube.url);
    return kube;
  }

  /**
   * A kubeconfig for this server, reached at `server`. The certificate names only 127.0.0.1 and localhost:
   * a server under another name needs `tlsServerName: 'localhost'` (kubeconfig `tls-server-name`), so TLS is
   * still verified against the CA as with a real cluster.
   */
  writeKubeconfig(path: string, server: string, tlsServerName?: string): void {
    const ca = readFileSync(join(tls, 'cert.pem')).toString('base64');
    const serverName = tlsServerName ? `, tls-server-name: "${tlsServerName}"` : '';
    writeFileSync(
      path,
      `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: { server: "${server}", certificate-authority-data: "${ca}"${serverName} }
users:
- name: controller
  user: { token: "${this.token}" }
contexts:
- name: fake
  context: { cluster: fake, user: controller, namespace: default }
current-context: fake
`,
    );
  }

  get url(): string {
    return `https://${this.host}:${this.port}`;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Connection refused until comeUp(): an API server restart or a network partition. */
  async goDown(): Promise<void> {
    await this.stop();
    this.server = createServer(
      { key: readFileSync(join(tls, 'key.pem')), cert: readFileSync(join(tls, 'cert.pem')) },
      (req, res) => void this.handle(req, res),
    );
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async comeUp(): Promise<void> {
    await this.listen(this.port);
  }

  inject(fault: Fault): void {
    this.faults.push({ status: 0, delayMs: 0, times: 1, ...fault });
  }

  /** Faults injected and not yet used up. */
  pendingFaults(): number {
    return this.faults.filter((f) => f.times > 0).length;
  }

  clearFaults(): void {
    this.faults = [];
  }

  addNamespace(ns: string): void {
    this.namespaces.add(ns);
  }

  /** Jobs not finished, also those being deleted (deletionTimestamp set, finalizers pending): their pods may still run. */
  unfinished(): string[] {
    return [...this.jobs.values()].filter((j) => !finished(j)).map((j) => j.metadata?.name ?? '');
  }

  /** Jobs marked for deletion and kept by their finalizers. */
  deleting(): string[] {
    return [...this.jobs.values()].filter((j) => j.metadata?.deletionTimestamp).map((j) => j.metadata?.name ?? '');
  }

  /** Creates or moves the pod of a Job (one per Job); `since` backdates its state (default now). */
  setPod(jobName: string, state: PodState, options: { namespace?: string; since?: Date } = {}): V1Pod {
    const namespace = options.namespace ?? 'default';
    const job = this.jobs.get(`${namespace}/${jobName}`);
    if (!job) throw new Error(`no Job ${namespace}/${jobName}`);
    const previous = [...this.pods.values()].find(
      (p) => p.metadata?.namespace === namespace && p.metadata.labels?.['job-name'] === jobName,
    );
    const pod = podFor(job, state, options.since ?? new Date(), previous);
    this.pods.set(`${namespace}/${pod.metadata?.name}`, pod);
    return pod;
  }

  /** Moves a Job the way the Job controller would, with the conditions of Kubernetes 1.31+. */
  setPhase(name: string, phase: Phase, namespace = 'default'): void {
    const job = this.jobs.get(`${namespace}/${name}`);
    if (!job) throw new Error(`no Job ${namespace}/${name}`);
    const now = new Date();
    const cond = (type: string, reason: string, message = '') => ({
      type,
      status: 'True',
      reason,
      message,
      lastProbeTime: now,
      lastTransitionTime: now,
    });
    const started = job.status?.startTime ?? now;
    job.status = {
      pending: { startTime: undefined },
      running: { startTime: started, active: 1, ready: 1 },
      suspended: { conditions: [cond('Suspended', 'JobSuspended', 'Job suspended')] },
      'failure-target': {
        startTime: started,
        failed: 1,
        conditions: [cond('FailureTarget', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit')],
      },
      complete: {
        startTime: started,
        succeeded: 1,
        completionTime: now,
        conditions: [
          cond('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods'),
          cond('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods'),
        ],
      },
      failed: {
        startTime: started,
        failed: 1,
        conditions: [
          cond('FailureTarget', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
          cond('Failed', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit'),
        ],
      },
    }[phase] as V1Job['status'];
    if (phase === 'pending') job.status = {};
    this.record('MODIFIED', job);
  }

  /**
   * Deletes a Job as `kubectl delete job` would. With finalizers it stays, marked: deletionTimestamp and
   * deletionGracePeriodSeconds 0 and a MODIFIED event the first time; a second delete changes nothing (no new
   * resourceVersion, no event), as the real server's no-op update writes nothing to etcd.
   * Returns whether the Job is gone.
   */
  deleteJob(name: string, namespace = 'default'): boolean {
    const job = this.jobs.get(`${namespace}/${name}`);
    if (!job) return true;
    if ((job.metadata?.finalizers ?? []).length > 0) {
      if (!job.metadata?.deletionTimestamp) {
        job.metadata = { ...job.metadata, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 0 };
        this.record('MODIFIED', job);
      }
      return false;
    }
    this.jobs.delete(`${namespace}/${name}`);
    this.record('DELETED', job);
    return true;
  }

  /**
   * The TTL-after-finished controller once every TTL has passed: deletes (finalizers honoured as in deleteJob)
   * each finished Job with spec.ttlSecondsAfterFinished that is not already being deleted. Returns their names.
   */
  expireFinished(): string[] {
    const due = [...this.jobs.values()].filter(
      (j) => finished(j) && j.spec?.ttlSecondsAfterFinished !== undefined && !j.metadata?.deletionTimestamp,
    );
    for (const j of due) this.deleteJob(j.metadata?.name ?? '', j.metadata?.namespace);
    return due.map((j) => j.metadata?.name ?? '');
  }

  /** A Job created by someone else (by hand, an older version): goes through the same defaults. */
  /** Watches open in `namespace`: a change made now reaches the client through them, not through a list. */
  openWatches(namespace = 'default'): number {
    return [...this.watchers].filter((w) => w.namespace === namespace).length;
  }

  seed(job: V1Job, namespace = 'default'): V1Job {
    return this.store(structuredClone(job), namespace);
  }

  /**
   * Ends every open watch cleanly (as the server does at timeoutSeconds) and compacts the event history, so
   * the client's next watch from its last resourceVersion gets `410 Expired` and must list again.
   */
  expireWatches(): void {
    this.history = [];
    // Every resourceVersion seen so far is now too old, but the one a list returns from here on is not: with
    // `rv + 1` a watch from a fresh list got 410 too, so the watch never came back and only the re-list (which
    // reconciles) noticed changes.
    this.expiredBefore = ++this.rv;
    for (const w of this.watchers) w.res.end();
  }

  private record(type: string, job: V1Job): void {
    job.metadata = { ...job.metadata, resourceVersion: String(++this.rv) };
    const unfinished = this.unfinished();
    if (unfinished.length > this.mostUnfinished.length) this.mostUnfinished = unfinished;
    this.history.push({ rv: this.rv, type, job: structuredClone(job) });
    if (this.history.length > 1000) this.history.shift();
    for (const w of this.watchers) {
      if (w.namespace === job.metadata.namespace && matches(w.selector, job.metadata.labels))
        w.res.write(`${JSON.stringify({ type, object: { kind: 'Job', apiVersion: 'batch/v1', ...job } })}\n`);
    }
  }

  private store(job: V1Job, namespace: string): V1Job {
    const uid = randomUUID();
    const name = job.metadata?.name ?? '';
    const auto = {
      'batch.kubernetes.io/controller-uid': uid,
      'batch.kubernetes.io/job-name': name,
      'controller-uid': uid,
      'job-name': name,
    };
    const spec = job.spec ?? { template: {} };
    spec.template.metadata = { ...spec.template.metadata, labels: { ...spec.template.metadata?.labels, ...auto } };
    const stored: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        ...job.metadata,
        name,
        namespace,
        uid,
        creationTimestamp: new Date(),
        generation: 1,
        labels: job.metadata?.labels ?? { ...spec.template.metadata?.labels },
      },
      spec: {
        backoffLimit: 6,
        completions: 1,
        parallelism: 1,
        completionMode: 'NonIndexed',
        suspend: false,
        manualSelector: false,
        ...spec,
        selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } },
      },
      status: {},
    };
    this.jobs.set(`${namespace}/${name}`, stored);
    this.record('ADDED', stored);
    return stored;
  }

  /**
   * A PATCH as k8s.io/apiserver pkg/endpoints/handlers/patch.go answers it. Every error from applying a JSON
   * patch (a failed `test`, a missing path for remove/replace/add, a bad index, an unknown op) goes through
   * `errors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)`,
   * which drops err.Error(): the answer is 422, reason Invalid, message "the server rejected our request due to
   * an error in our request", details {} (the same body quoted in kubernetes/kubernetes#79210 and
   * kubernetes-client/javascript#2095; before 2019 it was a 500, kubernetes/kubernetes#68202). A patch body that
   * does not decode is 400 BadRequest. Then the update path (rest.BeforeUpdate, ValidateObjectMetaUpdate):
   * name or namespace changed → 400, uid changed → 422 immutable, creationTimestamp, deletionTimestamp,
   * status (a subresource) silently kept; a stale resourceVersion → 409 Conflict.
   */
  private patch(job: V1Job, contentType: string, bodyText: string): [number, unknown] {
    const name = job.metadata?.name ?? '';
    const namespace = job.metadata?.namespace ?? '';
    const type = contentType.split(';')[0]?.trim() ?? '';
    if (type !== 'application/merge-patch+json' && type !== 'application/json-patch+json') {
      return [
        415,
        status(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json`,
        ),
      ];
    }
    const invalid = (field: string, reason: string, message: string) =>
      [
        422,
        status(422, 'Invalid', `Job.batch "${name}" is invalid: ${field}: ${message}`, {
          name,
          group: 'batch',
          kind: 'Job',
          causes: [{ reason, message, field }],
        }),
      ] as [number, unknown];
    let patched: V1Job;
    try {
      const current = JSON.parse(JSON.stringify(job)) as Json;
      patched = (
        type === 'application/merge-patch+json'
          ? mergePatch(current, JSON.parse(bodyText) as Json)
          : applyJsonPatch(current, JSON.parse(bodyText))
      ) as V1Job;
    } catch (err: unknown) {
      if (err instanceof PatchFailed)
        return [
          422,
          { ...status(422, 'Invalid', 'the server rejected our request due to an error in our request'), details: {} },
        ];
      return [
        400,
        status(
          400,
          'BadRequest',
          err instanceof BadPatch ? err.message : `error decoding patch: ${(err as Error).message}`,
        ),
      ];
    }
    if (typeof patched !== 'object' || patched === null || Array.isArray(patched))
      return [400, status(400, 'BadRequest', 'Invalid JSON Patch')];
    const meta = patched.metadata ?? {};
    if ((meta.name ?? '') !== name)
      return [
        400,
        status(
          400,
          'BadRequest',
          `the name of the object (${meta.name ?? ''}) does not match the name on the URL (${name})`,
        ),
      ];
    if (meta.namespace && meta.namespace !== namespace)
      return [
        400,
        status(
          400,
          'BadRequest',
          `the namespace of the object (${meta.namespace}) does not match the namespace on the request (${namespace})`,
        ),
      ];
    if (meta.uid && meta.uid !== job.metadata?.uid)
      return invalid('metadata.uid', 'FieldValueInvalid', `Invalid value: "${meta.uid}": field is immutable`);
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== job.metadata?.resourceVersion) {
      return [
        409,
        status(
          409,
          'Conflict',
          `Operation cannot be fulfilled on jobs.batch "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          { name, group: 'batch', kind: 'jobs' },
        ),
      ];
    }
    const old = job.metadata ?? {};
    const finalizers = meta.finalizers ?? [];
    if (old.deletionTimestamp) {
      const added = [...new Set(finalizers.filter((f) => !(old.finalizers ?? []).includes(f)))].sort();
      if (added.length > 0) {
        return invalid(
          'metadata.finalizers',
          'FieldValueForbidden',
          `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`,
        );
      }
    }
    const specChanged = JSON.stringify(patched.spec) !== JSON.stringify(JSON.parse(JSON.stringify(job.spec ?? null)));
    const stored: V1Job = {
      ...patched,
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        ...meta,
        name,
        namespace,
        uid: old.uid,
        creationTimestamp: old.creationTimestamp,
        generation: (old.generation ?? 1) + (specChanged ? 1 : 0),
        deletionTimestamp: old.deletionTimestamp,
        deletionGracePeriodSeconds: old.deletionGracePeriodSeconds,
        resourceVersion: old.resourceVersion,
      },
      status: job.status,
    };
    if (!old.deletionTimestamp) delete stored.metadata?.deletionTimestamp;
    if (old.deletionGracePeriodSeconds === undefined) delete stored.metadata?.deletionGracePeriodSeconds;
    // A patch that changes nothing is not written (etcd3's GuaranteedUpdate skips identical bytes): no new
    // resourceVersion, no event.
    if (
      jsonEqual(JSON.parse(JSON.stringify(stored)) as Json, JSON.parse(JSON.stringify(job)) as Json) &&
      !(old.deletionTimestamp && finalizers.length === 0)
    )
      return [200, job];
    if (old.deletionTimestamp && finalizers.length === 0) {
      // The last finalizer is gone from a Job being deleted: the update is the deletion.
      this.jobs.delete(`${namespace}/${name}`);
      this.record('DELETED', stored);
    } else {
      this.jobs.set(`${namespace}/${name}`, stored);
      this.record('MODIFIED', stored);
    }
    return [200, stored];
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    if (res.destroyed) return;
    res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const podsPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname);
    const m = /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs(?:\/([^/]+))?$/.exec(url.pathname) ?? podsPath;
    const watch = url.searchParams.get('watch') === 'true';
    const verb: Verb | null = !m
      ? null
      : podsPath
        ? req.method === 'GET' && !watch
          ? 'list-pods'
          : null
        : req.method === 'POST'
          ? url.searchParams.get('fieldValidation') === 'Strict' && url.searchParams.get('dryRun') === 'All'
            ? 'check-template'
            : 'create'
          : req.method === 'DELETE'
            ? 'delete'
            : req.method === 'PATCH'
              ? 'patch'
              : m[2]
                ? 'get'
                : watch
                  ? 'watch'
                  : 'list';
    let code = 200;
    res.on('finish', () => verb && this.requests.push({ verb, path: url.pathname, status: code }));
    const reply = (c: number, body: unknown) => this.send(res, (code = c), body);

    if (req.headers.authorization !== `Bearer ${this.token}`)
      return reply(401, status(401, 'Unauthorized', 'Unauthorized'));
    if (!m || !verb) return reply(404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const namespace = decodeURIComponent(m[1] as string);
    const name = m[2] ? decodeURIComponent(m[2]) : null;
    if (verb === 'patch' && !name)
      return reply(
        405,
        status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'),
      );

    // The body arrives before any injected delay, as it would at a real server that is slow to answer.
    const bodyText =
      verb === 'create' || verb === 'check-template' || verb === 'patch' || verb === 'delete'
        ? await readBody(req)
        : '';
    this.arrivals.push({ verb, name: name ?? (verb === 'create' ? bodyName(bodyText) : null), at: performance.now() });
    let deleteOptions: { propagationPolicy?: string } = {};
    if (verb === 'delete') {
      // Like k8s.io/apiserver handlers/delete.go: DeleteOptions come from a non-empty body, else from the query.
      try {
        deleteOptions = bodyText.trim()
          ? (JSON.parse(bodyText) as typeof deleteOptions)
          : { propagationPolicy: url.searchParams.get('propagationPolicy') ?? undefined };
      } catch {
        return reply(400, status(400, 'BadRequest', 'the request body is not JSON'));
      }
      if (name) this.deletes.push({ name, namespace, propagationPolicy: deleteOptions.propagationPolicy ?? null });
    }
    const fault = this.faults.find((f) => f.verb === verb && f.times > 0);
    if (fault) {
      fault.times--;
      if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs).unref());
      if (fault.until) await fault.until;
      // A real API server finishes a create whose client has gone (the object is in etcd, the answer is
      // lost): the client's retry then meets a 409 for its own Job. Other verbs change nothing.
      if (res.destroyed && verb !== 'create') return;
      if (fault.status) {
        const message =
          fault.status === 403
            ? verb === 'list-pods'
              ? `pods is forbidden: User "system:serviceaccount:${namespace}:training-controller" cannot list resource "pods" in API group "" in the namespace "${namespace}"`
              : `jobs.batch is forbidden: User "system:serviceaccount:${namespace}:training-controller" cannot ${verb} resource "jobs" in API group "batch" in the namespace "${namespace}"`
            : `injected ${fault.status}`;
        return reply(fault.status, status(fault.status, REASONS[fault.status] ?? 'Unknown', message));
      }
    }
    if (!this.namespaces.has(namespace))
      return reply(
        404,
        status(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' }),
      );

    if (verb === 'create' || verb === 'check-template') {
      let body: V1Job;
      try {
        body = JSON.parse(bodyText) as V1Job;
      } catch {
        return reply(400, status(400, 'BadRequest', 'the request body is not JSON'));
      }
      const dryRun = url.searchParams.get('dryRun');
      if (dryRun !== null && dryRun !== 'All')
        return reply(400, status(400, 'BadRequest', `invalid dry run value: "${dryRun}"`));
      // fieldValidation: Strict refuses unknown fields (400, as the strict decoder words it); Warn (the
      // default) and Ignore drop them.
      const fieldValidation = url.searchParams.get('fieldValidation');
      if (fieldValidation !== null && !['Ignore', 'Warn', 'Strict'].includes(fieldValidation))
        return reply(400, status(400, 'BadRequest', `invalid fieldValidation directive: ${fieldValidation}`));
      const unknown =
        fieldValidation === 'Strict' ? unknownFieldsLikeApiServer(body).filter((p) => !this.newerFields.has(p)) : [];
      if (unknown.length > 0)
        return reply(
          400,
          status(
            400,
            'BadRequest',
            `Job in version "v1" cannot be handled as a Job: strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(', ')}`,
          ),
        );
      if (body.metadata?.namespace && body.metadata.namespace !== namespace) {
        return reply(
          400,
          status(
            400,
            'BadRequest',
            'the namespace of the provided object does not match the namespace sent on the request',
          ),
        );
      }
      const causes = validateJobLikeApiServer(body);
      const jobName = body.metadata?.name ?? '';
      if (causes.length > 0) {
        return reply(
          422,
          status(
            422,
            'Invalid',
            `Job.batch "${jobName}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`,
            { name: jobName, group: 'batch', kind: 'Job', causes },
          ),
        );
      }
      if (this.jobs.has(`${namespace}/${jobName}`)) {
        return reply(
          409,
          status(409, 'AlreadyExists', `jobs.batch "${jobName}" already exists`, {
            name: jobName,
            group: 'batch',
            kind: 'jobs',
          }),
        );
      }
      if (dryRun === 'All') {
        (fieldValidation === 'Strict' ? this.templateChecks : this.dryRuns).push(body);
        return reply(201, { ...body, metadata: { ...body.metadata, namespace, uid: randomUUID() } });
      }
      this.creates.push({ name: jobName, at: performance.now() });
      return reply(201, this.store(body, namespace));
    }
    if (verb === 'get' || verb === 'delete' || verb === 'patch') {
      const job = this.jobs.get(`${namespace}/${name}`);
      if (!job)
        return reply(
          404,
          status(404, 'NotFound', `jobs.batch "${name}" not found`, { name, group: 'batch', kind: 'jobs' }),
        );
      if (verb === 'delete') {
        // While finalizers are pending the real server answers 200 with the object it kept.
        if (!this.deleteJob(name as string, namespace)) return reply(200, job);
        return reply(200, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, group: 'batch', kind: 'jobs', uid: job.metadata?.uid },
        });
      }
      if (verb === 'patch') return reply(...this.patch(job, req.headers['content-type'] ?? '', bodyText));
      return reply(200, job);
    }
    const selector = url.searchParams.get('labelSelector');
    try {
      matches(selector, {});
    } catch (err: unknown) {
      return reply(400, status(400, 'BadRequest', `unable to parse requirement: ${(err as Error).message}`));
    }
    if (verb === 'list-pods') return reply(200, podList(this.pods.values(), namespace, selector, this.rv));
    if (verb === 'list') {
      const items = [...this.jobs.values()]
        .filter((j) => j.metadata?.namespace === namespace && matches(selector, j.metadata?.labels))
        .map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
      return reply(200, {
        kind: 'JobList',
        apiVersion: 'batch/v1',
        metadata: { resourceVersion: String(this.rv) },
        items,
      });
    }
    // watch
    const from = Number(url.searchParams.get('resourceVersion') || this.rv);
    res.writeHead((code = 200), { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // the real API server answers a watch at once, before any event
    const oldest = this.history[0]?.rv ?? this.rv + 1;
    if ((from < this.rv && from + 1 < oldest) || from < this.expiredBefore) {
      res.end(
        `${JSON.stringify({
          type: 'ERROR',
          object: status(410, 'Expired', `too old resource version: ${from} (${oldest})`),
        })}\n`,
      );
      return;
    }
    for (const e of this.history) {
      if (e.rv > from && e.job.metadata?.namespace === namespace && matches(selector, e.job.metadata?.labels)) {
        res.write(`${JSON.stringify({ type: e.type, object: { kind: 'Job', apiVersion: 'batch/v1', ...e.job } })}\n`);
      }
    }
    const watcher: Watcher = { namespace, selector, res };
    this.watchers.add(watcher);
    const timeout = setTimeout(() => res.end(), Number(url.searchParams.get('timeoutSeconds') || 1800) * 1000);
    res.on('close', () => {
      clearTimeout(timeout);
      this.watchers.delete(watcher);
    });
  }
}

/** metadata.name of a create's body, null when it is not JSON. */
function bodyName(text: string): string | null {
  try {
    return (JSON.parse(text) as V1Job).metadata?.name ?? null;
  } catch {
    return null;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (data += c));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

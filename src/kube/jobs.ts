// The Kubernetes port: the calls the controller makes on batch/v1 Jobs (create, get, list, watch, a patch that
// removes our finalizer, and a delete for a cancelled run) and one on pods (list, the open run's), each with a
// timeout, and errors turned into outcomes (errors.ts). Every call names its namespace: a run is followed in
// the namespace recorded on it, whatever TRAINING_NAMESPACE says now.
// The Role in deploy/ grants exactly RBAC_VERBS on jobs and RBAC_POD_VERBS on pods.
import http from 'node:http';
import https from 'node:https';
import {
  BatchV1Api,
  CoreV1Api,
  type KubeConfig,
  Observable,
  type V1Job,
  type V1JobList,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Config } from '../core/config.js';
import { jobOutcome } from '../core/jobOutcome.js';
import type { ClusterConfig } from './clusterConfig.js';
import type { Instance } from '../core/instance.js';
import { statusError, toKubeError } from './errors.js';
import { openWatch, type WatchEvent, type WatchHandle } from './watch.js';

/**
 * How long after a create is sent (its stamp, db/runs.ts stampCreateSent) its Job may still appear. The request
 * reaches the API server at the latest when the client gives up on it (KUBE_REQUEST_TIMEOUT_MS, plus
 * SEND_SLACK_MS for the stamp's answer and the Job's build before the client's timer starts); the server
 * abandons it after its own --request-timeout (KUBE_SERVER_REQUEST_TIMEOUT_SECONDS, 60 s by default), so a 404
 * read after that is definite. Before it, a slow admission webhook may still persist the Job whose answer the
 * client gave up on.
 */
export function lateCreateWindowMs(
  config: Pick<Config, 'kubeRequestTimeoutMs' | 'kubeServerRequestTimeoutSeconds'>,
): number {
  return SEND_SLACK_MS + config.kubeRequestTimeoutMs + config.kubeServerRequestTimeoutSeconds * 1000;
}

const SEND_SLACK_MS = 1000;

// delete: `training-controller cancel` (issue #11); the service deletes the Job, the CLI never talks to the cluster.
export const RBAC_VERBS = ['create', 'get', 'list', 'watch', 'patch', 'delete'] as const;
/** On core/v1 pods: the open run's pods, to report one that cannot start (runPods.ts). */
export const RBAC_POD_VERBS = ['list'] as const;

export interface JobsApi {
  /** The configured namespace (TRAINING_NAMESPACE or its fallbacks): where new runs go. */
  readonly namespace: string;
  readonly server: string;
  /** Whose Jobs these are (TRAINING_NAME): the selector of every list and watch, and the finalizer. */
  readonly instance: Instance;
  /** Creates the Job in its metadata.namespace. */
  create(job: V1Job, options?: { dryRun?: boolean }): Promise<V1Job>;
  /**
   * A server-side dry run of the Job exactly as written, with strict field validation: the API server of the
   * cluster judges every field, so a newer cluster's field is accepted and a typo is refused.
   */
  dryRunStrict(job: V1Job): Promise<void>;
  /** null when the Job does not exist (404). */
  get(namespace: string, name: string): Promise<V1Job | null>;
  list(namespace: string, labelSelector: string): Promise<{ items: V1Job[]; resourceVersion: string }>;
  /** Pods (core/v1), for the open run's Job only (runPods.ts). */
  listPods(namespace: string, labelSelector: string): Promise<V1Pod[]>;
  watch(
    namespace: string,
    labelSelector: string,
    resourceVersion: string,
    onEvent: (type: WatchEvent, obj: unknown) => void,
  ): Promise<WatchHandle>;
  /**
   * Removes our finalizer from the Job as read (a JSON patch that tests the entry before removing it, so a
   * concurrent change fails instead of removing someone else's). 'gone': the Job no longer exists.
   */
  removeFinalizer(job: V1Job): Promise<'removed' | 'absent' | 'gone'>;
  /** Deletes the Job with propagationPolicy Background (its pods go too). 'gone': it did not exist. */
  delete(namespace: string, name: string): Promise<'deleted' | 'gone'>;
  /** Aborts every request in flight and fails every later one at once (shutdown must not wait on a slow server). */
  close(): void;
}

/** Unfinished Jobs labelled app=<TRAINING_NAME> in these namespaces, whoever created them. */
export async function unfinishedJobs(jobs: JobsApi, namespaces: Iterable<string>): Promise<V1Job[]> {
  const found: V1Job[] = [];
  for (const ns of new Set(namespaces)) {
    const { items } = await jobs.list(ns, jobs.instance.selector);
    found.push(...items.filter((j) => !jobOutcome(j).finished));
  }
  return found;
}

export function createJobsApi(cluster: ClusterConfig, timeoutMs: number, instance: Instance): JobsApi {
  return new KubeJobs(cluster, timeoutMs, instance);
}

type Api = BatchV1Api;
type Options = Parameters<Api['readNamespacedJob']>[1];

class KubeJobs implements JobsApi {
  readonly namespace: string;
  readonly server: string;
  private readonly api: Api;
  private readonly core: CoreV1Api;
  private readonly kc: KubeConfig;
  private readonly closed = new AbortController();

  constructor(
    cluster: ClusterConfig,
    private readonly timeoutMs: number,
    readonly instance: Instance,
  ) {
    this.kc = cluster.kc;
    this.namespace = cluster.namespace;
    this.api = cluster.kc.makeApiClient(BatchV1Api);
    this.core = cluster.kc.makeApiClient(CoreV1Api);
    this.server = cluster.kc.getCurrentCluster()?.server ?? '';
  }

  /** client-node 1.4 sets no timeout on requests: a hung API server would stall a dispatch forever. */
  private withTimeout(): Options {
    const signal = () => this.requestSignal();
    return {
      middleware: [
        {
          pre: (ctx: { setSignal(s: AbortSignal): void }) => {
            ctx.setSignal(signal());
            return new Observable(Promise.resolve(ctx));
          },
          post: <T>(rsp: T) => new Observable(Promise.resolve(rsp)),
        },
      ],
      middlewareMergeStrategy: 'append' as const,
    } as unknown as Options;
  }

  /**
   * Aborted after KUBE_REQUEST_TIMEOUT_MS, or at close(). Not AbortSignal.any([AbortSignal.timeout(ms), …]):
   * on Node 20 the timeout signal inside it can be garbage-collected before it fires (nodejs/node#57736), and
   * then a request to a server that never answers hangs forever. Seen here as a flaky test, 2 in ~12 loaded
   * suite runs: a Job create held by the server was still unanswered 10 s later, past its 2 s timeout. The
   * timer holds its controller until it fires (unref'd: it never keeps the process alive); a finished request
   * leaves it to fire harmlessly.
   */
  private requestSignal(): AbortSignal {
    const ac = new AbortController();
    const closed = this.closed.signal;
    const onClose = (): void => ac.abort();
    const timer = setTimeout(() => ac.abort(), this.timeoutMs);
    timer.unref();
    ac.signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        closed.removeEventListener('abort', onClose);
      },
      { once: true },
    );
    if (closed.aborted) ac.abort();
    else closed.addEventListener('abort', onClose, { once: true });
    return ac.signal;
  }

  async create(job: V1Job, options: { dryRun?: boolean } = {}): Promise<V1Job> {
    const ns = job.metadata?.namespace ?? this.namespace;
    try {
      const dryRun = options.dryRun ? 'All' : undefined;
      return await this.api.createNamespacedJob({ namespace: ns, body: job, dryRun }, this.withTimeout());
    } catch (err: unknown) {
      throw toKubeError(err, `create Job ${ns}/${job.metadata?.name ?? ''}`);
    }
  }

  /**
   * Sent as raw JSON over the kubeconfig's own TLS and credentials: client-node's typed create serializes
   * through its 1.34 models and silently drops every field they do not know, so `toleration:` would never
   * reach the server (and a newer cluster's field would be dropped, not judged).
   */
  async dryRunStrict(job: V1Job): Promise<void> {
    const ns = job.metadata?.namespace ?? this.namespace;
    const what = `dry-run create Job ${ns}/${job.metadata?.name ?? ''}`;
    const url = new URL(`${this.server}/apis/batch/v1/namespaces/${encodeURIComponent(ns)}/jobs`);
    url.searchParams.set('dryRun', 'All');
    url.searchParams.set('fieldValidation', 'Strict');
    const options: https.RequestOptions = {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
    };
    let answer: { status: number; body: string };
    try {
      await this.kc.applyToHTTPSOptions(options);
      answer = await post(url, { ...options, signal: this.requestSignal() }, JSON.stringify(job));
    } catch (err: unknown) {
      throw toKubeError(err, what);
    }
    if (answer.status < 200 || answer.status >= 300) throw statusError(answer.status, answer.body, what);
  }

  async get(ns: string, name: string): Promise<V1Job | null> {
    try {
      return await this.api.readNamespacedJob({ name, namespace: ns }, this.withTimeout());
    } catch (err: unknown) {
      const e = toKubeError(err, `get Job ${ns}/${name}`);
      if (e.status === 404) return null;
      throw e;
    }
  }

  async list(ns: string, labelSelector: string): Promise<{ items: V1Job[]; resourceVersion: string }> {
    try {
      const list: V1JobList = await this.api.listNamespacedJob({ namespace: ns, labelSelector }, this.withTimeout());
      return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '' };
    } catch (err: unknown) {
      throw toKubeError(err, `list Jobs ${ns} ${labelSelector}`);
    }
  }

  async listPods(ns: string, labelSelector: string): Promise<V1Pod[]> {
    try {
      return (await this.core.listNamespacedPod({ namespace: ns, labelSelector }, this.withTimeout())).items;
    } catch (err: unknown) {
      throw toKubeError(err, `list Pods ${ns} ${labelSelector}`);
    }
  }

  watch(
    ns: string,
    labelSelector: string,
    resourceVersion: string,
    onEvent: (type: WatchEvent, obj: unknown) => void,
  ): Promise<WatchHandle> {
    const { kc, server } = this;
    return openWatch({
      kc,
      server,
      closed: this.closed.signal,
      namespace: ns,
      labelSelector,
      resourceVersion,
      onEvent,
    });
  }

  async delete(ns: string, name: string): Promise<'deleted' | 'gone'> {
    try {
      // Background: the Job goes at once (once our finalizer is off) and the garbage collector removes its pods.
      await this.api.deleteNamespacedJob({ name, namespace: ns, propagationPolicy: 'Background' }, this.withTimeout());
      return 'deleted';
    } catch (err: unknown) {
      const e = toKubeError(err, `delete Job ${ns}/${name}`);
      if (e.status === 404) return 'gone';
      throw e;
    }
  }

  async removeFinalizer(job: V1Job): Promise<'removed' | 'absent' | 'gone'> {
    const ns = job.metadata?.namespace ?? this.namespace;
    const name = job.metadata?.name ?? '';
    let current: V1Job | null = job;
    for (let attempt = 1; ; attempt++) {
      const index = (current.metadata?.finalizers ?? []).indexOf(this.instance.finalizer);
      if (index < 0) return 'absent';
      try {
        await this.patchOutFinalizer(ns, name, index);
        return 'removed';
      } catch (err: unknown) {
        const e = toKubeError(err, `remove finalizer from Job ${ns}/${name}`);
        if (e.status === 404) return 'gone';
        // The finalizers changed since the read (the test op failed): read again and try once more.
        if (attempt > 1 || (e.kind !== 'conflict' && e.status !== 422)) throw e;
        current = await this.get(ns, name);
        if (!current) return 'gone';
      }
    }
  }

  /** A JSON patch that tests the entry before removing it (client-node's default patch type is json-patch). */
  private async patchOutFinalizer(ns: string, name: string, index: number): Promise<void> {
    const path = `/metadata/finalizers/${index}`;
    const body = [
      { op: 'test', path, value: this.instance.finalizer },
      { op: 'remove', path },
    ];
    await this.api.patchNamespacedJob({ name, namespace: ns, body }, this.withTimeout());
  }

  close(): void {
    this.closed.abort();
  }
}

function post(url: URL, options: https.RequestOptions, body: string): Promise<{ status: number; body: string }> {
  const request = url.protocol === 'http:' ? http.request : https.request;
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// The Kubernetes port: the four calls the controller makes on batch/v1 Jobs (create, get, list, watch), each
// with a timeout, and errors turned into outcomes. The Role in deploy/ grants exactly these verbs.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import { ApiException, BatchV1Api, KubeConfig, Observable, type V1Job, type V1JobList } from '@kubernetes/client-node';

export const RBAC_VERBS = ['create', 'get', 'list', 'watch'] as const;

export type KubeErrorKind = 'conflict' | 'permanent' | 'transient';

/** A failed Kubernetes call. `kind` decides what the caller does: adopt-or-rename, give up, or retry. */
export class KubeError extends Error {
  override name = 'KubeError';
  constructor(
    message: string,
    readonly status: number | null,
    readonly reason: string,
    readonly kind: KubeErrorKind,
  ) {
    super(message);
  }
}

/**
 * 409: a Job of that name exists. 400, 403, 404 (namespace), 422: the same request will fail again.
 * Everything else (401 while a token rotates, 429, 5xx, timeouts, refused connections) may heal.
 */
export function errorKind(status: number | null): KubeErrorKind {
  if (status === 409) return 'conflict';
  if (status === 400 || status === 403 || status === 404 || status === 422) return 'permanent';
  return 'transient';
}

export function toKubeError(err: unknown, what: string): KubeError {
  if (err instanceof KubeError) return err;
  if (err instanceof ApiException) {
    const status = Number(err.code);
    let reason = '';
    let message = '';
    try {
      const body = JSON.parse(String(err.body)) as { reason?: string; message?: string };
      reason = body.reason ?? '';
      message = body.message ?? '';
    } catch {
      message = String(err.body).slice(0, 200);
    }
    return new KubeError(`${what}: HTTP ${status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`, status, reason, errorKind(status));
  }
  const text = err instanceof Error ? err.message : String(err);
  const reason = err instanceof Error && err.name === 'AbortError' ? 'Timeout' : 'Unreachable';
  return new KubeError(`${what}: ${reason === 'Timeout' ? 'timed out' : text}`, null, reason, 'transient');
}

export interface WatchHandle {
  /** Resolves when the stream ends (server timeout, error, abort); `err` is null on a clean end. */
  done: Promise<unknown>;
  abort(): void;
}

export type WatchEvent = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface JobsApi {
  readonly namespace: string;
  readonly server: string;
  create(job: V1Job, options?: { dryRun?: boolean }): Promise<V1Job>;
  /** null when the Job does not exist (404). */
  get(name: string): Promise<V1Job | null>;
  list(labelSelector: string): Promise<{ items: V1Job[]; resourceVersion: string }>;
  watch(labelSelector: string, resourceVersion: string, onEvent: (type: WatchEvent, obj: unknown) => void): Promise<WatchHandle>;
  /** Aborts every request in flight and fails every later one at once (shutdown must not wait on a slow server). */
  close(): void;
}

export interface ClusterConfig {
  kc: KubeConfig;
  namespace: string;
  /** Where the configuration came from, for the startup log line. */
  source: string;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * KubeConfig.loadFromDefault()'s order (KUBECONFIG, ~/.kube/config, in-cluster), without its last resort of
 * an unauthenticated http://localhost:8080: no configuration at all returns null, so the caller can say so.
 */
export function loadClusterConfig(kubeconfigPath: string, namespaceSetting: string): ClusterConfig | null {
  const kc = new KubeConfig();
  let source: string;
  const home = join(homedir(), '.kube', 'config');
  if (kubeconfigPath !== '') {
    kc.loadFromFile(kubeconfigPath.split(':')[0] ?? kubeconfigPath);
    source = `KUBECONFIG ${kubeconfigPath}`;
  } else if (existsSync(home)) {
    kc.loadFromFile(home);
    source = home;
  } else if (existsSync(join(SA_DIR, 'token'))) {
    kc.loadFromCluster();
    source = 'in-cluster service account';
  } else {
    return null;
  }
  if (!kc.getCurrentCluster()) throw new Error(`${source}: the current context names no cluster`);
  const saNamespace = join(SA_DIR, 'namespace');
  const namespace =
    namespaceSetting ||
    (source.startsWith('in-cluster') && existsSync(saNamespace) ? readFileSync(saNamespace, 'utf8').trim() : '') ||
    kc.getContextObject(kc.getCurrentContext())?.namespace ||
    'default';
  return { kc, namespace, source };
}

export function createJobsApi(cluster: ClusterConfig, timeoutMs: number): JobsApi {
  const { kc, namespace } = cluster;
  const api = kc.makeApiClient(BatchV1Api);
  const closed = new AbortController();
  // client-node 1.4 sets no timeout on requests: a hung API server would stall a dispatch forever.
  type Options = Parameters<typeof api.readNamespacedJob>[1];
  const withTimeout = (): Options => ({
    middleware: [
      {
        pre: (ctx: { setSignal(s: AbortSignal): void }) => {
          ctx.setSignal(AbortSignal.any([AbortSignal.timeout(timeoutMs), closed.signal]));
          return new Observable(Promise.resolve(ctx));
        },
        post: <T>(rsp: T) => new Observable(Promise.resolve(rsp)),
      },
    ],
    middlewareMergeStrategy: 'append' as const,
  }) as unknown as Options;
  const server = kc.getCurrentCluster()?.server ?? '';

  return {
    namespace,
    server,
    async create(job, options = {}) {
      try {
        return await api.createNamespacedJob({ namespace, body: job, dryRun: options.dryRun ? 'All' : undefined }, withTimeout());
      } catch (err: unknown) {
        throw toKubeError(err, `create Job ${job.metadata?.name ?? ''}`);
      }
    },
    async get(name) {
      try {
        return await api.readNamespacedJob({ name, namespace }, withTimeout());
      } catch (err: unknown) {
        const e = toKubeError(err, `get Job ${name}`);
        if (e.status === 404) return null;
        throw e;
      }
    },
    async list(labelSelector) {
      try {
        const list: V1JobList = await api.listNamespacedJob({ namespace, labelSelector }, withTimeout());
        return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '' };
      } catch (err: unknown) {
        throw toKubeError(err, `list Jobs ${labelSelector}`);
      }
    },
    // client-node 1.4's Watch only hands back its AbortController once the response headers arrive, so a
    // server that accepts the connection and never answers could not be aborted (and would hold shutdown).
    // This is the same request with the same credentials (applyToHTTPSOptions), abortable from the start.
    async watch(labelSelector, resourceVersion, onEvent) {
      const url = new URL(`${server}/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`);
      const params = { watch: 'true', labelSelector, resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: '300' };
      for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
      const options: https.RequestOptions = {};
      await kc.applyToHTTPSOptions(options);
      const abort = new AbortController();
      closed.signal.addEventListener('abort', () => abort.abort(), { once: true });
      let finish: (err: unknown) => void = () => undefined;
      const done = new Promise<unknown>((resolve) => {
        let finished = false;
        finish = (err) => {
          if (!finished) resolve(err);
          finished = true;
        };
      });
      const request = (url.protocol === 'https:' ? https : http).request(url, { ...options, method: 'GET', signal: abort.signal }, (res) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => finish(new KubeError(`watch Jobs: HTTP ${res.statusCode ?? '?'} ${body.slice(0, 200)}`, res.statusCode ?? null, '', errorKind(res.statusCode ?? null))));
          res.on('error', finish);
          return;
        }
        const lines = createInterface({ input: res });
        lines.on('error', finish);
        lines.on('line', (line) => {
          let event: { type?: string; object?: unknown };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            return; // a torn line at an abort
          }
          if (event.type) onEvent(event.type as WatchEvent, event.object);
        });
        res.on('error', finish);
        res.on('close', () => finish(null));
      });
      request.on('error', finish);
      request.end();
      return { done, abort: () => abort.abort() };
    },
    close() {
      closed.abort();
    },
  };
}

// One watch request on batch/v1 Jobs, newline-delimited JSON, abortable from the start.
// client-node 1.4's Watch only hands back its AbortController once the response headers arrive, so a server
// that accepts the connection and never answers could not be aborted (and would hold shutdown). This is the
// same request with the same credentials (applyToHTTPSOptions).
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { errorKind, KubeError } from './errors.js';

export interface WatchHandle {
  /** Resolves when the stream ends (server timeout, error, abort); `err` is null on a clean end. */
  done: Promise<unknown>;
  abort(): void;
}

export type WatchEvent = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchRequest {
  kc: KubeConfig;
  server: string;
  /** Aborted when the Jobs API closes: every watch ends with it. */
  closed: AbortSignal;
  namespace: string;
  labelSelector: string;
  resourceVersion: string;
  onEvent: (type: WatchEvent, obj: unknown) => void;
}

export async function openWatch(w: WatchRequest): Promise<WatchHandle> {
  const options: https.RequestOptions = {};
  await w.kc.applyToHTTPSOptions(options);
  const abort = new AbortController();
  // Removed again when the watch ends: one listener per renewal on the long-lived `closed` signal was a leak
  // (MaxListenersExceededWarning after ~19 renewals, about an hour at the 300 s renewal).
  const onClosed = (): void => abort.abort();
  w.closed.addEventListener('abort', onClosed, { once: true });
  let finish: (err: unknown) => void = () => undefined;
  const done = new Promise<unknown>((resolve) => {
    let finished = false;
    finish = (err) => {
      if (finished) return;
      finished = true;
      w.closed.removeEventListener('abort', onClosed);
      resolve(err);
    };
  });
  const url = watchUrl(w);
  const request = (url.protocol === 'https:' ? https : http).request(
    url,
    { ...options, method: 'GET', signal: abort.signal },
    (res) => (res.statusCode === 200 ? readEvents(res, w.onEvent, finish) : readError(res, finish)),
  );
  request.on('error', finish);
  request.end();
  return { done, abort: () => abort.abort() };
}

function watchUrl(w: WatchRequest): URL {
  const url = new URL(`${w.server}/apis/batch/v1/namespaces/${encodeURIComponent(w.namespace)}/jobs`);
  const params = {
    watch: 'true',
    labelSelector: w.labelSelector,
    resourceVersion: w.resourceVersion,
    allowWatchBookmarks: 'true',
    timeoutSeconds: '300',
  };
  for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
  return url;
}

/** One event per line; the stream's end (server timeout, abort) finishes the watch cleanly. */
function readEvents(res: http.IncomingMessage, onEvent: WatchRequest['onEvent'], finish: (err: unknown) => void): void {
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
}

function readError(res: http.IncomingMessage, finish: (err: unknown) => void): void {
  let body = '';
  res.on('data', (c: Buffer) => {
    body += c.toString();
  });
  res.on('end', () => {
    const status = res.statusCode ?? null;
    finish(new KubeError(`watch Jobs: HTTP ${status ?? '?'} ${body.slice(0, 200)}`, status, '', errorKind(status)));
  });
  res.on('error', finish);
}

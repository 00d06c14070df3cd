// Errors of the Kubernetes port, turned into what the caller does about them: adopt-or-rename, give up, retry.
import { ApiException } from '@kubernetes/client-node';
import { errorMessage } from '../core/errors.js';

export type KubeErrorKind = 'conflict' | 'permanent' | 'transient';

/** A failed Kubernetes call. `kind` decides what the caller does: adopt-or-rename, give up, or retry. */
export class KubeError extends Error {
  override name = 'KubeError';
  constructor(
    message: string,
    readonly status: number | null,
    readonly reason: string,
    readonly kind: KubeErrorKind,
    /** The Status message of the API server, as it said it (empty when there was no answer). */
    readonly detail = '',
  ) {
    super(message);
  }
}

/**
 * 409: a Job of that name exists (create) or the object changed under us (patch). 400, 403, 404 (namespace),
 * 422: the same request will fail again. Everything else (401 while a token rotates, 429, 5xx, timeouts,
 * refused connections) may heal.
 */
export function errorKind(status: number | null): KubeErrorKind {
  if (status === 409) return 'conflict';
  if (status === 400 || status === 403 || status === 404 || status === 422) return 'permanent';
  return 'transient';
}

/** A KubeError from an HTTP status and the Status body the API server answered with. */
export function statusError(status: number, bodyText: string, what: string): KubeError {
  let reason = '';
  let message = '';
  try {
    const body = JSON.parse(bodyText) as { reason?: string; message?: string };
    reason = body.reason ?? '';
    message = body.message ?? '';
  } catch {
    message = bodyText.slice(0, 200);
  }
  return new KubeError(
    `${what}: HTTP ${status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`,
    status,
    reason,
    errorKind(status),
    message,
  );
}

export function toKubeError(err: unknown, what: string): KubeError {
  if (err instanceof KubeError) return err;
  if (err instanceof ApiException) return statusError(Number(err.code), String(err.body), what);
  const reason = err instanceof Error && err.name === 'AbortError' ? 'Timeout' : 'Unreachable';
  return new KubeError(`${what}: ${reason === 'Timeout' ? 'timed out' : errorMessage(err)}`, null, reason, 'transient');
}

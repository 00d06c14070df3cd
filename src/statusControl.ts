// The operator's part of `status` (issues #11, #15): the pause, a pending trigger request, when the max wait
// fires, and the settings the running service published (status used to compute the threshold and back-off
// from the caller's own environment: the service backed off 20 s while status said 56 s).
import type { Config } from './config.js';
import { publishedSettings, readControl } from './control.js';
import type { Pool } from './db.js';
import type { Tables } from './tables.js';
import { maxWaitDueAt, type MaxWait } from './triggers.js';

/** What the service publishes at startup and `status` reads back (control.ts). */
export interface PublishedSettings {
  trainingThreshold: number;
  retryBackoffSeconds: number;
  retryBackoffMaxSeconds: number;
  trainingMaxWaitSeconds: number;
  trainingMinBatch: number;
  pollIntervalSeconds: number;
  mode: string;
  namespace: string;
}

export function settingsOf(config: Config, mode: string, namespace: string): PublishedSettings {
  const { trainingThreshold, retryBackoffSeconds, retryBackoffMaxSeconds, trainingMaxWaitSeconds } = config;
  const { trainingMinBatch, pollIntervalSeconds } = config;
  return {
    trainingThreshold,
    retryBackoffSeconds,
    retryBackoffMaxSeconds,
    trainingMaxWaitSeconds,
    trainingMinBatch,
    pollIntervalSeconds,
    mode,
    namespace,
  };
}

export interface ControlStatus {
  /** Where the threshold, back-off and max wait shown come from. */
  settings: PublishedSettings & { source: 'service' | 'environment'; publishedAt: string | null };
  paused: { since: string | null; by: string | null; reason: string | null } | null;
  triggerRequest: { at: string; by: string | null; reason: string | null } | null;
  maxWait: { firesAt: string; minBatch: number } | null;
}

export async function readControlStatus(pool: Pool, t: Tables, config: Config): Promise<ControlStatus> {
  const [c, published] = await Promise.all([readControl(pool, t), publishedSettings(pool, t)]);
  const settings = published
    ? {
        ...(published.settings as unknown as PublishedSettings),
        source: 'service' as const,
        publishedAt: published.at.toISOString(),
      }
    : {
        ...settingsOf(config, config.dispatchMode, config.trainingNamespace || '(default)'),
        source: 'environment' as const,
        publishedAt: null,
      };
  const maxWait: MaxWait = { ms: settings.trainingMaxWaitSeconds * 1000, minBatch: settings.trainingMinBatch };
  const due = maxWaitDueAt(c, maxWait);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return {
    settings,
    paused: c.paused ? { since: iso(c.pausedAt), by: c.pausedBy, reason: c.pauseReason } : null,
    triggerRequest: c.triggerAt ? { at: c.triggerAt.toISOString(), by: c.triggerBy, reason: c.triggerReason } : null,
    maxWait: due === null ? null : { firesAt: new Date(due).toISOString(), minBatch: maxWait.minBatch },
  };
}

const by = (who: string | null, reason: string | null) => `${who ? ` by ${who}` : ''}${reason ? `: ${reason}` : ''}`;

export function controlLines(s: ControlStatus, pending: number): string[] {
  const lines: string[] = [];
  if (s.paused)
    lines.push(`paused:              since ${s.paused.since}${by(s.paused.by, s.paused.reason)} (resume lifts it)`);
  if (s.triggerRequest)
    lines.push(`trigger requested:   at ${s.triggerRequest.at}${by(s.triggerRequest.by, s.triggerRequest.reason)}`);
  if (s.maxWait) {
    const held = s.paused ? ', held by the pause' : '';
    const enough = pending >= s.maxWait.minBatch ? '' : ` once ${s.maxWait.minBatch} are pending`;
    lines.push(`max wait:            fires at ${s.maxWait.firesAt}${enough}${held}`);
  }
  const from =
    s.settings.source === 'service'
      ? `as published by the running service at ${s.settings.publishedAt}`
      : "from this shell's environment: no service has published its own";
  lines.push(`settings:            ${s.settings.mode}, namespace ${s.settings.namespace} (${from})`);
  return lines;
}

// What /readyz reports. The state is written by the adapters as things happen; the verdict is a pure function.

export interface Health {
  listenerConnected: boolean;
  lastRecountAt: number | null;
  /**
   * The failing steps of the loop and their last error, by step ('recount', 'gate', 'dispatch', 'reconcile',
   * 'writers'). Each step clears only its own entry when it next succeeds, so a recount that works does not hide
   * a dispatch or a gate publish that keeps failing (a role that can read but not write).
   */
  failing: Record<string, string>;
  /** null when no cluster is configured (print mode): then the cluster is not part of readiness. */
  cluster: { okAt: number | null; error: string | null } | null;
}

export function newHealth(clusterConfigured: boolean): Health {
  return {
    listenerConnected: false,
    lastRecountAt: null,
    failing: {},
    cluster: clusterConfigured ? { okAt: null, error: null } : null,
  };
}

export interface ReadinessLimits {
  /** A recount older than this means the loop is stuck. */
  recountMaxAgeMs: number;
  /** The cluster must have answered within this. */
  clusterMaxAgeMs: number;
}

export function readiness(h: Health, now: number, limits: ReadinessLimits): { ready: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!h.listenerConnected) reasons.push('listener not connected to PostgreSQL');
  for (const [step, error] of Object.entries(h.failing)) reasons.push(`${step} failing: ${error}`);
  if (h.lastRecountAt === null) reasons.push('no recount yet');
  else if (now - h.lastRecountAt > limits.recountMaxAgeMs)
    reasons.push(`last recount ${Math.round((now - h.lastRecountAt) / 1000)} s ago`);
  if (h.cluster) {
    if (h.cluster.error) reasons.push(`cluster unreachable: ${h.cluster.error}`);
    else if (h.cluster.okAt === null) reasons.push('cluster not reached yet');
    else if (now - h.cluster.okAt > limits.clusterMaxAgeMs)
      reasons.push(`cluster last answered ${Math.round((now - h.cluster.okAt) / 1000)} s ago`);
  }
  return { ready: reasons.length === 0, reasons };
}

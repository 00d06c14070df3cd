// What /readyz reports. The state is written by the adapters as things happen; the verdict is a pure function.

export interface Health {
  listenerConnected: boolean;
  lastRecountAt: number | null;
  /** Last time a database statement succeeded / failed, with the error. */
  databaseError: string | null;
  /** null when no cluster is configured (print mode): then the cluster is not part of readiness. */
  cluster: { okAt: number | null; error: string | null } | null;
}

export function newHealth(clusterConfigured: boolean): Health {
  return { listenerConnected: false, lastRecountAt: null, databaseError: null, cluster: clusterConfigured ? { okAt: null, error: null } : null };
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
  if (h.databaseError) reasons.push(`database: ${h.databaseError}`);
  if (h.lastRecountAt === null) reasons.push('no recount yet');
  else if (now - h.lastRecountAt > limits.recountMaxAgeMs) reasons.push(`last recount ${Math.round((now - h.lastRecountAt) / 1000)} s ago`);
  if (h.cluster) {
    if (h.cluster.error) reasons.push(`cluster unreachable: ${h.cluster.error}`);
    else if (h.cluster.okAt === null) reasons.push('cluster not reached yet');
    else if (now - h.cluster.okAt > limits.clusterMaxAgeMs) reasons.push(`cluster last answered ${Math.round((now - h.cluster.okAt) / 1000)} s ago`);
  }
  return { ready: reasons.length === 0, reasons };
}

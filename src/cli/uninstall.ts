// `training-controller uninstall [--yes] [--keep-history] [--drop-columns]` (db/uninstall.ts does the database
// part). Dry by default: it lists what it would remove. Refused while a run is open, and while a Job of ours
// still carries the finalizer (only the service removes it, once it has recorded the run's outcome): the
// Kubernetes side is asked when a cluster is configured (KUBECONFIG, ~/.kube/config, in-cluster), and the
// answer says so when none is.
import type { Config } from '../core/config.js';
import type { Pool } from '../db/pool.js';
import { tables } from '../db/tables.js';
import { instanceNamed } from '../core/instance.js';
import {
  optionsRefusal,
  runNamespaces,
  UninstallRefused,
  uninstall,
  uninstallInventory,
  uninstallRefusal,
  type UninstallOptions,
} from '../db/uninstall.js';
import { fail, type CommandContext } from './commandLine.js';

/**
 * The names whose Jobs may be ours: this shell's TRAINING_NAME and the one the schema's service last published
 * (a shell without the service's TRAINING_NAME would otherwise look for the wrong Jobs' finalizer).
 */
async function ourNames(config: Config, pool: Pool): Promise<string[]> {
  const { lastTrainingName } = await import('../startup.js');
  const theirs = await lastTrainingName(pool, tables(config.annotationsSchema)).catch(() => null);
  return [...new Set([config.trainingName, theirs ?? config.trainingName])];
}

/** The Jobs of ours that still carry the finalizer, or null when no cluster is configured. */
async function finalizedJobs(config: Config, pool: Pool, names: string[]): Promise<string[] | null> {
  // Lazily: the Kubernetes client costs ~0.65 s of CPU to load (commands.ts).
  const { loadClusterConfig } = await import('../kube/clusterConfig.js');
  const cluster = loadClusterConfig(config.kubeconfig, config.trainingNamespace, config.home);
  if (!cluster) return null;
  const { createJobsApi } = await import('../kube/jobs.js');
  const jobs = createJobsApi(cluster, config.kubeRequestTimeoutMs, instanceNamed(config.trainingName));
  try {
    const namespaces = new Set([cluster.namespace, ...(await runNamespaces(pool, tables(config.annotationsSchema)))]);
    const held: string[] = [];
    for (const instance of names.map(instanceNamed))
      for (const ns of namespaces) {
        const { items } = await jobs.list(ns, instance.selector);
        for (const j of items)
          if (j.metadata?.finalizers?.includes(instance.finalizer)) held.push(`${ns}/${j.metadata.name ?? '?'}`);
      }
    return held;
  } finally {
    jobs.close();
  }
}

export async function uninstallCommand(ctx: CommandContext, pool: Pool): Promise<void> {
  const { config, logger, flags } = ctx;
  const t = tables(config.annotationsSchema);
  const o: UninstallOptions = {
    keepHistory: flags['--keep-history'] === true,
    dropColumns: flags['--drop-columns'] === true,
  };
  const refusal = (flags['--yes'] === true ? optionsRefusal(o) : null) ?? (await uninstallRefusal(pool, t));
  if (refusal) fail(`uninstall refused: ${refusal}`, 1);
  const names = await ourNames(config, pool);
  const held = await finalizedJobs(config, pool, names);
  const finalizer = names.map((n) => instanceNamed(n).finalizer).join(' or ');
  if (held && held.length > 0)
    fail(
      `uninstall refused: Job ${held.join(', ')} still carries the finalizer ${finalizer}: start the service until it records the outcome and lets the Job go, or remove the finalizer by hand (docs/migrations.md "Uninstall")`,
      1,
    );
  const found = await uninstallInventory(pool, t, o);
  const keeps = [
    o.keepHistory ? `${t.runs} (--keep-history)` : null,
    o.dropColumns
      ? null
      : `the columns used_for_training and training_run_id of ${t.annotations} (--drop-columns removes them)`,
  ].filter((k): k is string => k !== null);
  const checked =
    held === null
      ? `No Kubernetes configuration: Jobs were not checked for the finalizer ${finalizer} (docs/migrations.md "Uninstall", step 3).`
      : `No Job carries the finalizer ${finalizer}.`;
  if (flags['--yes'] !== true) {
    const list = found.length ? found.map((f) => `  ${f}`).join('\n') : '  nothing: no object of ours is there';
    const choose = optionsRefusal(o);
    ctx.out(
      `Would remove (run again with --yes):\n${list}\nKeeps: ${keeps.join('; ') || 'nothing of ours'}\n${checked}\n${choose ? `Before --yes, ${choose}.\n` : ''}`,
    );
    return;
  }
  let applied: string[];
  try {
    applied = await uninstall(pool, logger, t, o);
  } catch (err: unknown) {
    if (err instanceof UninstallRefused) fail(`uninstall refused: ${err.message}`, 1);
    throw err;
  }
  logger.info({ applied }, 'Uninstalled');
  ctx.out(
    `Removed ${found.length} object(s)${found.length ? `:\n${found.map((f) => `  ${f}`).join('\n')}` : ''}\nKept: ${keeps.join('; ') || 'nothing of ours'}\n${checked}\n\`training-controller migrate\` installs it again.\n`,
  );
}

// TRAINING_NAME: what one controller calls its own in Kubernetes, so two of them in one namespace (another
// model, another database or schema) never see each other's Jobs as theirs (issue 23). Every name derives from
// it the same way; the default, sentinel-training, gives exactly the names of every earlier version, so an
// upgrade keeps following the Jobs it created:
//   label app=<name> on the Job and its pods (what the controller lists, watches and counts as "a run going on"),
//   label <name>/run-id=<id> (which run a Job belongs to), finalizer <name>.io/settle, Job names
//   <name>-YYYYMMDD-HHMMSS[-n].
// The dispatch lock is scoped by the schema (db/locks.ts dispatchLock), which serves one name (startup.ts).

export const DEFAULT_TRAINING_NAME = 'sentinel-training';

// A Job name is at most 63 characters (its pods carry it in the job-name label): the name, '-', the 15 of
// YYYYMMDD-HHMMSS, and up to '-99' for runs started within one second leave 44; 40 keeps a margin.
export const TRAINING_NAME_MAX = 40;

export interface Instance {
  name: string;
  /** The label every Job and pod of ours carries, and its value. */
  appLabel: 'app';
  appValue: string;
  /** `app=<name>`: the label selector of every list and watch. */
  selector: string;
  /** Tells our Job from another with the same name (names have one-second resolution). */
  runIdLabel: string;
  jobPrefix: string;
  /**
   * On every Job we create. A deletion (the TTL controller, `kubectl delete job`) then only sets
   * deletionTimestamp, and the Job keeps its final status until the controller has recorded the run's outcome
   * and removed this entry: a Job that completed while the controller was away is still `succeeded`.
   */
  finalizer: string;
}

export function instanceNamed(name: string): Instance {
  return {
    name,
    appLabel: 'app',
    appValue: name,
    selector: `app=${name}`,
    runIdLabel: `${name}/run-id`,
    jobPrefix: `${name}-`,
    finalizer: `${name}.io/settle`,
  };
}

export const DEFAULT_INSTANCE = instanceNamed(DEFAULT_TRAINING_NAME);

/** `<name>-YYYYMMDD-HHMMSS` in UTC: 34 characters for the default name, inside a 63-character DNS label. */
export function jobName(instance: Instance, at: Date): string {
  const iso = at.toISOString(); // 2026-11-26T19:54:26.123Z
  return `${instance.jobPrefix}${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
}

/** The TRAINING_NAME a Job name of ours was made with (`<name>-YYYYMMDD-HHMMSS[-n]`), or null. */
export function nameOfJob(jobName: string): string | null {
  return /^(.+)-\d{8}-\d{6}(-\d+)?$/.exec(jobName)?.[1] ?? null;
}

/** Whether `name` is one this instance gives its Jobs (`<name>-YYYYMMDD-HHMMSS[-n]`). */
export function ownsJobName(instance: Instance, name: string): boolean {
  return nameOfJob(name) === instance.name;
}

/** `sentinel-training-20261126-195426-2` → `sentinel-training-20261126-195426`; other names unchanged. */
export function baseName(instance: Instance, name: string): string {
  return ownsJobName(instance, name) ? name.replace(/(-\d{8}-\d{6})-\d+$/, '$1') : name;
}

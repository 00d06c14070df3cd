// The shape of a Job template (JOB_TEMPLATE_FILE): every field the controller reads or writes must be the
// kind of value it expects, before anything touches it. YAML makes the wrong kind easy (`containers:` written
// as a map, `image: 5`, `team: 1.10` read as the number 1.1), and without this check such a template ended in
// a TypeError that named neither the file nor the field, or, for `metadata: hello`, was spread into a Job as
// a map of characters. Checked here: the fields buildJob and validateJob use, plus the container fields whose
// wrong kind the API server would only reject at the first dispatch, hours later.
//
// A YAML key with no value (`metadata:`) is null; null counts as absent, as it does for the API server.

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `metadata.labels.team`, or `metadata.labels["app.kubernetes.io/name"]` for a key with dots or slashes. */
export function fieldPath(base: string, key: string): string {
  return IDENTIFIER.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}

type Kind = 'object' | 'array' | 'string' | 'integer';

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return `a ${typeof value}`;
}

function isKind(value: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
  }
}

type Fields = Record<string, unknown>;

/** Collects "path: problem" lines; each check returns the value when it is there and of the right kind. */
class Checker {
  readonly errors: string[] = [];

  field(path: string, value: unknown, kind: Kind, required = false): unknown {
    if (value === undefined || value === null) {
      if (required) this.errors.push(`${path}: Required value`);
      return undefined;
    }
    return this.item(path, value, kind);
  }

  /** An entry of a list or a map, where null is a value of the wrong kind, not an absent field. */
  item(path: string, value: unknown, kind: Kind): unknown {
    if (isKind(value, kind)) return value;
    const article = kind === 'array' || kind === 'object' || kind === 'integer' ? 'an' : 'a';
    // A YAML scalar meant as text but read as a number or boolean (`1.10`, `yes`) needs quotes.
    const hint = kind === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? '; quote it' : '';
    this.errors.push(`${path}: must be ${article} ${kind} (got ${kindOf(value)}${hint})`);
    return undefined;
  }

  object(path: string, value: unknown, required = false): Fields | undefined {
    return this.field(path, value, 'object', required) as Fields | undefined;
  }

  /** The entries of an array that are objects (the others are reported). */
  objects(path: string, value: unknown, required = false): [string, Fields][] {
    const list = this.field(path, value, 'array', required) as unknown[] | undefined;
    return (list ?? []).flatMap((item, i) => {
      const entry = this.item(`${path}[${i}]`, item, 'object') as Fields | undefined;
      return entry ? [[`${path}[${i}]`, entry] as [string, Fields]] : [];
    });
  }

  strings(path: string, value: unknown): void {
    const list = this.field(path, value, 'array') as unknown[] | undefined;
    for (const [i, item] of (list ?? []).entries()) this.item(`${path}[${i}]`, item, 'string');
  }

  /** A map of strings (labels, annotations): the API server takes no other value. */
  stringMap(path: string, value: unknown): void {
    for (const [key, item] of Object.entries(this.object(path, value) ?? {}))
      this.item(fieldPath(path, key), item, 'string');
  }

  metadata(path: string, value: unknown): void {
    const metadata = this.object(path, value);
    if (!metadata) return;
    for (const key of ['name', 'generateName', 'namespace']) this.field(`${path}.${key}`, metadata[key], 'string');
    this.stringMap(`${path}.labels`, metadata.labels);
    this.stringMap(`${path}.annotations`, metadata.annotations);
    this.strings(`${path}.finalizers`, metadata.finalizers);
  }

  container(path: string, c: Fields): void {
    this.field(`${path}.name`, c.name, 'string');
    this.field(`${path}.image`, c.image, 'string');
    this.strings(`${path}.command`, c.command);
    this.strings(`${path}.args`, c.args);
    // The controller filters env by name and appends TRAINING_RUN_ID and TRAINING_ANNOTATION_COUNT to it.
    for (const [at, e] of this.objects(`${path}.env`, c.env)) {
      this.field(`${at}.name`, e.name, 'string', true);
      this.field(`${at}.value`, e.value, 'string');
      this.object(`${at}.valueFrom`, e.valueFrom);
    }
  }
}

/**
 * A template that sets `spec.suspend` (to anything but its default, false) makes a Job that never runs and so
 * never finishes: its run stays open, and an open run blocks every later run. The controller decides when a
 * Job starts; `suspend: false` is the default written out, and is accepted.
 */
const SUSPEND =
  'spec.suspend: must not be set (a suspended Job never finishes, and its open run would block every later run)';

/** The "field: problem" lines for a parsed template; empty when its shape is right. */
export function templateShapeErrors(doc: unknown): string[] {
  const check = new Checker();
  const job = check.object('(document)', doc, true);
  if (!job) return check.errors;
  check.field('apiVersion', job.apiVersion, 'string');
  check.field('kind', job.kind, 'string');
  check.metadata('metadata', job.metadata);
  const spec = check.object('spec', job.spec, true);
  if (!spec) return check.errors;
  if (spec.suspend !== undefined && spec.suspend !== null && spec.suspend !== false) check.errors.push(SUSPEND);
  for (const key of ['backoffLimit', 'ttlSecondsAfterFinished', 'activeDeadlineSeconds', 'completions', 'parallelism'])
    check.field(`spec.${key}`, spec[key], 'integer');
  const template = check.object('spec.template', spec.template, true);
  if (!template) return check.errors;
  check.metadata('spec.template.metadata', template.metadata);
  const pod = check.object('spec.template.spec', template.spec, true);
  if (!pod) return check.errors;
  check.field('spec.template.spec.restartPolicy', pod.restartPolicy, 'string');
  for (const [at, c] of check.objects('spec.template.spec.initContainers', pod.initContainers)) check.container(at, c);
  for (const [at, c] of check.objects('spec.template.spec.containers', pod.containers, true)) check.container(at, c);
  return check.errors;
}

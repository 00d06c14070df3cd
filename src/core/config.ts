// The only module that reads the environment. Everything else receives a Config.
import convict from 'convict';
import { dnsLabel, int, nonEmpty, oneOf, postgresUrl, sqlIdentifier, trainingName } from './configRules.js';
import { DEFAULT_TRAINING_NAME } from './instance.js';

/**
 * Shortest ttlSecondsAfterFinished accepted (JOB_TTL_SECONDS or the template's). The finalizer keeps a finished
 * Job's status whatever the TTL, but a Job (and its pods' logs) deleted within seconds of finishing is gone
 * before an operator can read why it failed; 10 minutes outlives a controller restart or a node drain.
 */
export const MIN_JOB_TTL_SECONDS = 600;

/**
 * How runs are dispatched. kubernetes: create Jobs. dry-run: the API server validates each (dryRun=All), nothing
 * is claimed. print: no cluster configured, the Job is logged. DISPATCH_MODE sets the first two; print is what
 * the service falls back to without a cluster (never a setting).
 */
export type DispatchMode = 'kubernetes' | 'dry-run' | 'print';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** `pretty`: pino-pretty, for a person at a terminal; `json`: one JSON object a line, for a log pipeline. */
export type LogFormat = 'json' | 'pretty';

export interface Config {
  production: boolean;
  /** Empty: use the embedded PostgreSQL (refused in production). */
  databaseUrl: string;
  /** The file DATABASE_URL was read from (DATABASE_URL_FILE), '' when it was not: read again for a rotated password. */
  databaseUrlFile: string;
  /** Direct connection for LISTEN; never a transaction-pooling PgBouncer. */
  listenDatabaseUrl: string;
  /** The file LISTEN_DATABASE_URL was read from (or DATABASE_URL's, when it is the same URL), else ''. */
  listenDatabaseUrlFile: string;
  /** Schema of the Triage API's annotations table; the controller's objects live beside it. */
  annotationsSchema: string;
  embeddedDataDir: string;
  embeddedPort: number;
  trainingThreshold: number;
  /** A run also starts once the oldest pending annotation waited this long (0: off) … */
  trainingMaxWaitSeconds: number;
  /** … and at least this many are pending (1 ≤ it ≤ the threshold). */
  trainingMinBatch: number;
  debounceMs: number;
  debounceMaxWaitMs: number;
  /** 0 turns the fallback poll off (tests prove the gate alone suffices). */
  pollIntervalSeconds: number;
  reconcileIntervalSeconds: number;
  /** How often the LISTEN connection proves it still delivers notifications (a ping to itself). */
  listenCheckIntervalMs: number;
  /** Annotations per claim / settle / release / baseline transaction. */
  chunkRows: number;
  retryBackoffSeconds: number;
  retryBackoffMaxSeconds: number;
  /** Empty: KubeConfig.loadFromDefault() order (KUBECONFIG, ~/.kube/config, in-cluster). */
  kubeconfig: string;
  /** Empty: service account namespace, else the kubeconfig context's, else `default`. */
  trainingNamespace: string;
  /** What this controller calls its own: its Jobs' label, name prefix and finalizer, its dispatch lock (core/instance.ts). */
  trainingName: string;
  trainingImage: string;
  jobTemplateFile: string;
  jobTtlSeconds: number;
  kubeRequestTimeoutMs: number;
  /**
   * The API server's own request timeout (kube-apiserver --request-timeout): how long a create the controller
   * stopped waiting for may still persist its Job.
   */
  kubeServerRequestTimeoutSeconds: number;
  dispatchMode: Exclude<DispatchMode, 'print'>;
  httpPort: number;
  logLevel: LogLevel;
  /** LOG_FORMAT resolved: `auto` is `pretty` on a terminal outside production, else `json`. */
  logFormat: LogFormat;
  shutdownTimeoutMs: number;
  /** HOME, where ~/.kube/config is looked for; empty: the user's home directory (os.homedir()). */
  home: string;
}

/** Thrown for any bad setting; `message` is one line naming the variable and the rule. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

// alpine 3.20.3 is ~3.5 MB: the default Job only proves the loop works, real training comes from JOB_TEMPLATE_FILE.
export const DEFAULT_TRAINING_IMAGE = 'docker.io/library/alpine:3.20.3';

// Each key maps to exactly one environment variable; the README's configuration table lists the same rows.
const schema = {
  nodeEnv: { env: 'NODE_ENV', default: 'development', format: oneOf('production', 'development', 'test') },
  databaseUrl: { env: 'DATABASE_URL', default: '', format: postgresUrl, sensitive: true },
  listenDatabaseUrl: { env: 'LISTEN_DATABASE_URL', default: '', format: postgresUrl, sensitive: true },
  // A file holding the URL (a mounted Secret), instead of the variable: exactly one of the two forms.
  databaseUrlFile: { env: 'DATABASE_URL_FILE', default: '', format: String },
  listenDatabaseUrlFile: { env: 'LISTEN_DATABASE_URL_FILE', default: '', format: String },
  annotationsSchema: { env: 'ANNOTATIONS_SCHEMA', default: 'public', format: sqlIdentifier },
  embeddedDataDir: { env: 'EMBEDDED_DATA_DIR', default: '.data', format: nonEmpty },
  embeddedPort: { env: 'EMBEDDED_PORT', ...int(54329, 1, 65535) },
  trainingThreshold: { env: 'TRAINING_THRESHOLD', ...int(50, 1, 1_000_000_000) },
  trainingMaxWaitSeconds: { env: 'TRAINING_MAX_WAIT_SECONDS', ...int(0, 0, 31_536_000) },
  trainingMinBatch: { env: 'TRAINING_MIN_BATCH', ...int(1, 1, 1_000_000_000) },
  debounceMs: { env: 'DEBOUNCE_MS', ...int(1000, 0, 3_600_000) },
  debounceMaxWaitMs: { env: 'DEBOUNCE_MAX_WAIT_MS', ...int(5000, 0, 3_600_000) },
  pollIntervalSeconds: { env: 'POLL_INTERVAL_SECONDS', ...int(300, 0, 86_400) },
  reconcileIntervalSeconds: { env: 'RECONCILE_INTERVAL_SECONDS', ...int(30, 1, 86_400) },
  listenCheckIntervalMs: { env: 'LISTEN_CHECK_INTERVAL_MS', ...int(10_000, 100, 600_000) },
  // 2,000 rows: a chunk takes ~30-60 ms here, so a Triage write waits well under 200 ms on one (issue #14).
  chunkRows: { env: 'CHUNK_ROWS', ...int(2000, 1, 1_000_000) },
  retryBackoffSeconds: { env: 'RETRY_BACKOFF_SECONDS', ...int(60, 0, 86_400) },
  retryBackoffMaxSeconds: { env: 'RETRY_BACKOFF_MAX_SECONDS', ...int(3600, 0, 604_800) },
  kubeconfig: { env: 'KUBECONFIG', default: '', format: String },
  trainingNamespace: { env: 'TRAINING_NAMESPACE', default: '', format: dnsLabel },
  trainingName: { env: 'TRAINING_NAME', default: DEFAULT_TRAINING_NAME, format: trainingName },
  trainingImage: { env: 'TRAINING_IMAGE', default: DEFAULT_TRAINING_IMAGE, format: nonEmpty },
  jobTemplateFile: { env: 'JOB_TEMPLATE_FILE', default: '', format: String },
  jobTtlSeconds: { env: 'JOB_TTL_SECONDS', ...int(3600, MIN_JOB_TTL_SECONDS, 31_536_000) },
  kubeRequestTimeoutMs: { env: 'KUBE_REQUEST_TIMEOUT_MS', ...int(10_000, 100, 600_000) },
  // kube-apiserver's --request-timeout defaults to 1m0s; a cluster that raised it must say so here.
  kubeServerRequestTimeoutSeconds: { env: 'KUBE_SERVER_REQUEST_TIMEOUT_SECONDS', ...int(60, 1, 3600) },
  dispatchMode: { env: 'DISPATCH_MODE', default: 'kubernetes', format: oneOf('kubernetes', 'dry-run') },
  httpPort: { env: 'HTTP_PORT', ...int(8080, 0, 65535) },
  logLevel: {
    env: 'LOG_LEVEL',
    default: 'info',
    format: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  },
  logFormat: { env: 'LOG_FORMAT', default: 'auto', format: oneOf('auto', 'json', 'pretty') },
  shutdownTimeoutMs: { env: 'SHUTDOWN_TIMEOUT_MS', ...int(10_000, 100, 600_000) },
} as const;

type Key = keyof typeof schema;

/** Each variable's default as text (empty: none), for the README test. */
export const ENV_DEFAULTS: Record<string, string> = Object.fromEntries(
  Object.values(schema).map((s) => [s.env, String(s.default)]),
);

export interface LoadOptions {
  /**
   * false for a command that never connects (render-job): production then does not demand DATABASE_URL.
   */
  needsDatabase?: boolean;
  /** Whether stdout is a terminal: decides LOG_FORMAT=auto. Default false (json), as under a test runner. */
  stdoutIsTty?: boolean;
  /** Reads a *_FILE setting's file (the CLI passes the file system's); without it such a setting is refused. */
  readFile?: (path: string) => string;
}

/**
 * Reads and validates the settings. Throws ConfigError whose message is one line:
 * `TRAINING_THRESHOLD must be an integer >= 1 (got "0")`. Never echoes a sensitive value.
 */
export function loadConfig(env: Record<string, string | undefined>, options: LoadOptions = {}): Config {
  const raw = readSettings(env);
  const config = {
    ...toConfig(raw, options.stdoutIsTty === true),
    ...urlsFromFiles(raw, options.readFile),
    // Not a setting of ours (no row in the configuration table): the environment's own.
    home: env.HOME ?? '',
  };
  crossCheck(config, options);
  return config;
}

type Raw = Record<Key, unknown>;

/** Each setting checked on its own, by its rule in `schema`. */
function readSettings(env: Record<string, string | undefined>): Raw {
  // An empty variable means "unset": `TRAINING_THRESHOLD=` in a compose file should not read as 0.
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;
  const conf = convict(schema as unknown as convict.Schema<Raw>, { env: cleaned, args: [] });
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err: unknown) {
    throw new ConfigError(describeConvictError(err, cleaned));
  }
  return conf.getProperties();
}

function toConfig(raw: Raw, stdoutIsTty: boolean): Omit<Config, keyof Urls | 'home'> {
  const num = (k: Key): number => Number(raw[k]);
  const str = (k: Key): string => String(raw[k]);
  const production = str('nodeEnv') === 'production';
  const format = str('logFormat');
  return {
    production,
    annotationsSchema: str('annotationsSchema'),
    embeddedDataDir: str('embeddedDataDir'),
    embeddedPort: num('embeddedPort'),
    trainingThreshold: num('trainingThreshold'),
    trainingMaxWaitSeconds: num('trainingMaxWaitSeconds'),
    trainingMinBatch: num('trainingMinBatch'),
    debounceMs: num('debounceMs'),
    debounceMaxWaitMs: num('debounceMaxWaitMs'),
    pollIntervalSeconds: num('pollIntervalSeconds'),
    reconcileIntervalSeconds: num('reconcileIntervalSeconds'),
    listenCheckIntervalMs: num('listenCheckIntervalMs'),
    chunkRows: num('chunkRows'),
    retryBackoffSeconds: num('retryBackoffSeconds'),
    retryBackoffMaxSeconds: num('retryBackoffMaxSeconds'),
    kubeconfig: str('kubeconfig'),
    trainingNamespace: str('trainingNamespace'),
    trainingName: str('trainingName'),
    trainingImage: str('trainingImage'),
    jobTemplateFile: str('jobTemplateFile'),
    jobTtlSeconds: num('jobTtlSeconds'),
    kubeRequestTimeoutMs: num('kubeRequestTimeoutMs'),
    kubeServerRequestTimeoutSeconds: num('kubeServerRequestTimeoutSeconds'),
    dispatchMode: str('dispatchMode') as Exclude<DispatchMode, 'print'>,
    httpPort: num('httpPort'),
    logLevel: str('logLevel') as LogLevel,
    logFormat: format === 'auto' ? (stdoutIsTty && !production ? 'pretty' : 'json') : (format as LogFormat),
    shutdownTimeoutMs: num('shutdownTimeoutMs'),
  };
}

type Urls = Pick<Config, 'databaseUrl' | 'databaseUrlFile' | 'listenDatabaseUrl' | 'listenDatabaseUrlFile'>;

/** DATABASE_URL or DATABASE_URL_FILE (and the same for LISTEN_): exactly one form, the file's URL checked as the variable's. */
function urlsFromFiles(raw: Raw, readFile: LoadOptions['readFile']): Urls {
  const one = (urlKey: Key, fileKey: Key): { url: string; file: string } => {
    const url = String(raw[urlKey]);
    const file = String(raw[fileKey]);
    const [urlEnv, fileEnv] = [schema[urlKey].env, schema[fileKey].env];
    if (file === '') return { url, file };
    if (url !== '') throw new ConfigError(`set ${urlEnv} or ${fileEnv}, not both`);
    if (!readFile) throw new ConfigError(`${fileEnv} cannot be read here: set ${urlEnv}`);
    let text: string;
    try {
      text = readFile(file).trim();
    } catch (err: unknown) {
      const code = (err as { code?: string }).code ?? 'unreadable';
      throw new ConfigError(`${fileEnv} ${file} cannot be read (${code})`);
    }
    try {
      if (text === '') throw new Error('empty');
      postgresUrl(text);
    } catch {
      // Never its content: it is a secret.
      throw new ConfigError(`${fileEnv} ${file} must hold a postgres:// or postgresql:// URL`);
    }
    return { url: text, file };
  };
  const db = one('databaseUrl', 'databaseUrlFile');
  const listen = one('listenDatabaseUrl', 'listenDatabaseUrlFile');
  return {
    databaseUrl: db.url,
    databaseUrlFile: db.file,
    listenDatabaseUrl: listen.url || db.url,
    listenDatabaseUrlFile: listen.url ? listen.file : db.file,
  };
}

/** Rules between settings, each one line naming both. */
function crossCheck(config: Config, options: LoadOptions): void {
  if (config.debounceMaxWaitMs < config.debounceMs) {
    throw new ConfigError(
      `DEBOUNCE_MAX_WAIT_MS must be >= DEBOUNCE_MS (${config.debounceMs}) (got "${config.debounceMaxWaitMs}")`,
    );
  }
  if (config.trainingMinBatch > config.trainingThreshold) {
    throw new ConfigError(
      `TRAINING_MIN_BATCH must be <= TRAINING_THRESHOLD (${config.trainingThreshold}) (got "${config.trainingMinBatch}")`,
    );
  }
  // The back-off doubles from RETRY_BACKOFF_SECONDS up to its cap: a start above the cap has no meaning.
  if (config.retryBackoffSeconds > config.retryBackoffMaxSeconds) {
    throw new ConfigError(
      `RETRY_BACKOFF_SECONDS must be <= RETRY_BACKOFF_MAX_SECONDS (${config.retryBackoffMaxSeconds}) (got "${config.retryBackoffSeconds}")`,
    );
  }
  if (config.production && config.databaseUrl === '' && options.needsDatabase !== false) {
    throw new ConfigError(
      'DATABASE_URL is required when NODE_ENV=production (the embedded PostgreSQL is for development only)',
    );
  }
  if (config.listenDatabaseUrl !== '' && config.databaseUrl === '') {
    throw new ConfigError('LISTEN_DATABASE_URL needs DATABASE_URL too (the embedded PostgreSQL serves both)');
  }
}

function describeConvictError(err: unknown, env: Record<string, string>): string {
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
  // convict says: `trainingThreshold: must be an integer >= 1: value was "0"`
  const match = /^([A-Za-z]+): (.*?)(?:: value was (.*))?$/.exec(first);
  if (match?.[1] && match[1] in schema) {
    const key = match[1] as Key;
    const s = schema[key];
    const shown = 'sensitive' in s && s.sensitive ? '"<redacted>"' : JSON.stringify(env[s.env] ?? '');
    return `${s.env} ${match[2]} (got ${shown})`;
  }
  return `invalid configuration: ${first}`;
}

/** The embedded PostgreSQL of `npm start` (dev/embedded.ts starts it; the CLI's commands only connect to it). */
export const EMBEDDED_DATABASE = 'training';
export const EMBEDDED_USER = 'postgres';
// A fixed, local-only credential: the server listens on 127.0.0.1 only and holds development data.
export const EMBEDDED_PASSWORD = 'postgres';

export function embeddedUrl(port: number): string {
  return `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
}

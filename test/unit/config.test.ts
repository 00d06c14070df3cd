import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, DEFAULT_TRAINING_IMAGE, loadConfig } from '../../src/core/config.js';

const fails = (env: Record<string, string>): string => {
  try {
    loadConfig(env);
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'one line');
    return err.message;
  }
  assert.fail('expected loadConfig to throw');
};

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    assert.equal(c.trainingThreshold, 50);
    assert.equal(c.debounceMs, 1000);
    assert.equal(c.pollIntervalSeconds, 300);
    assert.equal(c.reconcileIntervalSeconds, 30);
    assert.equal(c.retryBackoffSeconds, 60);
    assert.equal(c.retryBackoffMaxSeconds, 3600);
    assert.equal(c.jobTtlSeconds, 3600);
    assert.equal(c.dispatchMode, 'kubernetes');
    assert.equal(c.httpPort, 8080);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.trainingImage, DEFAULT_TRAINING_IMAGE);
    assert.equal(c.databaseUrl, '');
    assert.equal(c.production, false);
  });

  it('reads every setting from its environment variable', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgres://u:p@db:5432/x',
      TRAINING_THRESHOLD: '7',
      DEBOUNCE_MS: '100',
      DISPATCH_MODE: 'dry-run',
      TRAINING_NAMESPACE: 'ml',
      HTTP_PORT: '0',
    });
    assert.equal(c.trainingThreshold, 7);
    assert.equal(c.debounceMs, 100);
    assert.equal(c.dispatchMode, 'dry-run');
    assert.equal(c.trainingNamespace, 'ml');
    assert.equal(c.httpPort, 0);
    assert.equal(c.listenDatabaseUrl, 'postgres://u:p@db:5432/x', 'LISTEN_DATABASE_URL defaults to DATABASE_URL');
  });

  for (const [env, expected] of [
    [{ TRAINING_THRESHOLD: '0' }, /^TRAINING_THRESHOLD must be an integer from 1 to .* \(got "0"\)$/],
    [{ TRAINING_THRESHOLD: 'fifty' }, /^TRAINING_THRESHOLD must be an integer/],
    [{ TRAINING_THRESHOLD: '50abc' }, /^TRAINING_THRESHOLD must be an integer/],
    [{ TRAINING_THRESHOLD: '1.5' }, /^TRAINING_THRESHOLD must be an integer/],
    [{ DEBOUNCE_MS: '-1' }, /^DEBOUNCE_MS must be an integer/],
    [{ HTTP_PORT: '70000' }, /^HTTP_PORT must be an integer from 0 to 65535/],
    [{ DISPATCH_MODE: 'yolo' }, /^DISPATCH_MODE must be one of kubernetes, dry-run/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of/],
    [{ TRAINING_NAMESPACE: 'ML_Team' }, /^TRAINING_NAMESPACE must be a DNS-1123 label/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL must be a postgres/],
    // A finished Job (and its logs) must outlive a controller restart: 0 deleted every Job at once (issue #8).
    [{ JOB_TTL_SECONDS: '0' }, /^JOB_TTL_SECONDS must be an integer from 600 to /],
    [{ JOB_TTL_SECONDS: '599' }, /^JOB_TTL_SECONDS must be an integer from 600 to /],
    [{ DEBOUNCE_MS: '2000', DEBOUNCE_MAX_WAIT_MS: '1000' }, /^DEBOUNCE_MAX_WAIT_MS must be >= DEBOUNCE_MS/],
    [{ NODE_ENV: 'production' }, /^DATABASE_URL is required when NODE_ENV=production/],
    // Issue 15: a typo of production silently ran in development mode (embedded database, print mode).
    [{ NODE_ENV: 'Production' }, /^NODE_ENV must be one of production, development, test \(got "Production"\)$/],
    [{ NODE_ENV: 'prod' }, /^NODE_ENV must be one of production, development, test/],
    // Issue 15: a start above the cap was accepted; the message names both settings.
    [
      { RETRY_BACKOFF_SECONDS: '7200' },
      /^RETRY_BACKOFF_SECONDS must be <= RETRY_BACKOFF_MAX_SECONDS \(3600\) \(got "7200"\)$/,
    ],
    [
      { RETRY_BACKOFF_SECONDS: '20', RETRY_BACKOFF_MAX_SECONDS: '10' },
      /^RETRY_BACKOFF_SECONDS must be <= RETRY_BACKOFF_MAX_SECONDS \(10\)/,
    ],
    [{ LOG_FORMAT: 'loud' }, /^LOG_FORMAT must be one of auto, json, pretty \(got "loud"\)$/],
    [{ TRAINING_TRESHOLD: '5' }, null],
  ] as const) {
    const name = Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    if (expected === null) {
      it(`ignores unknown variables (${name})`, () => assert.equal(loadConfig(env).trainingThreshold, 50));
    } else {
      it(`rejects ${name} with one line naming the variable`, () => assert.match(fails(env), expected));
    }
  }

  it('never echoes a database password in its error', () => {
    const message = fails({ DATABASE_URL: 'http://user:s3cret@host/db' });
    assert.match(message, /^DATABASE_URL/);
    assert.ok(!message.includes('s3cret'), message);
  });

  it('treats an empty variable as unset', () => {
    assert.equal(loadConfig({ TRAINING_THRESHOLD: '' }).trainingThreshold, 50);
  });

  it('accepts each NODE_ENV exactly as written, and a back-off equal to its cap', () => {
    assert.equal(loadConfig({ NODE_ENV: 'test' }).production, false);
    assert.equal(loadConfig({ NODE_ENV: 'development' }).production, false);
    assert.equal(loadConfig({ NODE_ENV: 'production' }, { needsDatabase: false }).production, true);
    assert.equal(loadConfig({ RETRY_BACKOFF_SECONDS: '3600' }).retryBackoffSeconds, 3600);
  });

  it('LOG_FORMAT=auto: pretty only on a terminal outside production', () => {
    assert.equal(loadConfig({}).logFormat, 'json', 'no terminal (a pipe, a test runner)');
    assert.equal(loadConfig({}, { stdoutIsTty: true }).logFormat, 'pretty', 'npm start in a terminal');
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db' };
    assert.equal(loadConfig(production, { stdoutIsTty: true }).logFormat, 'json');
    assert.equal(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat, 'pretty');
    assert.equal(loadConfig({ LOG_FORMAT: 'json' }, { stdoutIsTty: true }).logFormat, 'json');
  });
});

describe('DATABASE_URL_FILE and LISTEN_DATABASE_URL_FILE (issue 23)', () => {
  const files: Record<string, string> = {
    '/run/secrets/db': 'postgres://tc:s3cret@db:5432/training\n',
    '/run/secrets/listen': 'postgres://tc:s3cret@db-direct:5432/training',
    '/run/secrets/garbage': 'mysql://tc:s3cret@db/x',
  };
  const readFile = (path: string): string => {
    const text = files[path];
    if (text === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return text;
  };
  const load = (env: Record<string, string>) => loadConfig(env, { readFile });

  it('reads the URL from the file (trailing newline dropped), and LISTEN_DATABASE_URL falls back to it', () => {
    const c = load({ DATABASE_URL_FILE: '/run/secrets/db' });
    assert.equal(c.databaseUrl, 'postgres://tc:s3cret@db:5432/training');
    assert.equal(c.databaseUrlFile, '/run/secrets/db');
    assert.deepEqual([c.listenDatabaseUrl, c.listenDatabaseUrlFile], [c.databaseUrl, '/run/secrets/db']);
    const both = load({ DATABASE_URL_FILE: '/run/secrets/db', LISTEN_DATABASE_URL_FILE: '/run/secrets/listen' });
    assert.deepEqual(
      [both.listenDatabaseUrl, both.listenDatabaseUrlFile],
      ['postgres://tc:s3cret@db-direct:5432/training', '/run/secrets/listen'],
    );
    const mixed = load({ DATABASE_URL_FILE: '/run/secrets/db', LISTEN_DATABASE_URL: 'postgres://x@direct/db' });
    assert.equal(mixed.listenDatabaseUrlFile, '', 'a LISTEN URL from the variable has no file to re-read');
  });

  for (const [env, message] of [
    [
      { DATABASE_URL: 'postgres://a@b/c', DATABASE_URL_FILE: '/run/secrets/db' },
      'set DATABASE_URL or DATABASE_URL_FILE, not both',
    ],
    [
      {
        LISTEN_DATABASE_URL: 'postgres://a@b/c',
        LISTEN_DATABASE_URL_FILE: '/run/secrets/listen',
        DATABASE_URL: 'postgres://a@b/c',
      },
      'set LISTEN_DATABASE_URL or LISTEN_DATABASE_URL_FILE, not both',
    ],
    [{ DATABASE_URL_FILE: '/run/secrets/none' }, 'DATABASE_URL_FILE /run/secrets/none cannot be read (ENOENT)'],
    [
      { DATABASE_URL_FILE: '/run/secrets/garbage' },
      'DATABASE_URL_FILE /run/secrets/garbage must hold a postgres:// or postgresql:// URL',
    ],
  ] as const)
    it(`refuses in one line, never echoing a secret: ${message}`, () => {
      assert.throws(
        () => load(env),
        (err: Error) => err instanceof ConfigError && err.message === message && !err.message.includes('s3cret'),
      );
    });
});

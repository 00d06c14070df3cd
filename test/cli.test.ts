// The CLI as operators run it: exit codes, one-line errors, signals, migrate, status, render-job, dry-run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { load } from 'js-yaml';
import pg from 'pg';
import type { V1Job } from '@kubernetes/client-node';
import { LISTENING } from '../src/main.js';
import { readMigrations } from '../src/db/migrate.js';
import { packageRoot } from '../src/core/paths.js';
import { cliPath, runCli, runCliProcess, spawnCli } from './support/child.js';
import { freshDatabase, invariantViolations, verifyNew, type TestDb } from './support/db.js';
import { eventually, startController, useInfra, type Running } from './support/harness.js';
import { startOwnPostgres } from './support/ownPostgres.js';
import { tripwire, type Tripwire } from './support/tripwire.js';

const cli = runCli;

describe('startup errors', () => {
  // A database address that counts connections: these commands must fail (or answer) before any.
  let nowhere: Tripwire;
  before(async () => {
    nowhere = await tripwire();
  });
  after(() => nowhere.close());

  it('a bad setting: one line naming it, exit 2, before any connection', async () => {
    const r = await cli(['run'], { TRAINING_THRESHOLD: 'many', DATABASE_URL: nowhere.url('u:hunter2') });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'training-controller: TRAINING_THRESHOLD must be an integer from 1 to 1000000000 (got "many")\n',
    );
    assert.equal(nowhere.connections(), 0, 'no connection attempt to the database');
  });

  it('production without DATABASE_URL is an error, not an embedded database', async () => {
    const r = await cli(['run'], { NODE_ENV: 'production' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^training-controller: DATABASE_URL is required when NODE_ENV=production/);
  });

  it('production without any Kubernetes configuration is an error, not print mode', async () => {
    const db = await freshDatabase();
    try {
      const r = await cli(['run'], { NODE_ENV: 'production', DATABASE_URL: db.url, HTTP_PORT: '0' });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^training-controller: no Kubernetes configuration .* and NODE_ENV=production\n$/);
    } finally {
      await db.drop();
    }
  });

  it('a database without the migrations: exit 1 saying what is missing and what to run', async () => {
    const db = await freshDatabase(undefined, { migrate: false });
    try {
      const r = await cli(['run'], { DATABASE_URL: db.url, HTTP_PORT: '0' });
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /is not migrated for ANNOTATIONS_SCHEMA=public \(missing "public".annotations, "public".training_runs, .*\): run `training-controller migrate`/,
      );
    } finally {
      await db.drop();
    }
  });

  it('an invalid Job template: exit 2 (bad configuration) naming the file and the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tpl-'));
    await writeFile(
      join(dir, 'job.yaml'),
      'spec:\n  template:\n    spec:\n      restartPolicy: Always\n      containers: [{ name: train, image: x }]\n',
    );
    const r = await cli(['run'], {
      JOB_TEMPLATE_FILE: join(dir, 'job.yaml'),
      DATABASE_URL: 'postgres://u:p@127.0.0.1:1/x',
    });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /JOB_TEMPLATE_FILE .*job\.yaml: spec\.template\.spec\.restartPolicy: must be Never or OnFailure/,
    );
  });

  // Issue 10, item 3: a containers map ended in a TypeError that named neither the file nor the field.
  it('render-job with a template of the wrong shape: one line naming the file and the field path, exit 2', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'tpl-')), 'job.yaml');
    await writeFile(
      file,
      'spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        train: { image: registry.example.com/train:1 }\n',
    );
    const r = await cli(['render-job'], { JOB_TEMPLATE_FILE: file });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `training-controller: JOB_TEMPLATE_FILE ${file}: spec.template.spec.containers: must be an array (got an object)\n`,
    );
    assert.equal(r.stdout, '');
  });

  it('run with spec.suspend in the template: exit 2 before any connection', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'tpl-')), 'job.yaml');
    await writeFile(
      file,
      'spec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{ name: train, image: x }]\n',
    );
    const r = await cli(['run'], { JOB_TEMPLATE_FILE: file, DATABASE_URL: nowhere.url() });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^training-controller: JOB_TEMPLATE_FILE .*job\.yaml: spec\.suspend: must not be set \(a suspended Job never finishes/,
    );
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    assert.equal(nowhere.connections(), 0, 'no connection attempt to the database');
  });

  it("an unknown command: usage, exit 2 (as a process: the exit code is the process's own)", async () => {
    const r = await runCliProcess(['dance'], {});
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "dance"[\s\S]*usage: training-controller/);
  });

  // Issue 10: in the image (NODE_ENV=production) these demanded a DATABASE_URL they never use.
  it('production: an unknown command gets the usage, not a DATABASE_URL error', async () => {
    const r = await cli(['dance'], { NODE_ENV: 'production' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^training-controller: unknown command "dance"\nusage: training-controller/);
    assert.doesNotMatch(r.stderr, /DATABASE_URL/);
  });

  it('production: render-job needs no DATABASE_URL (it never connects)', async () => {
    const r = await cli(['render-job'], { NODE_ENV: 'production' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((load(r.stdout) as V1Job).kind, 'Job');
  });

  // Issue 10: a kubeconfig missing on the host made Docker create a directory at the mounted path, and the
  // controller crash-looped on `EISDIR: illegal operation on a directory, read`, naming no file.
  describe('a KUBECONFIG that is no kubeconfig file: one line naming the file and what to do, exit 2', () => {
    let dir = '';
    before(async () => (dir = await mkdtemp(join(tmpdir(), 'kubeconfig-'))));

    it('a directory, where the controller runs (production, after the database checks)', async () => {
      const db = await freshDatabase();
      try {
        const kubeconfig = join(dir, 'as-docker-left-it');
        await mkdir(kubeconfig);
        const r = await cli(['run'], {
          NODE_ENV: 'production',
          DATABASE_URL: db.url,
          KUBECONFIG: kubeconfig,
          HTTP_PORT: '0',
        });
        assert.equal(r.code, 2);
        assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
        assert.match(
          r.stderr,
          new RegExp(
            `^training-controller: KUBECONFIG ${kubeconfig} is a directory, not a kubeconfig file .*KUBECONFIG_HOST=`,
          ),
        );
      } finally {
        await db.drop();
      }
    });

    it('a file that does not exist', async () => {
      const r = await cli(['render-job'], { KUBECONFIG: join(dir, 'missing', 'config') });
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `training-controller: KUBECONFIG ${join(dir, 'missing', 'config')} does not exist: point KUBECONFIG at a kubeconfig file, or unset it to use ~/.kube/config or the in-cluster service account\n`,
      );
    });

    it('~/.kube/config a directory, KUBECONFIG unset', async () => {
      const home = join(dir, 'home');
      await mkdir(join(home, '.kube', 'config'), { recursive: true });
      const r = await cli(['render-job'], { HOME: home });
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        new RegExp(`^training-controller: ${join(home, '.kube', 'config')} is a directory, not a kubeconfig file`),
      );
    });

    it('not a kubeconfig at all', async () => {
      const file = join(dir, 'notes.txt');
      await writeFile(file, '- just\n- a list\n');
      const r = await cli(['render-job'], { KUBECONFIG: file });
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`^training-controller: KUBECONFIG ${file}: .+\n$`));
    });
  });
});

// Issue 15: `run --help` started the service, `--version` was an unknown command, extra arguments were ignored
// with exit 0, `NODE_ENV=Production` ran in development mode, and a back-off above its cap was accepted.
describe('the command line takes only what it knows', () => {
  // A database address that counts connections: these commands must fail (or answer) before any.
  let nowhere: Tripwire;
  before(async () => {
    nowhere = await tripwire();
  });
  after(() => nowhere.close());

  const oneLine = (r: { stderr: string }) => assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);

  it('--version, -V: the package version, exit 0', async () => {
    const { version } = JSON.parse(await readFile(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    // --version as a process: what the installed bin prints (cli.ts binds the command line to the process).
    for (const [flag, run] of [
      ['--version', runCliProcess],
      ['-V', cli],
    ] as const) {
      const r = await run([flag], {});
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `training-controller ${version}\n`);
    }
  });

  it('a reader that is gone (`| head -1`) ends the CLI quietly, not with a stack trace', async () => {
    // Found by review (issue 20): an unhandled EPIPE on stdout printed a stack trace and exited 1.
    const proc = spawn(process.execPath, [cliPath(), 'render-job'], {
      env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout.destroy(); // the reader gone before the CLI has loaded, so before its answer is written
    let stderr = '';
    proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => proc.on('exit', resolve));
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });

  it('--help and -h, alone or after a command: the usage, exit 0, nothing started', async () => {
    for (const args of [['--help'], ['-h'], ['run', '--help'], ['status', '-h'], ['baseline', '--help']]) {
      // A DATABASE_URL nothing answers at: a started service would fail or hang, not print the usage.
      const r = await cli(args, { DATABASE_URL: nowhere.url(), NODE_ENV: 'production' });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^usage: training-controller/, args.join(' '));
      assert.equal(r.stderr, ''); // a service started against that address would have logged or failed by now
    }
    assert.equal(nowhere.connections(), 0, 'nothing connected to the database');
  });

  for (const [args, expected] of [
    [['status', '--bogus'], 'status: unknown argument "--bogus" (usage: training-controller status [--json])'],
    [['render-job', 'extra'], 'render-job: unknown argument "extra" (usage: training-controller render-job)'],
    [['run', '--port', '8080'], 'run: unknown argument "--port" (usage: training-controller run)'],
    [
      ['baseline', '--before'],
      'baseline: --before needs a value (usage: training-controller baseline [--before TIMESTAMP] [--yes])',
    ],
  ] as const) {
    it(`${args.join(' ')}: one line, exit 2, before the configuration`, async () => {
      const r = await cli([...args], { TRAINING_THRESHOLD: 'many' });
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `training-controller: ${expected}\n`);
      assert.equal(r.stdout, '');
    });
  }

  it('NODE_ENV=Production (a typo): one line naming NODE_ENV, exit 2', async () => {
    const r = await cli(['render-job'], { NODE_ENV: 'Production' });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'training-controller: NODE_ENV must be one of production, development, test (got "Production")\n',
    );
  });

  it('RETRY_BACKOFF_SECONDS above RETRY_BACKOFF_MAX_SECONDS: one line naming both, exit 2', async () => {
    const r = await cli(['run'], { RETRY_BACKOFF_SECONDS: '7200', DATABASE_URL: nowhere.url() });
    assert.equal(r.code, 2);
    oneLine(r);
    assert.match(r.stderr, /RETRY_BACKOFF_SECONDS must be <= RETRY_BACKOFF_MAX_SECONDS \(3600\)/);
  });

  it('a bad LOG_FORMAT: the one-line configuration error', async () => {
    const r = await cli(['render-job'], { LOG_FORMAT: 'colour' });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'training-controller: LOG_FORMAT must be one of auto, json, pretty (got "colour")\n');
  });
});

// Issue 15: a KUBECONFIG or JOB_TEMPLATE_FILE that cannot work was found only after the embedded PostgreSQL had
// been initialised and started (seconds, and a data directory), against the README's "before anything starts".
describe('run: bad configuration is refused before the embedded PostgreSQL starts', () => {
  let dir = '';
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'tc-order-'))));

  for (const [name, env, expected] of [
    [
      'KUBECONFIG=/nonexistent',
      { KUBECONFIG: '/nonexistent' },
      /^training-controller: KUBECONFIG \/nonexistent does not exist/,
    ],
    [
      'a JOB_TEMPLATE_FILE that does not exist',
      { JOB_TEMPLATE_FILE: '/nonexistent/job.yaml' },
      /^training-controller: JOB_TEMPLATE_FILE \/nonexistent\/job\.yaml: ENOENT/,
    ],
  ] as const) {
    it(`${name}: exit 2, one line, no data directory made`, async () => {
      const data = join(dir, name.replace(/\W+/g, '-'));
      const r = await cli(['run'], { ...env, EMBEDDED_DATA_DIR: data, EMBEDDED_PORT: '1', HTTP_PORT: '0' });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.equal(existsSync(data), false, 'the embedded PostgreSQL was not initialised');
      assert.doesNotMatch(r.stdout, /embedded PostgreSQL/);
    });
  }
});

// Issue 10, item 2: pg honours a password in the query string, and echoes an sslkey it cannot open.
describe('secrets in DATABASE_URL', () => {
  it('status against a closed port names the URL with its query password masked', async () => {
    const r = await cli(['status', '--json'], {
      DATABASE_URL: 'postgres://app@127.0.0.1:1/x?password=hunter2&sslmode=disable',
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'training-controller: status postgres://app@127.0.0.1:1/x?password=***&sslmode=disable: connect ECONNREFUSED 127.0.0.1:1\n',
    );
    assert.ok(!(r.stdout + r.stderr).includes('hunter2'));
  });

  it('run with a key pasted in place of the sslkey path fails without printing the key', async () => {
    const key = '-----BEGIN PRIVATE KEY-----hunter2';
    const r = await cli(['run'], {
      DATABASE_URL: `postgres://app@127.0.0.1:1/x?sslmode=require&sslkey=${encodeURIComponent(key)}`,
      HTTP_PORT: '0',
      LOG_LEVEL: 'debug',
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^training-controller: ENOENT: no such file or directory, open '\*\*\*'\n$/);
    assert.ok(!(r.stdout + r.stderr).includes('hunter2'), r.stdout + r.stderr);
  });

  // The URL is parsed into parts for DATABASE_URL_FILE's password callback (db/credentials.ts), which reads the
  // sslkey file at once: status, migrate and uninstall printed the key until the parse moved into their catch.
  for (const command of ['status', 'migrate', 'uninstall'])
    it(`${command} with a key pasted in place of the sslkey path fails without printing the key`, async () => {
      const key = '-----BEGIN PRIVATE KEY-----hunter2';
      const r = await cli([command], {
        DATABASE_URL: `postgres://app@127.0.0.1:1/x?sslmode=require&sslkey=${encodeURIComponent(key)}`,
      });
      assert.equal(r.code, 1);
      assert.ok(!(r.stdout + r.stderr).includes('hunter2'), r.stdout + r.stderr);
    });
});

describe('migrate', () => {
  let db: TestDb;
  before(async () => (db = await freshDatabase(undefined, { migrate: false })));
  after(async () => db?.drop());

  it('applies every migration once, even from two processes at the same time', async () => {
    // Processes, as two migrate Jobs (or an init container and an operator) are.
    const [a, b] = await Promise.all([
      runCliProcess(['migrate'], { DATABASE_URL: db.url }),
      runCliProcess(['migrate'], { DATABASE_URL: db.url }),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const { rows } = await db.pool.query('SELECT name FROM training_controller_migrations ORDER BY name');
    const files = (await readMigrations()).map((m) => m.name);
    assert.ok(files.length >= 5 && files[0] === '001_annotations.sql', `migrations/ lists ${files.join(', ')}`);
    assert.deepEqual(
      rows.map((r) => r.name),
      files,
    );
    const again = await cli(['migrate'], { DATABASE_URL: db.url, LOG_LEVEL: 'info' });
    assert.match(again.stdout, /Database is up to date/);
  });

  // Issue 15: during `npm start` a person reads the log; LOG_FORMAT=pretty gives pino-pretty's lines.
  it('LOG_FORMAT=pretty: readable lines, not JSON, with the message and each field on its own line', async () => {
    const r = await cli(['migrate'], { DATABASE_URL: db.url, LOG_FORMAT: 'pretty' });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.ok(lines.length >= 2, r.stdout);
    assert.ok(!lines.some((l) => l.startsWith('{')), `no JSON record: ${r.stdout}`);
    assert.match(r.stdout, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: (Database is up to date|Applied \d+ migration\(s\))$/m);
    assert.match(r.stdout, /^ {4}database: "postgres:\/\/.*"$/m);
    const json = await cli(['migrate'], { DATABASE_URL: db.url });
    assert.equal(
      JSON.parse(json.stdout.trim().split('\n').at(-1)!).msg,
      'Database is up to date',
      'json by default off a terminal',
    );
  });

  it('never prints the database password', async () => {
    const r = await cli(['migrate'], {
      DATABASE_URL: db.url.replace('postgres@', 'postgres:topsecret@'),
      LOG_LEVEL: 'debug',
    });
    assert.ok(!(r.stdout + r.stderr).includes('topsecret'));
  });
});

describe('status, render-job and dry-run', () => {
  const s = useInfra();

  it('render-job prints the Job it would submit, as YAML', async () => {
    const r = await cli(['render-job'], { KUBECONFIG: s.kube.kubeconfigPath, TRAINING_IMAGE: 'busybox:1.36' });
    assert.equal(r.code, 0, r.stderr);
    const job = load(r.stdout) as V1Job;
    assert.equal(job.kind, 'Job');
    assert.match(job.metadata?.name ?? '', /^sentinel-training-\d{8}-\d{6}$/);
    assert.equal(job.metadata?.labels?.app, 'sentinel-training');
    assert.equal(job.spec?.template.spec?.containers[0]?.image, 'busybox:1.36');
  });

  it('DISPATCH_MODE=dry-run: the API server validates the Job, nothing is created or claimed', async () => {
    let c: Running | null = null;
    try {
      c = await startController(s.db.url, s.kube, { DISPATCH_MODE: 'dry-run' });
      await verifyNew(s.db.pool, 50);
      await c.logs.waitForMsg(/^Would trigger training with 50 new images \(DISPATCH_MODE=dry-run/);
      assert.equal(s.kube.dryRuns.length, 1);
      assert.equal(s.kube.jobs.size, 0);
      const claimed = await s.db.pool.query(
        'SELECT count(*)::int AS n FROM annotations WHERE training_run_id IS NOT NULL OR used_for_training',
      );
      assert.equal(claimed.rows[0].n, 0);
      assert.equal((await s.db.pool.query('SELECT 1 FROM training_runs')).rowCount, 0);
    } finally {
      await c?.stop();
    }
  });

  it('status shows pending, threshold, the open run and recent runs, as a table or JSON', async () => {
    const c = await startController(s.db.url, s.kube);
    try {
      await eventually(() => s.kube.creates.length === 1, 'the Job');
      await eventually(
        async () => (await s.db.pool.query("SELECT 1 FROM training_runs WHERE state = 'running'")).rowCount === 1,
        'running',
      );
    } finally {
      await c.stop();
    }
    const json = await cli(['status', '--json'], { DATABASE_URL: s.db.url });
    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout);
    assert.equal(status.pending, 0);
    assert.equal(status.threshold, 50);
    assert.equal(status.openRun.state, 'running');
    assert.equal(status.openRun.annotationCount, 50);
    assert.equal(status.recentRuns.length, 1);
    const table = await cli(['status'], { DATABASE_URL: s.db.url });
    assert.match(table.stdout, /^pending annotations: 0 \(threshold 50\)$/m);
    assert.match(table.stdout, /^RUN\s+JOB\s+STATE\s+ANNOTATIONS/m);
    assert.match(table.stdout, /sentinel-training-\d{8}-\d{6}\s+running\s+50/);
  });
});

// Issue 15: status cut the reason at 60 characters, and the 403 the troubleshooting section says to read in
// status was cut with it. The last failure's reason is shown whole; the table's column still fits a terminal.
describe('status shows the last failure whole', () => {
  let db: TestDb;
  before(async () => (db = await freshDatabase()));
  after(async () => db?.drop());

  it('the whole reason of the last failed run, in the table and as JSON', async () => {
    const reason =
      'jobs.batch is forbidden: User "system:serviceaccount:ml-training:training-controller" cannot create resource "jobs" in API group "batch" in the namespace "ml-training"';
    await db.pool.query(
      `INSERT INTO training_runs (job_name, namespace, state, annotation_count, reason, finished_at)
       VALUES ('sentinel-training-20260101-000000', 'ml-training', 'failed', 50, $1, now())`,
      [reason],
    );
    const table = await cli(['status'], { DATABASE_URL: db.url });
    assert.equal(table.code, 0, table.stderr);
    assert.ok(table.stdout.includes(`failed at `), table.stdout);
    assert.match(table.stdout, /^last failure: +#\d+ sentinel-training-20260101-000000 failed at \S+: (.*)$/m);
    assert.equal(/^last failure: .*?Z: (.*)$/m.exec(table.stdout)?.[1], reason);
    const json = await cli(['status', '--json'], { DATABASE_URL: db.url });
    assert.equal(JSON.parse(json.stdout).lastFailure.reason, reason);
  });
});

// Found by review of the in-process CLI (issue 20): status reads side by side, and once a failure no longer
// exited the process at once, closing the pool waited for a read still blocked on a lock (30 s, its statement
// timeout) before the one-line answer.
describe('a command that fails answers at once', () => {
  let db: TestDb;
  before(async () => (db = await freshDatabase()));
  after(async () => db?.drop());

  it('status: one line and exit 1 while another of its reads still waits on a lock', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE training_runs');
      // Its read of training_runs waits on the lock and holds its one connection; a read queued behind it gives
      // up after the pool's 10 s connection timeout. Waiting for the blocked read too, the answer came after
      // 30 s (its statement timeout): runCli gives up after 20.
      const r = await runCli(['status'], { DATABASE_URL: db.url }, 20_000);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^training-controller: status \S+: timeout exceeded when trying to connect\n$/);
      const waiting = await db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      );
      assert.equal(waiting.rowCount, 1, 'answered while its read of training_runs still waits');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  });
});

// Issue 10, item 2: print and dry-run modes logged the whole Job, and an S3 secret key from the template's env
// appeared in the log. They log names and images only; render-job still prints everything (asked for).
describe('the Job in print and dry-run logs', () => {
  const s = useInfra();
  const SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';
  let templateFile = '';
  before(async () => {
    templateFile = join(await mkdtemp(join(tmpdir(), 'tpl-')), 'job.yaml');
    await writeFile(
      templateFile,
      `apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers:
        - { name: fetch-data, image: registry.example.com/fetch:2.0, env: [{ name: AWS_SECRET_ACCESS_KEY, value: ${SECRET} }] }
      containers:
        - name: train
          image: registry.example.com/sentinel/train:1.4.2
          env: [{ name: AWS_SECRET_ACCESS_KEY, value: ${SECRET} }]
`,
    );
  });
  const expectedSummary = {
    containers: [
      {
        name: 'train',
        image: 'registry.example.com/sentinel/train:1.4.2',
        env: ['AWS_SECRET_ACCESS_KEY', 'TRAINING_RUN_ID', 'TRAINING_ANNOTATION_COUNT'],
      },
    ],
    initContainers: [
      {
        name: 'fetch-data',
        image: 'registry.example.com/fetch:2.0',
        env: ['AWS_SECRET_ACCESS_KEY', 'TRAINING_RUN_ID', 'TRAINING_ANNOTATION_COUNT'],
      },
    ],
  };

  it('dry-run logs the container names and images, and no env value, while the API server gets the whole Job', async () => {
    const c = await startController(s.db.url, s.kube, { DISPATCH_MODE: 'dry-run', JOB_TEMPLATE_FILE: templateFile });
    try {
      await verifyNew(s.db.pool, 50);
      const line = await c.logs.waitForMsg(/^Would trigger training with \d+ new images \(DISPATCH_MODE=dry-run/);
      assert.deepEqual(line.job, { name: s.kube.dryRuns[0]?.metadata?.name, namespace: 'default', ...expectedSummary });
      assert.equal(
        s.kube.dryRuns[0]?.spec?.template.spec?.containers[0]?.env?.[0]?.value,
        SECRET,
        'the Job itself keeps its env',
      );
      assert.ok(!c.logs.raw.join('\n').includes(SECRET));
    } finally {
      await c.stop();
    }
  });

  it('print mode (no cluster) logs the same summary on stdout, and no env value', async () => {
    await verifyNew(s.db.pool, 50);
    const child = spawnCli(['run'], { DATABASE_URL: s.db.url, HOME: '/nonexistent', JOB_TEMPLATE_FILE: templateFile });
    try {
      const line = await child.logs.waitForMsg(/^Would trigger training with \d+ new images \(no cluster configured/);
      assert.match(String((line.job as { name: unknown }).name), /^sentinel-training-\d{8}-\d{6}$/);
      assert.deepEqual(line.job, {
        name: (line.job as { name: unknown }).name,
        namespace: 'default',
        ...expectedSummary,
      });
      assert.ok(!(child.logs.raw.join('\n') + child.stderr.join('\n')).includes(SECRET));
    } finally {
      child.proc.kill('SIGTERM');
      await child.exited;
    }
  });

  it('render-job prints the whole Job, env values included: the operator asked for it', async () => {
    const r = await cli(['render-job'], { JOB_TEMPLATE_FILE: templateFile });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((load(r.stdout) as V1Job).spec?.template.spec?.containers[0]?.env?.[0]?.value, SECRET);
  });
});

describe('signals', () => {
  const s = useInfra();

  it('SIGTERM mid-dispatch exits 0 within 10 s with nothing half-claimed, and the next start finishes the run', async () => {
    s.kube.inject({ verb: 'create', delayMs: 20_000 }); // a create that would hang past any grace period
    const env = { DATABASE_URL: s.db.url, KUBECONFIG: s.kube.kubeconfigPath, KUBE_REQUEST_TIMEOUT_MS: '30000' };
    const child = spawnCli(['run'], env);
    await child.logs.waitForMsg(LISTENING);
    await verifyNew(s.db.pool, 50);
    await child.logs.waitForMsg('Triggering training with 50 new images');
    const t0 = Date.now();
    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 10_000, `exited after ${Date.now() - t0} ms`);
    assert.deepEqual(await invariantViolations(s.db.pool), []);
    assert.deepEqual((await s.db.pool.query('SELECT state, annotation_count FROM training_runs')).rows, [
      { state: 'submitting', annotation_count: 50 },
    ]);
    s.kube.clearFaults();
    const next = spawnCli(['run'], { ...env, KUBE_REQUEST_TIMEOUT_MS: '1000' });
    try {
      await eventually(
        async () => (await s.db.pool.query("SELECT 1 FROM training_runs WHERE state = 'running'")).rowCount === 1,
        'the run to be created by the next start',
        15_000,
      );
      assert.equal(s.kube.jobs.size, 1);
    } finally {
      next.proc.kill('SIGINT');
      assert.equal((await next.exited).code, 0);
    }
  });

  it('SIGTERM during a database outage still exits 0 within 10 s', async () => {
    const server = await startOwnPostgres();
    const own = await freshDatabase(server.url);
    try {
      const child = spawnCli(['run'], { DATABASE_URL: own.url, KUBECONFIG: s.kube.kubeconfigPath });
      await child.logs.waitForMsg(LISTENING);
      await own.pool.end();
      await server.stop();
      await child.logs.waitForMsg('LISTEN connection lost; reconnecting');
      await new Promise((r) => setTimeout(r, 1500)); // into the reconnect back-off
      const t0 = Date.now();
      child.proc.kill('SIGTERM');
      const { code } = await child.exited;
      assert.equal(code, 0);
      assert.ok(Date.now() - t0 < 10_000, `exited after ${Date.now() - t0} ms`);
    } finally {
      await server.destroy();
    }
  });

  it('a second signal exits at once', async () => {
    const child = spawnCli(['run'], { DATABASE_URL: s.db.url, KUBECONFIG: s.kube.kubeconfigPath });
    await child.logs.waitForMsg(LISTENING);
    child.proc.kill('SIGTERM');
    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    assert.ok(code === 130 || code === 0, `exit ${code}`);
  });
});

// The command table: what each command is called, what it takes, whether it connects to PostgreSQL, and
// what it does. cli.ts only dispatches; the usage text is generated from here, so it cannot drift.
// The service (run) and the Kubernetes side (render-job) are imported when their command runs: the client
// library alone costs ~0.65 s of CPU to load, which `status`, `pause` or `--help` never need (a CLI call took
// ~1.35 s of CPU; the test suite makes over a hundred).
import { POOLED_MIGRATE, transactionPooled } from '../db/pooler.js';
import { dump } from 'js-yaml';
import { BaselineRefused, describePlan, planBaseline, runBaseline } from './baseline.js';
import { CliExit, exitCode, fail, firstLine, type CommandContext, type FlagSpec } from './commandLine.js';
import { embeddedUrl, type Config } from '../core/config.js';
import { createPool, type Pool } from '../db/pool.js';
import { migrate } from '../db/migrate.js';
import { safeUrl, scrubSecrets } from '../core/redact.js';
import { formatStatus, readStatus } from './status.js';
import { runOperatorCommand, type OperatorCommand } from './operator.js';
import { tables } from '../db/tables.js';
import { instanceNamed, jobName } from '../core/instance.js';

export interface Command {
  /** What follows the command's name in the usage (`[--json]`). */
  args: string;
  /** One line, or several indented by the caller. */
  summary: string;
  /** Connects to PostgreSQL: only such a command needs DATABASE_URL in production. */
  database: boolean;
  flags: FlagSpec;
  run(ctx: CommandContext): Promise<void>;
}

/** DATABASE_URL, or the embedded server that `npm start` runs (the commands below never start one). */
function databaseUrl(config: Config): string {
  return config.databaseUrl || embeddedUrl(config.embeddedPort);
}

/**
 * One short-lived connection for a command; any failure is one line and exit 1, at once: the pool is closed
 * without waiting, since `status` reads side by side and one read still blocked on a lock would hold the
 * answer until its 30 s statement timeout (cli.ts exits the process on a failure anyway).
 */
async function withPool(ctx: CommandContext, command: string, fn: (pool: Pool) => Promise<void>): Promise<void> {
  const url = databaseUrl(ctx.config);
  let pool: Pool | null = null;
  try {
    // Inside the try: parsing the URL reads its sslkey file, whose error names the value (a key pasted in place
    // of its path), and only this catch masks it. migrate and uninstall build or drop an index CONCURRENTLY,
    // which waits for older transactions however long: no statement timeout for them.
    const long = command === 'migrate' || command === 'uninstall';
    pool = createPool(url, ctx.logger, { max: 1, queryTimeoutMs: long ? 0 : 30_000 }, ctx.config.databaseUrlFile);
    await fn(pool);
  } catch (err: unknown) {
    void pool?.end().catch(() => undefined);
    if (err instanceof CliExit) throw err; // the command's own answer, already one line
    fail(`${command} ${safeUrl(url)}: ${scrubSecrets(firstLine(err), url)}`, 1);
  }
  await pool.end();
}

function migrateCommand(ctx: CommandContext): Promise<void> {
  return withPool(ctx, 'migrate', async (pool) => {
    // Before any lock is taken: through a transaction pooler none would hold (db/pooler.ts).
    if (await transactionPooled(databaseUrl(ctx.config))) throw new Error(POOLED_MIGRATE);
    const applied = await migrate(pool, ctx.logger, tables(ctx.config.annotationsSchema));
    ctx.logger.info(
      { database: safeUrl(databaseUrl(ctx.config)), applied },
      applied.length ? `Applied ${applied.length} migration(s)` : 'Database is up to date',
    );
  });
}

function statusCommand(ctx: CommandContext): Promise<void> {
  return withPool(ctx, 'status', async (pool) => {
    const status = await readStatus(pool, ctx.config);
    ctx.out(ctx.flags['--json'] ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  });
}

async function renderJobCommand({ config, out }: CommandContext): Promise<void> {
  const [{ resolveTemplate }, { loadClusterConfig }, { buildJob }] = await Promise.all([
    import('../startup.js'),
    import('../kube/clusterConfig.js'),
    import('../kube/jobTemplate.js'),
  ]);
  try {
    const template = await resolveTemplate(config);
    const cluster = loadClusterConfig(config.kubeconfig, config.trainingNamespace, config.home);
    const namespace = cluster?.namespace ?? (config.trainingNamespace || 'default');
    const instance = instanceNamed(config.trainingName);
    const run = { name: jobName(instance, new Date()), namespace, runId: 0, annotationCount: 0 };
    const job = buildJob(template, run, instance);
    out(dump(job, { noRefs: true }));
  } catch (err: unknown) {
    fail(firstLine(err), exitCode(err));
  }
}

async function baselineCommand(ctx: CommandContext): Promise<void> {
  // An instant flag: parseArgs checked it has an offset and gives it in UTC (…Z), read the same in any TZ.
  const given = ctx.flags['--before'];
  const before = typeof given === 'string' ? new Date(given) : null;
  return withPool(ctx, 'baseline', async (pool) => {
    const deps = {
      pool,
      tables: tables(ctx.config.annotationsSchema),
      logger: ctx.logger,
      chunkRows: ctx.config.chunkRows,
    };
    let plan: Awaited<ReturnType<typeof planBaseline>>;
    try {
      plan = await planBaseline(deps, before);
    } catch (err: unknown) {
      if (err instanceof BaselineRefused) fail(err.message, 1);
      throw err;
    }
    if (!ctx.flags['--yes'] || (plan.count === 0 && !plan.resumes)) {
      const nothing = plan.count === 0 && !plan.resumes;
      // With --before, the cut-off as it was resolved (UTC) is in every answer: "nothing" is about that instant.
      const scope = before ? ` was verified before ${before.toISOString()}` : '';
      ctx.out(
        `${nothing ? `Nothing pending${scope}: no baseline needed.` : describePlan(plan, deps.tables.annotations)}\n`,
      );
      return;
    }
    let marked = plan.resumes?.annotationCount ?? 0;
    let shown = 0;
    const run = await runBaseline(deps, plan, (n) => {
      marked += n;
      // One progress line per ~10 %: a 500,000-row baseline takes ~250 chunks.
      if (plan.count > 0 && marked - shown >= plan.count / 10) {
        shown = marked;
        ctx.err(`baseline: ${marked} of ${plan.count} marked\n`);
      }
    });
    // A resumed baseline keeps the cut-off it was started with, which this --before need not be.
    const scope = before && !plan.resumes ? ` verified before ${before.toISOString()}` : '';
    ctx.out(
      `Baseline run #${run.id}: ${run.annotationCount} annotations${scope} marked used without training (${run.jobName}).\n`,
    );
  });
}

/** pause, resume, cancel, trigger (operator.ts): the state changes here, the running service carries it out. */
function operatorCommand(command: OperatorCommand): Command['run'] {
  return (ctx) =>
    withPool(ctx, command, async (pool) => {
      const reason = typeof ctx.flags['--reason'] === 'string' ? ctx.flags['--reason'].trim() || null : null;
      const outcome = await runOperatorCommand(pool, tables(ctx.config.annotationsSchema), command, reason);
      if (outcome.code !== 0) fail(outcome.text, outcome.code);
      ctx.out(`${outcome.text}\n`);
    });
}

const REASON: FlagSpec = { '--reason': 'value' };

export const COMMANDS: Readonly<Record<string, Command>> = {
  run: {
    args: '',
    summary: 'the service (default for the container image)',
    database: true,
    flags: {},
    run: async ({ config, logger }) => (await import('./run.js')).runService(config, logger),
  },
  migrate: {
    args: '',
    summary: 'apply the missing migrations (safe to run from several processes)',
    database: true,
    flags: {},
    run: migrateCommand,
  },
  status: {
    args: '[--json]',
    summary: 'pending annotations, threshold, the open run, back-off, the last 10 runs',
    database: true,
    flags: { '--json': 'switch' },
    run: statusCommand,
  },
  'render-job': {
    args: '',
    summary: 'print the Job manifest the controller would submit, as YAML',
    database: false,
    flags: {},
    run: renderJobCommand,
  },
  baseline: {
    args: '[--before TIMESTAMP] [--yes]',
    summary:
      'first deployment: mark the annotations pending now (or verified before TIMESTAMP, ISO 8601\nwith an offset: 2026-01-02T00:00:00Z) as used without training them; without --yes,\nonly say how many',
    database: true,
    flags: { '--before': 'instant', '--yes': 'switch' },
    run: baselineCommand,
  },
  uninstall: {
    args: '[--yes] [--keep-history] [--drop-columns]',
    summary:
      'remove what the migrations added (the trigger first); without --yes, only list it. Keeps the\nrun history with --keep-history; the columns of annotations go only with --drop-columns',
    database: true,
    flags: { '--yes': 'switch', '--keep-history': 'switch', '--drop-columns': 'switch' },
    run: (ctx) =>
      withPool(ctx, 'uninstall', async (pool) => (await import('./uninstall.js')).uninstallCommand(ctx, pool)),
  },
  pause: {
    args: '[--reason TEXT]',
    summary: 'no new run starts until resume (an open run continues)',
    database: true,
    flags: REASON,
    run: operatorCommand('pause'),
  },
  resume: { args: '', summary: 'runs may start again', database: true, flags: {}, run: operatorCommand('resume') },
  cancel: {
    args: '[--reason TEXT]',
    summary: 'end the open run: its annotations pending again, its Job deleted by the service',
    database: true,
    flags: REASON,
    run: operatorCommand('cancel'),
  },
  trigger: {
    args: '[--reason TEXT]',
    summary: 'start a run now with whatever is pending (below the threshold, through a back-off)',
    database: true,
    flags: REASON,
    run: operatorCommand('trigger'),
  },
};

/** `name args` and its summary, in the usage's two columns (a long left side gets a line of its own). */
function usageLine(name: string, c: Command): string {
  const left = `  ${name}${c.args ? ` ${c.args}` : ''}`;
  const [first = '', ...rest] = c.summary.split('\n').map((l) => `${' '.repeat(22)}${l}`);
  const head = left.length < 22 ? `${left.padEnd(22)}${first.trimStart()}` : `${left}\n${first}`;
  return [head, ...rest].join('\n');
}

export function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => usageLine(name, c));
  return `usage: training-controller <command> [--help]\n${lines.join('\n')}\n  --version           print the version`;
}

/** `training-controller status [--json]` */
export function synopsis(name: string): string {
  const c = COMMANDS[name]!;
  return `training-controller ${name}${c.args ? ` ${c.args}` : ''}`;
}

export function commandUsage(name: string): string {
  return `usage: ${synopsis(name)}\n${COMMANDS[name]!.summary.replace(/^/gm, '  ')}`;
}

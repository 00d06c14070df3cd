#!/usr/bin/env node
// training-controller run | migrate | status [--json] | render-job | baseline [--before TIMESTAMP] [--yes]
//   | pause [--reason TEXT] | resume | cancel [--reason TEXT] | trigger [--reason TEXT]
// Exit codes: 0 done, 1 startup or runtime failure, 2 bad configuration or usage, 130 second signal.
import { dump } from 'js-yaml';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createPool, type Pool } from './db.js';
import { embeddedUrl } from './embedded.js';
import { buildJob, jobName, TemplateError } from './jobTemplate.js';
import { loadClusterConfig } from './kubeJobs.js';
import { createLogger, type Logger } from './logger.js';
import { resolveTemplate, startService, StartupError } from './main.js';
import { migrate } from './migrate.js';
import { safeUrl, scrubSecrets } from './redact.js';
import { tables } from './tables.js';
import { formatStatus, readStatus } from './status.js';
import { reasonArg, runOperatorCommand, UsageError, type OperatorCommand } from './operator.js';
import { BaselineRefused, describePlan, planBaseline, runBaseline } from './baseline.js';

const USAGE = `usage: training-controller <command>
  run                 the service (default for the container image)
  migrate             apply the missing migrations (safe to run from several processes)
  status [--json]     pending annotations, threshold, the open run, back-off, the last 10 runs
  render-job          print the Job manifest the controller would submit, as YAML
  baseline [--before TIMESTAMP] [--yes]
                      first deployment: mark the annotations pending now (or verified before TIMESTAMP) as
                      used without training them; without --yes, only say how many
  pause [--reason TEXT]    no new run starts until resume (an open run continues)
  resume                   runs may start again
  cancel [--reason TEXT]   end the open run: its Job is deleted, its annotations pending again
  trigger [--reason TEXT]  start a run now with whatever is pending (below the threshold, through a back-off)`;

function fail(message: string, code: number): never {
  process.stderr.write(`training-controller: ${message}\n`);
  process.exit(code);
}

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** A setting found bad only once it is used (a KUBECONFIG that names a directory) is still bad configuration. */
/** Bad configuration (a setting, the kubeconfig, the Job template) exits 2, so a restart loop is told from an outage. */
function exitCode(err: unknown): number {
  return err instanceof ConfigError || err instanceof TemplateError ? 2 : 1;
}

// Which commands connect to PostgreSQL: only those need DATABASE_URL in production.
const COMMANDS: Record<string, { database: boolean }> = {
  run: { database: true },
  migrate: { database: true },
  status: { database: true },
  'render-job': { database: false },
  baseline: { database: true },
  pause: { database: true },
  resume: { database: true },
  cancel: { database: true },
  trigger: { database: true },
};

/** DATABASE_URL, or the embedded server that `npm start` runs (the commands below never start one). */
function databaseUrl(config: Config): string {
  return config.databaseUrl || embeddedUrl(config.embeddedPort);
}

/** One short-lived connection for a command; any failure is one line and exit 1. */
async function withPool(
  config: Config,
  logger: Logger,
  command: string,
  fn: (pool: Pool) => Promise<void>,
): Promise<void> {
  const url = databaseUrl(config);
  // migrate may build an index on a large table: no statement timeout for it.
  const pool = createPool(url, logger, { max: 1, queryTimeoutMs: command === 'migrate' ? 0 : 30_000 });
  try {
    await fn(pool);
  } catch (err: unknown) {
    fail(`${command} ${safeUrl(url)}: ${scrubSecrets(message(err), url)}`, 1);
  } finally {
    await pool.end();
  }
}

async function operatorCommand(config: Config, logger: Logger, command: OperatorCommand, args: string[]) {
  let reason: string | null;
  try {
    reason = reasonArg(command, args);
  } catch (err: unknown) {
    if (err instanceof UsageError) fail(err.message, 2);
    throw err;
  }
  return withPool(config, logger, command, async (pool) => {
    const outcome = await runOperatorCommand(pool, tables(config.annotationsSchema), command, reason);
    if (outcome.code !== 0) fail(outcome.text, outcome.code);
    process.stdout.write(`${outcome.text}\n`);
  });
}

async function run(config: Config, logger: Logger): Promise<void> {
  let service: Awaited<ReturnType<typeof startService>>;
  try {
    service = await startService(config, logger);
  } catch (err: unknown) {
    // pg may echo a part of the connection string (an sslkey it cannot open) in a connection error; our own
    // errors print URLs through safeUrl already.
    const ours = err instanceof StartupError || err instanceof TemplateError;
    const text = ours ? message(err) : scrubSecrets(message(err), config.databaseUrl, config.listenDatabaseUrl);
    logger.fatal({ err: text }, 'Startup failed');
    fail(text, exitCode(err));
  }
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'Second signal: exiting at once');
      process.exit(130);
    }
    logger.info({ signal }, 'Shutting down');
    // Unref'd: a clean shutdown exits on its own; a hung one is killed after SHUTDOWN_TIMEOUT_MS.
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'Shutdown did not finish in time: exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs).unref();
    service.stop().then(
      () => {
        logger.info('Stopped');
        // Everything of ours is closed; a library timer still pending (a reconnect back-off) must not hold
        // the exit until the watchdog turns a clean shutdown into exit code 1.
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: message(err) }, 'Shutdown failed');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

function baselineArgs(args: string[]): { yes: boolean; before: Date | null } {
  let yes = false;
  let before: Date | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--yes') yes = true;
    else if (a === '--before' && args[i + 1] !== undefined) {
      const text = args[++i] as string;
      before = new Date(text);
      if (Number.isNaN(before.getTime()))
        fail(`baseline --before must be a timestamp such as 2026-11-01T00:00:00Z (got "${text}")`, 2);
    } else fail(`baseline: unknown argument "${a}"\n${USAGE}`, 2);
  }
  return { yes, before };
}

async function main(argv: string[]): Promise<void> {
  const [command = 'run', ...args] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // Before the configuration: a typo must get the usage, not a complaint about a setting it would never use.
  const spec = COMMANDS[command];
  if (!spec) fail(`unknown command "${command}"\n${USAGE}`, 2);
  let config: Config;
  try {
    config = loadConfig(process.env, { needsDatabase: spec.database });
  } catch (err: unknown) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
  const logger = createLogger(config.logLevel);

  switch (command) {
    case 'run':
      return run(config, logger);
    case 'migrate':
      return withPool(config, logger, 'migrate', async (pool) => {
        const applied = await migrate(pool, logger, tables(config.annotationsSchema));
        logger.info(
          { database: safeUrl(databaseUrl(config)), applied },
          applied.length ? `Applied ${applied.length} migration(s)` : 'Database is up to date',
        );
      });
    case 'status':
      return withPool(config, logger, 'status', async (pool) => {
        const status = await readStatus(pool, config);
        process.stdout.write(args.includes('--json') ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
      });
    case 'render-job': {
      try {
        const template = await resolveTemplate(config);
        const cluster = loadClusterConfig(config.kubeconfig, config.trainingNamespace);
        const namespace = cluster?.namespace ?? (config.trainingNamespace || 'default');
        process.stdout.write(
          dump(buildJob(template, { name: jobName(new Date()), namespace, runId: 0, annotationCount: 0 }), {
            noRefs: true,
          }),
        );
      } catch (err: unknown) {
        fail(message(err), exitCode(err));
      }
      return;
    }
    case 'pause':
    case 'resume':
    case 'cancel':
    case 'trigger':
      return operatorCommand(config, logger, command, args);
    case 'baseline': {
      const options = baselineArgs(args);
      return withPool(config, logger, 'baseline', async (pool) => {
        const deps = { pool, tables: tables(config.annotationsSchema), logger, chunkRows: config.chunkRows };
        let plan: Awaited<ReturnType<typeof planBaseline>>;
        try {
          plan = await planBaseline(deps, options.before);
        } catch (err: unknown) {
          if (err instanceof BaselineRefused) fail(err.message, 1);
          throw err;
        }
        if (!options.yes || (plan.count === 0 && !plan.resumes)) {
          process.stdout.write(
            `${
              plan.count === 0 && !plan.resumes
                ? 'Nothing pending: no baseline needed.'
                : describePlan(plan, deps.tables.annotations)
            }\n`,
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
            process.stderr.write(`baseline: ${marked} of ${plan.count} marked\n`);
          }
        });
        process.stdout.write(
          `Baseline run #${run.id}: ${run.annotationCount} annotations marked used without training (${run.jobName}).\n`,
        );
      });
    }
  }
}

main(process.argv.slice(2)).catch((err: unknown) => fail(message(err), 1));

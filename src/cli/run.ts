// `training-controller run`: the service, with its signal handling.
import type { Config } from '../core/config.js';
import { exitCode, fail, firstLine } from './commandLine.js';
import { TemplateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { startService, type Service } from '../main.js';
import { StartupError } from '../startup.js';
import { scrubSecrets } from '../core/redact.js';

async function start(config: Config, logger: Logger): Promise<Service> {
  try {
    return await startService(config, logger);
  } catch (err: unknown) {
    // pg may echo a part of the connection string (an sslkey it cannot open) in a connection error; our own
    // errors print URLs through safeUrl already.
    const ours = err instanceof StartupError || err instanceof TemplateError;
    const text = ours ? firstLine(err) : scrubSecrets(firstLine(err), config.databaseUrl, config.listenDatabaseUrl);
    logger.fatal({ err: text }, 'Startup failed');
    fail(text, exitCode(err));
  }
}

/** SIGTERM/SIGINT: a graceful stop within SHUTDOWN_TIMEOUT_MS; a second signal exits at once with 130. */
function onSignals(service: Service, config: Config, logger: Logger): void {
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
        logger.error({ err: firstLine(err) }, 'Shutdown failed');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

export async function runService(config: Config, logger: Logger): Promise<void> {
  const service = await start(config, logger);
  onSignals(service, config, logger);
}

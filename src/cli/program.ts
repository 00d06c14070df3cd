// The command line as a function: arguments and an environment in, output and an exit code out. cli.ts binds it
// to the process; the tests call it in-process (a process per call cost ~0.15 s of CPU, and the suite makes
// dozens), keeping real processes for what only a process shows: signals, and the exit code itself.
// Exit codes: 0 done, 1 startup or runtime failure, 2 bad configuration or usage (130, a second signal, is run's).
import type { DestinationStream } from 'pino';
import { CliExit, exitCode, fail, firstLine, parseArgs, UsageError } from './commandLine.js';
import { COMMANDS, commandUsage, synopsis, usage } from './commands.js';
import { ConfigError, loadConfig, type Config } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { packageVersion } from '../core/paths.js';

export interface CliIo {
  /** The environment the settings are read from (loadConfig). */
  env: Readonly<Record<string, string | undefined>>;
  /** stdout: the command's answer. */
  out(text: string): void;
  /** stderr: progress, and the one line of a failure. */
  err(text: string): void;
  /** Whether stdout is a terminal: LOG_FORMAT=auto is pretty there. */
  stdoutIsTty: boolean;
  /** Reads a *_FILE setting's file. */
  readFile(path: string): string;
  /** Where the command's log lines go; the process's stdout when absent. */
  logDestination?: DestinationStream;
}

/** What the command line asks before any configuration: help and the version are answered whatever it says. */
function early(command: string): string | null {
  if (command === '--help' || command === '-h' || command === 'help') return usage();
  if (command === '--version' || command === '-V' || command === 'version')
    return `training-controller ${packageVersion()}`;
  return null;
}

function configFor(io: CliIo, database: boolean): Config {
  try {
    return loadConfig(io.env, { needsDatabase: database, stdoutIsTty: io.stdoutIsTty, readFile: io.readFile });
  } catch (err: unknown) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
}

async function dispatch(argv: readonly string[], io: CliIo): Promise<void> {
  const [name = 'run', ...args] = argv;
  const answer = early(name);
  if (answer !== null) return io.out(`${answer}\n`);
  // Before the configuration: a typo must get the usage, not a complaint about a setting it would never use.
  const command = COMMANDS[name];
  if (!command) fail(`unknown command "${name}"\n${usage()}`, 2);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(name, command.flags, args);
  } catch (err: unknown) {
    if (err instanceof UsageError) fail(`${err.message} (usage: ${synopsis(name)})`, 2);
    throw err;
  }
  if (parsed.help) return io.out(`${commandUsage(name)}\n`);
  const config = configFor(io, command.database);
  const logger = createLogger(config.logLevel, io.logDestination, config.logFormat);
  await command.run({ config, logger, flags: parsed.flags, out: io.out, err: io.err });
}

/**
 * Runs one command line to its answer. `run` returns once the service has started (its signal handlers then
 * own the process); every other command once it is done. A failure is one line on `err`, never a throw.
 */
export async function runCommandLine(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    await dispatch(argv, io);
    return 0;
  } catch (err: unknown) {
    // A CliExit's message is the command's own (an unknown command's carries the usage); anything else is
    // cut to its first line.
    const ours = err instanceof CliExit;
    io.err(`training-controller: ${ours ? err.message : firstLine(err)}\n`);
    return ours ? err.code : exitCode(err);
  }
}

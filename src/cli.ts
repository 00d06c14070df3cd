#!/usr/bin/env node
// training-controller <command> [flags]: the commands are in cli/commands.ts, their flags checked by cli/commandLine.ts.
// Exit codes: 0 done, 1 startup or runtime failure, 2 bad configuration or usage, 130 second signal.
import { readFileSync } from 'node:fs';
import { exitCode, fail, firstLine, parseArgs, UsageError } from './cli/commandLine.js';
import { COMMANDS, commandUsage, synopsis, usage } from './cli/commands.js';
import { ConfigError, loadConfig, type Config } from './core/config.js';
import { createLogger } from './core/logger.js';
import { packageVersion } from './core/paths.js';

/** What the command line asks before any configuration: help and the version are answered whatever it says. */
function early(command: string): string | null {
  if (command === '--help' || command === '-h' || command === 'help') return usage();
  if (command === '--version' || command === '-V' || command === 'version')
    return `training-controller ${packageVersion()}`;
  return null;
}

function configFor(database: boolean): Config {
  try {
    return loadConfig(process.env, {
      needsDatabase: database,
      stdoutIsTty: process.stdout.isTTY === true,
      readFile: (path) => readFileSync(path, 'utf8'),
    });
  } catch (err: unknown) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
}

async function main(argv: string[]): Promise<void> {
  const [name = 'run', ...args] = argv;
  const answer = early(name);
  if (answer !== null) return void process.stdout.write(`${answer}\n`);
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
  if (parsed.help) return void process.stdout.write(`${commandUsage(name)}\n`);
  const config = configFor(command.database);
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  await command.run({ config, logger, flags: parsed.flags });
}

main(process.argv.slice(2)).catch((err: unknown) => fail(firstLine(err), exitCode(err)));

// The command line's contract: the arguments after a command are checked against what that command declares
// (an argument it does not know is a usage error, never ignored: `status --bogus` used to print the status and
// exit 0), and the CLI ends with one line on stderr and an exit code:
// 0 done, 1 startup or runtime failure, 2 bad configuration or usage, 130 second signal.
import { ConfigError } from '../core/config.js';
import { TemplateError } from '../core/errors.js';

/** A flag that stands alone (`--json`) or takes the next argument as its value (`--before TIMESTAMP`). */
export type FlagKind = 'switch' | 'value';
export type FlagSpec = Readonly<Record<string, FlagKind>>;

export interface ParsedArgs {
  /** true for a switch that was given; the text for a value flag. Absent when not given. */
  flags: Record<string, string | true>;
  help: boolean;
}

/** A command line the command cannot take: one line, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const HELP = new Set(['--help', '-h']);

/** `--before=T` as `--before T`. */
function split(arg: string): [string, string | undefined] {
  const eq = arg.indexOf('=');
  return arg.startsWith('--') && eq > 2 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
}

/** Every command takes --help/-h; besides that exactly the flags in `spec`, each at most once. */
export function parseArgs(command: string, spec: FlagSpec, args: readonly string[]): ParsedArgs {
  const flags: Record<string, string | true> = {};
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = split(args[i] as string);
    if (HELP.has(name) && inline === undefined) {
      help = true;
      continue;
    }
    const kind = spec[name];
    if (kind === undefined) throw new UsageError(`${command}: unknown argument "${args[i]}"`);
    if (name in flags) throw new UsageError(`${command}: ${name} given twice`);
    if (kind === 'switch') {
      if (inline !== undefined) throw new UsageError(`${command}: ${name} takes no value`);
      flags[name] = true;
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined || (inline === undefined && value.startsWith('--')))
      throw new UsageError(`${command}: ${name} needs a value`);
    flags[name] = value;
  }
  return { flags, help };
}

// How the CLI ends.

export function fail(message: string, code: number): never {
  process.stderr.write(`training-controller: ${message}\n`);
  process.exit(code);
}

/** The first line of what was thrown: every error the CLI prints is one line. */
export function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/**
 * Bad configuration (a setting, the kubeconfig, the Job template) or usage exits 2, so a restart loop is told
 * from an outage. A setting found bad only once it is used (a KUBECONFIG that names a directory) is still bad
 * configuration.
 */
export function exitCode(err: unknown): number {
  return err instanceof ConfigError || err instanceof TemplateError || err instanceof UsageError ? 2 : 1;
}

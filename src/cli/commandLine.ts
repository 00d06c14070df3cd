// The command line's contract: the arguments after a command are checked against what that command declares
// (an argument it does not know is a usage error, never ignored: `status --bogus` used to print the status and
// exit 0), and the CLI ends with one line on stderr and an exit code:
// 0 done, 1 startup or runtime failure, 2 bad configuration or usage, 130 second signal.
import { ConfigError, type Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { TemplateError } from '../core/errors.js';

/**
 * A flag that stands alone (`--json`), takes the next argument as its value (`--reason TEXT`), or takes an
 * instant (`--before TIMESTAMP`: checked by parseInstant, and carried on in its UTC form).
 */
export type FlagKind = 'switch' | 'value' | 'instant';
export type FlagSpec = Readonly<Record<string, FlagKind>>;

export interface ParsedArgs {
  /** true for a switch that was given; the text for a value flag. Absent when not given. */
  flags: Record<string, string | true>;
  help: boolean;
}

/** What a command is given (cli/commands.ts): its settings, its flags, and where its output goes. */
export interface CommandContext {
  config: Config;
  logger: Logger;
  /** The flags the command declared and was given (`--json`: true, `--before`: its text). */
  flags: Record<string, string | true>;
  /** The command's answer (stdout). */
  out(text: string): void;
  /** Progress and errors (stderr). */
  err(text: string): void;
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
    flags[name] = kind === 'instant' ? instant(command, name, value) : value;
  }
  return { flags, help };
}

const INSTANT_EXAMPLE = 'such as 2026-01-02T00:00:00Z or 2026-01-02T09:00:00+09:00';

function instant(command: string, name: string, value: string): string {
  const parsed = parseInstant(value);
  if ('at' in parsed) return parsed.at.toISOString();
  const why = parsed.why ? `: ${parsed.why}` : '';
  throw new UsageError(
    `${command}: ${name} must be an ISO 8601 timestamp with an offset, ${INSTANT_EXAMPLE} (got "${value}"${why})`,
  );
}

const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * An instant as the command line takes it: an ISO 8601 date and time with an explicit offset (`Z`, `+09:00`,
 * `+0900`, `+09`; seconds and a fraction optional, a space allowed for the `T`). Nothing else: `new Date()`
 * reads `2026-01-02T00:00:00` in the time zone of the machine running the command (under TZ=Asia/Tokyo a
 * baseline said "Nothing pending" with 2 pending) and takes `12` or `1/2/2026` as dates (issue 21). A date
 * alone is refused too, though `new Date()` reads it as midnight UTC: an operator typing a day means their
 * own, and in Tokyo midnight UTC is 09:00: nine hours of verifications would land on the wrong side of
 * the cut-off without a word; writing the time and offset costs one retype. Pure: uses no local time zone.
 * Returns the instant, or why the text is not one (empty when it looks like no timestamp at all).
 */
export function parseInstant(text: string): { at: Date } | { why: string } {
  const m = ISO_INSTANT.exec(text);
  if (!m) {
    if (DATE_ONLY.test(text))
      return { why: `a date alone names no time zone: for midnight UTC write ${text}T00:00:00Z` };
    return { why: '' };
  }
  const [, y, mo, d, h, mi, sec, frac = '', z, sign, oh, om] = m;
  if (!z && !sign) return { why: 'no offset: add Z for UTC, or the offset such as +09:00' };
  const n = (field: string | undefined): number => Number(field ?? 0);
  const ms = Number(frac.slice(0, 3).padEnd(3, '0')); // a finer fraction than the ms a Date holds is cut
  const wall = Date.UTC(n(y), n(mo) - 1, n(d), n(h), n(mi), n(sec), ms);
  // Date.UTC rolls 2026-02-30 over to March 2: a field out of range shows in what comes back.
  const back = new Date(wall);
  const exists =
    back.getUTCFullYear() === n(y) &&
    back.getUTCMonth() === n(mo) - 1 &&
    back.getUTCDate() === n(d) &&
    n(h) < 24 &&
    n(mi) < 60 &&
    n(sec) < 60 &&
    n(oh) < 24 &&
    n(om) < 60;
  if (!exists) return { why: 'no such date or time' };
  const offsetMinutes = (sign === '-' ? -1 : 1) * (n(oh) * 60 + n(om));
  return { at: new Date(wall - offsetMinutes * 60_000) };
}

// How the CLI ends.

/**
 * The end of a command other than success: cli/program.ts prints `training-controller: <message>` on stderr
 * and returns `code`, which cli.ts makes the process's exit code.
 */
export class CliExit extends Error {
  override name = 'CliExit';
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

export function fail(message: string, code: number): never {
  throw new CliExit(message, code);
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

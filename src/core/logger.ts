import { createRequire } from 'node:module';
import type { PrettyOptions } from 'pino-pretty';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogFormat } from './config.js';

export type { Logger };

// Paths that could carry a credential if someone logs a config or connection object by mistake.
const REDACT = [
  'password',
  '*.password',
  'databaseUrl',
  'listenDatabaseUrl',
  '*.databaseUrl',
  '*.listenDatabaseUrl',
  'connectionString',
  '*.connectionString',
  'headers.authorization',
  '*.headers.authorization',
];

/**
 * What a person reads: time, level, message, then each field on its own indented line (singleLine off), so
 * an object such as a Job summary is never one long line. `service` is the same on every line: left out.
 * A stream, not a transport: a transport runs pino-pretty in a worker thread, whose output can trail the
 * process's exit (a startup error's last line lost) and which a test cannot read synchronously.
 */
function prettyOptions(destination: DestinationStream | number): PrettyOptions {
  return {
    destination: destination as PrettyOptions['destination'],
    sync: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service',
    singleLine: false,
  };
}

/**
 * JSON lines on stdout (or `destination`, which tests use to read what was logged); `pretty` formats the same
 * records with pino-pretty for a terminal.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const options = { level, base: { service: 'training-controller' }, redact: { paths: REDACT, censor: '[redacted]' } };
  if (format === 'pretty') {
    // Loaded only when asked for (CommonJS, so synchronously): JSON mode, the image's, keeps its ~2 MB.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino(options, pretty.build(prettyOptions(destination ?? 1)));
  }
  return destination ? pino(options, destination) : pino(options);
}

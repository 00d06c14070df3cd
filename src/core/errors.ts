// One way to turn whatever was thrown into the text a log line or /readyz shows.

/** The message of an Error, or the thrown value as text (a library may throw a string or an object). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

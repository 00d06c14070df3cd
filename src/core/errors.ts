// One way to turn whatever was thrown into the text a log line or /readyz shows.

/** The message of an Error, or the thrown value as text (a library may throw a string or an object). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A Job template (JOB_TEMPLATE_FILE, TRAINING_IMAGE) the service will not use: one line naming the field, exit 2. */
export class TemplateError extends Error {
  override name = 'TemplateError';
}

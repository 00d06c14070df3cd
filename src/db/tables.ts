// The qualified names of everything the controller reads or writes. The annotations table belongs to the
// Triage API and may live in any schema (ANNOTATIONS_SCHEMA); the controller's own objects live beside it.
// Every statement names them qualified: a role whose own schema comes first on its search_path must never make
// the controller watch (or the migrations create) a second, empty `annotations`.

export interface Tables {
  schema: string;
  annotations: string;
  runs: string;
  /** The one row of operator state (pause, trigger request, max-wait clock, published settings). */
  control: string;
  verifiedSeq: string;
  notifyAtSeq: string;
  migrations: string;
  /** Name of the recount's partial index, qualified. */
  pendingIndex: string;
  /** Name of the index chunks walk a run's annotations by, qualified. */
  runClaimsIndex: string;
  /** The trigger function, qualified. */
  triggerFunction: string;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export function tables(schema: string): Tables {
  const q = (name: string) => `${quoteIdent(schema)}.${name}`;
  return {
    schema,
    annotations: q('annotations'),
    runs: q('training_runs'),
    control: q('training_control'),
    verifiedSeq: q('training_controller_verified_seq'),
    notifyAtSeq: q('training_controller_notify_at_seq'),
    migrations: q('training_controller_migrations'),
    pendingIndex: q('annotations_pending'),
    runClaimsIndex: q('annotations_run_claims'),
    triggerFunction: q('training_controller_on_verified'),
  };
}

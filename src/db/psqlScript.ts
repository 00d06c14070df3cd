// The migration files are psql scripts, and `training-controller migrate` runs them the way `psql -f` does:
// statement by statement, each in its own transaction (autocommit). A file applied in one transaction held
// ALTER TABLE's ACCESS EXCLUSIVE lock on annotations through the foreign key's validation and an index build:
// a verification waited 371 ms on a 1M-row table (issue #10). Statement by statement, that lock is held for
// the catalog change only, and CREATE INDEX CONCURRENTLY can sit in any file.
//
// The subset of psql understood here is what the files use: `:"schema"` and `:'schema'` (interpolated as an
// identifier and a literal), `\if`/`\else`/`\set`/`\endif` (the header that defaults the variable; dropped),
// and `\gexec` (run the statement before it, then each value it returns as a statement).
import { quoteIdent, quoteLiteral } from './tables.js';

export interface Statement {
  sql: string;
  /** Ended by `\gexec`: each value of its result is a statement to run next. */
  gexec: boolean;
}

/** The SQL psql would run with `-v schema=<schema>`, its meta-commands but `\gexec` dropped. */
export function forSchema(sql: string, schema: string): string {
  return sql
    .split('\n')
    .filter((line) => !/^\s*\\/.test(line) || /^\s*\\gexec\s*$/.test(line))
    .join('\n')
    .replaceAll(':"schema"', () => quoteIdent(schema)) // a function: `$$` in a replacement string means `$`
    .replaceAll(":'schema'", () => quoteLiteral(schema));
}

/**
 * Splits a script into statements at top-level semicolons and `\gexec` lines, as psql's lexer does: not inside
 * '…' or "…", a $tag$…$tag$ body (functions, DO blocks), or a comment. Comment-only pieces are dropped.
 */
export function splitStatements(script: string): Statement[] {
  const out: Statement[] = [];
  let start = 0;
  let i = 0;
  const push = (end: number, gexec: boolean) => {
    const sql = script.slice(start, end).trim();
    if (stripComments(sql).trim() !== '') out.push({ sql, gexec });
  };
  while (i < script.length) {
    const c = script[i]!;
    const rest = script.slice(i);
    if (rest.startsWith('--')) {
      i = endOf(script, '\n', i + 2);
    } else if (rest.startsWith('/*')) {
      i = endOf(script, '*/', i + 2);
    } else if (c === "'" || c === '"') {
      i = endOf(script, c, i + 1); // a doubled quote ('' or "") simply re-enters the same state
    } else if (c === '$' && /^\$(?:[A-Za-z_]\w*)?\$/.test(rest) && !/[\w$]/.test(script[i - 1] ?? ' ')) {
      const tag = /^\$(?:[A-Za-z_]\w*)?\$/.exec(rest)![0];
      i = endOf(script, tag, i + tag.length);
    } else if (c === ';') {
      push(i, false);
      start = ++i;
    } else if (c === '\\' && /^\\gexec\s*$/m.test(rest.split('\n', 1)[0]!)) {
      push(i, true);
      i = endOf(script, '\n', i);
      start = i;
    } else {
      i++;
    }
  }
  push(script.length, false);
  return out;
}

/** The index just past the next `token` at or after `from` (the end of the script if there is none). */
function endOf(script: string, token: string, from: number): number {
  const at = script.indexOf(token, from);
  return at < 0 ? script.length : at + token.length;
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
}

/** The indexes a script builds with CREATE INDEX CONCURRENTLY: an interrupted build leaves one INVALID. */
export function concurrentIndexes(script: string): string[] {
  return [
    ...stripComments(script).matchAll(
      /CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("?)(\w+)\1/gi,
    ),
  ].map((m) => m[2]!);
}

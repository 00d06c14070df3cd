// Connection strings as they may be printed: in logs, in one-line errors, on stderr. pg reads credentials
// from two places in a URL, the userinfo (`postgres://u:secret@h/db`) and the query
// (`postgres://u@h/db?password=secret`, pg-connection-string copies every query parameter into the config),
// so both are redacted, everywhere a URL is printed.

/**
 * Query parameters whose value is a secret:
 * - `password`: pg reads it exactly like the userinfo password.
 * - `sslpassword`: libpq's passphrase of the client key (pg ignores it, but the same URL is handed to psql).
 * - `sslkey`: normally a path, which hides nothing; but a PEM key pasted in place of the path is the private
 *   key itself, and pg echoes the value in its `ENOENT: …, open '<value>'` error. Losing the path from a
 *   log costs a debugging hint; printing a key costs a rotation.
 * `sslcert` and `sslrootcert` name certificates, which are public: they stay readable for TLS debugging.
 * Any other name containing "pass", "secret" or "token" (matched case-insensitively, like `PASSWORD`) is
 * redacted too: pg ignores such a parameter, so it is there by mistake, and what somebody wrote in it is
 * most likely a credential.
 */
const SECRET_PARAM = /^sslkey$|pass|secret|token/i;

const MASK = '***';

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return s;
  }
}

/** The raw `key=value` pairs of a query, in order, without the `?`. */
function queryPairs(search: string): { key: string; rawKey: string; rawValue: string | null }[] {
  if (search.length <= 1) return [];
  return search
    .slice(1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const rawKey = eq < 0 ? pair : pair.slice(0, eq);
      return { key: decode(rawKey), rawKey, rawValue: eq < 0 ? null : pair.slice(eq + 1) };
    });
}

/** A connection string safe to print: the userinfo password and every secret query parameter replaced. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = MASK;
    // Rebuilt from the raw pairs rather than through URLSearchParams, which would re-encode the others.
    const pairs = queryPairs(u.search);
    if (pairs.some((p) => SECRET_PARAM.test(p.key))) {
      u.search = pairs
        .map((p) =>
          p.rawValue === null
            ? p.rawKey
            : `${p.rawKey}=${SECRET_PARAM.test(p.key) && p.rawValue !== '' ? MASK : p.rawValue}`,
        )
        .join('&');
    }
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}

/** The secrets of a connection string, as they may appear in a library's error message (raw and decoded). */
function secretsOf(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const values: string[] = [];
  // A password equal to the user name is printed anyway, as the user (`postgres:postgres@`, the embedded
  // server's): masking it would turn every "user postgres" in a message into "user ***" and hide nothing.
  if (u.password && u.password !== u.username) values.push(u.password, decode(u.password));
  for (const p of queryPairs(u.search))
    if (p.rawValue && SECRET_PARAM.test(p.key)) values.push(p.rawValue, decode(p.rawValue));
  return values;
}

/**
 * Secrets shorter than this are left in messages: they match by coincidence (a test's password `p` would mask
 * every p of a message), and the one value pg is known to echo, an sslkey path or pasted key, is longer.
 */
const MIN_SCRUBBED = 4;

/**
 * `text` (a library's error message) with every secret of the given connection strings masked. pg echoes the
 * sslkey value when it cannot open it; no other message of pg or pg-listen is known to carry one, but a
 * message is printed in full on stderr and in the log, so it is filtered wherever a connection failure ends.
 */
export function scrubSecrets(text: string, ...urls: string[]): string {
  const secrets = [...new Set(urls.flatMap(secretsOf))]
    .filter((s) => s.length >= MIN_SCRUBBED)
    .sort((a, b) => b.length - a.length);
  return secrets.reduce((t, s) => t.replaceAll(s, MASK), text);
}

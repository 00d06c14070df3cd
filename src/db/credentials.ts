// Credentials from a file (DATABASE_URL_FILE, LISTEN_DATABASE_URL_FILE: the convention for Docker and
// Kubernetes secrets mounted as files; issue 23). Kubernetes rewrites a mounted Secret's files when the Secret
// changes (within the kubelet's sync period, about a minute), so a rotated password reaches the service without
// a restart if every new connection reads it again: pg asks this callback for the password each time a server
// requests one, which is at every connection the pool or the LISTEN connection opens after the old password
// stops working (the server ends sessions of a changed role only if the DBA terminates them; new ones fail
// until the file holds the new password). Only the password is read again: a new host, user or database in
// the file takes a restart, as the README says.
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';

/** What a pg Pool or Client connects with: the URL as given, or its parts with the password read at connect time. */
export type ConnectionSettings = { connectionString: string } | pg.ClientConfig;

/** The URL with a password callback over its file; the URL as it is when there is no file or no password in it. */
export function connectionSettings(url: string, file: string): ConnectionSettings {
  const parsed = parseIntoClientConfig(url);
  if (file === '' || typeof parsed.password !== 'string' || parsed.password === '') return { connectionString: url };
  let last = parsed.password;
  const password = (): string => {
    // A file being rewritten, or one holding no URL for a moment, keeps the last password that was good.
    try {
      const now = parseIntoClientConfig(readFileSync(file, 'utf8').trim()).password;
      if (typeof now === 'string' && now !== '') last = now;
    } catch {
      // unreadable for now: the last one read
    }
    return last;
  };
  return { ...parsed, password };
}

// Which controllers serve a schema right now (issue 23, found by review). One schema serves one TRAINING_NAME:
// two names on one schema each judge the other's Jobs lost and train one batch twice. Each running service
// holds, on a connection of its own, a shared session advisory lock keyed by two int4s, (its schema, its name),
// which pg_locks shows as classid and objid. A start sees every other name that holds one on its schema,
// whatever application_name a URL sets (a LISTEN connection can be renamed; a lock cannot), and two names
// starting at the same instant each see the other and both refuse (a restart of one of them then wins).
// Replicas of one name share their lock. PostgreSQL releases it when the session ends (a crash, a kill), so
// nothing is left to clean up; a lost connection is reconnected and the lock taken again.
import pg from 'pg';
import { retryDelayMs } from '../core/backoff.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Timers } from '../core/timers.js';
import type { Pool, PoolClient } from './pool.js';

/** 32-bit FNV-1a: the same key in every process for the same text. */
function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** The two keys, unsigned (as pg_locks shows them); the lock functions take them signed. */
export function presenceKeys(schema: string, trainingName: string): { schema: number; name: number } {
  return { schema: hash32(`training-controller schema ${schema}`), name: hash32(trainingName) };
}

const signed = (n: number): number => n | 0;

/** Sessions holding a presence lock on this schema under another name than `trainingName` (any name: null). */
export async function presenceHolders(
  q: Pool | PoolClient | pg.Client,
  schema: string,
  trainingName: string | null,
): Promise<number[]> {
  const keys = presenceKeys(schema, trainingName ?? '');
  const { rows } = await q.query<{ pid: number }>(
    `SELECT DISTINCT pid FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::bigint::oid
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND ($2::bigint IS NULL OR objid <> $2::bigint::oid) AND pid <> pg_backend_pid()
      ORDER BY pid`,
    [keys.schema, trainingName === null ? null : keys.name],
  );
  return rows.map((r) => r.pid);
}

export interface PresenceOptions {
  /** A fresh connection's settings, each time one is opened (the password may have been rotated). */
  connection: () => pg.ClientConfig;
  schema: string;
  trainingName: string;
  logger: Logger;
  timers: Timers;
  /** Another name holds the schema after a reconnect (it started while this one's connection was lost). */
  onConflict: (message: string) => void;
}

export class Presence {
  private client: pg.Client | null = null;
  private stopped = false;
  private reconnecting = false;

  constructor(private readonly o: PresenceOptions) {}

  /** Connects and takes the lock; returns the sessions of other names on the schema (empty: this one alone). */
  async claim(): Promise<number[]> {
    const client = new pg.Client({ ...this.o.connection(), application_name: 'training-controller-presence' });
    client.on('error', () => undefined); // a lost connection also ends it: 'end' reconnects
    await client.connect();
    try {
      const keys = presenceKeys(this.o.schema, this.o.trainingName);
      await client.query('SELECT pg_advisory_lock_shared($1::int, $2::int)', [signed(keys.schema), signed(keys.name)]);
      const others = await presenceHolders(client, this.o.schema, this.o.trainingName);
      this.client = client;
      client.once('end', () => this.lost());
      return others;
    } catch (err: unknown) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }

  private lost(): void {
    this.client = null;
    if (this.stopped || this.reconnecting) return;
    this.reconnecting = true;
    this.o.logger.warn('Presence connection lost; taking the schema lock again');
    void this.reconnect(1);
  }

  private async reconnect(attempt: number): Promise<void> {
    if (this.stopped) return;
    try {
      const others = await this.claim();
      this.reconnecting = false;
      if (others.length > 0)
        this.o.onConflict(
          `another TRAINING_NAME took ANNOTATIONS_SCHEMA=${this.o.schema} while this service's connection was lost (pid ${others.join(', ')})`,
        );
    } catch (err: unknown) {
      this.o.logger.warn({ err: errorMessage(err), attempt }, 'Cannot take the schema lock again; retrying');
      this.o.timers.setTimeout(() => void this.reconnect(attempt + 1), retryDelayMs(attempt));
    }
  }
}

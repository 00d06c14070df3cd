// Which controllers serve a schema right now (issue 23, found by review). One schema serves one TRAINING_NAME:
// two names on one schema each judge the other's Jobs lost and train one batch twice. Each running service
// holds, on a connection of its own, a shared session advisory lock keyed by two int4s, (its schema, its name),
// which pg_locks shows as classid and objid. A start sees every other name that holds one on its schema,
// whatever application_name a URL sets (a LISTEN connection can be renamed; a lock cannot), and two names
// starting at the same instant each see the other and both refuse (a restart of one of them then wins).
// Replicas of one name share their lock. PostgreSQL releases it when the session ends (a crash, a kill), so
// nothing is left to clean up. While it runs, the service checks every LISTEN_CHECK_INTERVAL_MS that its session is
// alive (a failover can leave a dead socket that nothing would notice: found by review) and that no other name
// holds the schema: a lost connection is reconnected and the lock taken again, and while another name holds it
// (one that started while this connection was down) `conflict` says so and the dispatch refuses to start runs.
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

/** A check that takes longer than this counts as a dead connection. */
const CHECK_TIMEOUT_MS = 5_000;

export interface PresenceOptions {
  /** A fresh connection's settings, each time one is opened (the password may have been rotated). */
  connection: () => pg.ClientConfig;
  schema: string;
  trainingName: string;
  logger: Logger;
  timers: Timers;
  /** How often the running service checks its lock (LISTEN_CHECK_INTERVAL_MS, as the LISTEN liveness ping). */
  checkIntervalMs: number;
  /** Another name holds the schema (it started while this one's connection was lost), or null once none does. */
  onConflict: (message: string | null) => void;
}

export class Presence {
  private client: pg.Client | null = null;
  private stopped = false;
  private reconnecting = false;
  private interval: unknown = null;
  /** Why runs must not start now (another name holds the schema), or null. */
  conflict: string | null = null;

  constructor(private readonly o: PresenceOptions) {}

  /** Connects and takes the lock; returns the sessions of other names on the schema (empty: this one alone). */
  async claim(): Promise<number[]> {
    const client = new pg.Client({
      ...this.o.connection(),
      application_name: 'training-controller-presence',
      keepAlive: true,
      query_timeout: CHECK_TIMEOUT_MS,
    });
    client.on('error', () => undefined); // a lost connection also ends it: 'end' reconnects
    await client.connect();
    try {
      const keys = presenceKeys(this.o.schema, this.o.trainingName);
      await client.query('SELECT pg_advisory_lock_shared($1::int, $2::int)', [signed(keys.schema), signed(keys.name)]);
      const others = await presenceHolders(client, this.o.schema, this.o.trainingName);
      // close() during a reconnect: this session must not outlive the service, holding its lock.
      if (this.stopped) throw new Error('presence closed');
      this.client = client;
      client.once('end', () => this.lost());
      this.interval ??= this.o.timers.setInterval(() => void this.check(), this.o.checkIntervalMs);
      return others;
    } catch (err: unknown) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.interval !== null) this.o.timers.clearInterval(this.interval);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }

  /** Alive, and alone on the schema? A failed query ends the connection, which reconnects ('end'). */
  private async check(): Promise<void> {
    const client = this.client;
    if (!client || this.stopped) return;
    try {
      this.setConflict(await presenceHolders(client, this.o.schema, this.o.trainingName));
    } catch (err: unknown) {
      this.o.logger.warn({ err: errorMessage(err) }, 'Presence check failed; reconnecting');
      await client.end().catch(() => undefined);
    }
  }

  private setConflict(others: number[]): void {
    const conflict =
      others.length > 0
        ? `another TRAINING_NAME holds ANNOTATIONS_SCHEMA=${this.o.schema} (pid ${others.join(', ')}): no run starts until one of them is stopped`
        : null;
    if (conflict === this.conflict) return;
    this.conflict = conflict;
    this.o.onConflict(conflict);
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
      this.setConflict(others);
    } catch (err: unknown) {
      if (this.stopped) return;
      this.o.logger.warn({ err: errorMessage(err), attempt }, 'Cannot take the schema lock again; retrying');
      this.o.timers.setTimeout(() => void this.reconnect(attempt + 1), retryDelayMs(attempt));
    }
  }
}

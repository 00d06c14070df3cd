// The LISTEN connection (pg-listen), configured to survive any outage:
// - pg-listen gives up for good after retryTimeout (default 3 s): set to Infinity, retried on our back-off table;
// - its paranoid check (SELECT pg_backend_pid() every 10 s) has no timeout of its own: query_timeout gives it one,
//   so a hung socket (a NAT that silently dropped the flow) is noticed within ~15 s, not never;
// - after every reconnect pg-listen LISTENs again, then emits `connected`: we recount then, which is the
//   order the PostgreSQL docs prescribe (LISTEN first, then read the state), so nothing sent while we were
//   away is missed;
// - a live socket is not a live subscription: a transaction-pooling PgBouncer hands the session (and its LISTEN)
//   to someone else, and a black-holed connection answers nothing while the socket stays open. So every
//   LISTEN_CHECK_INTERVAL_MS the listener NOTIFYs itself from another connection (a payload only it knows);
//   when that ping has not arrived by the next check, the subscription is replaced and the reconnect recount
//   runs. One NOTIFY per 10 s costs the database nothing measurable.
import pg from 'pg';
import pgListen from 'pg-listen';
import { retryDelayMs } from '../core/backoff.js';
import { CONTROL_CHANNEL } from '../db/control.js';
import { connectionSettings } from '../db/credentials.js';
import { LISTEN_APPLICATION_NAME } from '../db/pool.js';
import { errorMessage } from '../core/errors.js';
import { scrubSecrets } from '../core/redact.js';
import { interruptibleSleep, type Timers } from '../core/timers.js';
import type { Logger } from '../core/logger.js';

export const CHANNEL = 'training_controller';
/** Logged when the LISTEN connection is back after a loss (tests wait for it). */
export const RECONNECTED = 'LISTEN connection re-established';

// pg-listen is CommonJS: under ESM its factory is the default export's `default`.
type Factory = typeof pgListen.default;
const createSubscriber: Factory =
  (pgListen as unknown as { default?: Factory }).default ?? (pgListen as unknown as Factory);

/** Logged (warn) when the liveness ping did not come back: once per streak of such checks. */
export const NO_DELIVERY =
  'LISTEN connection delivers no notifications (its liveness ping did not arrive; through a transaction pooler it never will: set LISTEN_DATABASE_URL to a direct connection); reconnecting';
/** Logged when a ping arrives after a streak of missing ones. */
export const DELIVERING_AGAIN = 'LISTEN connection delivers notifications again';

/** Payloads a listener takes for a liveness ping (its own, or another replica's to ignore). */
export const PING_PREFIX = 'ping:';

export interface ListenerHandlers {
  notification(): void;
  /** A NOTIFY on CONTROL_CHANNEL: the CLI changed the operator state (control.ts). */
  control(): void;
  /**
   * LISTEN is active: `initial` on the first connection, false after a reconnect. `proven` is false when this
   * subscription replaces one whose liveness ping never arrived: it is not reported up until a ping arrives
   * (alive), so a LISTEN that never delivers (a transaction pooler) stays down instead of flapping up.
   */
  connected(initial: boolean, proven: boolean): void;
  disconnected(reason: string): void;
  /** The subscription proved it delivers: its liveness ping came back (every check interval when healthy). */
  alive?(): void;
  /** Sends a NOTIFY on CHANNEL with this payload from another connection (the pool). */
  ping(payload: string): Promise<void>;
}

export class Listener {
  private subscriber: ReturnType<Factory> | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private retire: (() => void) | null = null;
  private checkTimer: unknown = null;
  private readonly instance = Math.random().toString(36).slice(2, 10);
  private pings = 0;
  /** The ping sent and not yet received, if any. */
  private awaitedPing: string | null = null;
  private everConnected = false;
  /** A liveness ping went missing and none has arrived since: the subscription is not trusted. */
  private unproven = false;

  constructor(
    private readonly connectionString: string,
    private readonly logger: Logger,
    private readonly timers: Timers,
    private readonly handlers: ListenerHandlers,
    private readonly checkIntervalMs = 10_000,
    /** The file the URL came from (LISTEN_DATABASE_URL_FILE): each reconnect reads its password again. */
    private readonly urlFile = '',
    /** Names the schema it serves (db/pool.ts listenApplicationName). */
    private readonly applicationName = LISTEN_APPLICATION_NAME,
  ) {}

  /** Connects in the background, retrying until it succeeds or stop() is called. */
  start(): void {
    if (!this.loop && !this.subscriber) this.connect();
    this.checkTimer ??= this.timers.setInterval(() => void this.check(), this.checkIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.checkTimer !== null) this.timers.clearInterval(this.checkTimer);
    this.wake?.();
    await this.loop;
    await this.dropSubscriber();
  }

  /** The liveness check: the previous ping must have come back; then send the next one. */
  private async check(): Promise<void> {
    if (this.stopped || !this.subscriber || this.loop) return;
    if (this.awaitedPing !== null) {
      this.awaitedPing = null;
      // Once per streak, not every interval: a pooler that never delivers would repeat it every 20 s.
      const level = this.unproven ? 'debug' : 'warn';
      this.unproven = true;
      this.logger[level]({ checkIntervalMs: this.checkIntervalMs }, NO_DELIVERY);
      this.handlers.disconnected('LISTEN liveness ping did not arrive');
      await this.dropSubscriber();
      this.connect();
      return;
    }
    await this.sendPing();
  }

  private async sendPing(): Promise<void> {
    const payload = `${PING_PREFIX}${this.instance}:${++this.pings}`;
    this.awaitedPing = payload;
    // A database that is down fails this too; that is the pool's problem (and /readyz's), not a dead LISTEN.
    await this.handlers.ping(payload).catch(() => (this.awaitedPing = null));
  }

  /** Connects (again) in the background; `loop` is set exactly while a connect loop runs. */
  private connect(): void {
    this.loop = this.connectLoop().finally(() => (this.loop = null));
  }

  private async dropSubscriber(): Promise<void> {
    const s = this.subscriber;
    this.subscriber = null;
    this.retire?.();
    this.retire = null;
    // A black-holed socket never answers the Terminate message: do not wait for it.
    if (s) await Promise.race([s.close().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  private connectionConfig(): pg.ClientConfig {
    return {
      ...connectionSettings(this.connectionString, this.urlFile),
      application_name: this.applicationName,
      connectionTimeoutMillis: 5_000,
      query_timeout: 5_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    };
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        // pg-listen's first connect() does not retry, and a failed one leaves a reconnect running inside it:
        // probe with a plain client first, so the subscriber is only created against a reachable server.
        const probe = new pg.Client(this.connectionConfig());
        probe.on('error', () => undefined);
        await probe.connect();
        await probe.end();
        await this.subscribe();
        return;
      } catch (err: unknown) {
        const delay = retryDelayMs(attempt);
        // pg echoes an sslkey it cannot open, and LISTEN_DATABASE_URL is first used here, after startup.
        const text = scrubSecrets(errorMessage(err), this.connectionString);
        this.handlers.disconnected(text);
        this.logger.warn({ err: text, attempt, retryInMs: delay }, 'Cannot connect the LISTEN connection; retrying');
        const pause = interruptibleSleep(this.timers, delay);
        this.wake = pause.wake;
        await pause.done;
        this.wake = null;
      }
    }
  }

  /**
   * A pg-listen reconnect that ends after close() starts a new client and a 10 s paranoid-check setInterval
   * (it kept a test process alive for minutes): close those too.
   */
  private closeIfRetired(subscriber: ReturnType<Factory>, retired: boolean): void {
    if (this.stopped || retired) void subscriber.close().catch(() => undefined);
  }

  private async subscribe(): Promise<void> {
    /** retired: replaced by a newer subscription (or stopped); initialDone: the first LISTEN went through. */
    const life = { retired: false, initialDone: false };
    const subscriber = createSubscriber(this.connectionConfig(), {
      retryTimeout: Infinity,
      retryLimit: Infinity,
      // pg-listen's reconnect loop does not look at close(): throwing here is the only way to end it, so a
      // shutdown during a database outage does not leave it retrying (and the process alive) for minutes.
      retryInterval: (attempt: number) => {
        if (this.stopped || life.retired) throw new Error('listener stopped');
        return retryDelayMs(attempt + 1);
      },
      paranoidChecking: 10_000,
      parse: (s: string) => s,
    });
    this.wire(subscriber, life);
    try {
      await subscriber.connect();
      await subscriber.listenTo(CHANNEL);
      await subscriber.listenTo(CONTROL_CHANNEL);
    } catch (err: unknown) {
      await subscriber.close().catch(() => undefined);
      throw err;
    }
    this.subscriber = subscriber;
    this.retire = () => {
      life.retired = true;
    };
    this.awaitedPing = null;
    life.initialDone = true;
    const initial = !this.everConnected;
    this.everConnected = true;
    // A replacement of a subscription that never delivered is no news until a ping proves it (a pooled
    // LISTEN logged "re-established" 34 times in 30 s while it stayed down).
    if (!initial) this.logger[this.unproven ? 'debug' : 'info'](RECONNECTED);
    this.handlers.connected(initial, !this.unproven);
    // An unproven subscription is tested at once, not at the next interval: a working one is up in milliseconds.
    if (this.unproven) void this.sendPing();
  }

  /** pg-listen's events and both channels' notifications, for one subscription. */
  private wire(subscriber: ReturnType<Factory>, life: { retired: boolean; initialDone: boolean }): void {
    subscriber.events.on('reconnect', (attempt: number) => {
      if (attempt === 1) {
        this.logger.warn('LISTEN connection lost; reconnecting');
        this.handlers.disconnected('connection lost');
      }
    });
    subscriber.events.on('connected', () => {
      this.closeIfRetired(subscriber, life.retired);
      if (!life.initialDone || this.stopped) return;
      this.logger[this.unproven ? 'debug' : 'info'](RECONNECTED);
      this.handlers.connected(false, !this.unproven);
      if (this.unproven) void this.sendPing();
    });
    subscriber.events.on('error', (err: Error) => {
      this.closeIfRetired(subscriber, life.retired);
      this.logger.error({ err: scrubSecrets(err.message, this.connectionString) }, 'LISTEN connection error');
    });
    subscriber.notifications.on(CHANNEL, (payload: unknown) => {
      if (typeof payload === 'string' && payload.startsWith(PING_PREFIX)) {
        if (payload === this.awaitedPing) {
          this.awaitedPing = null;
          if (this.unproven) this.logger.info(DELIVERING_AGAIN);
          this.unproven = false;
          this.handlers.alive?.();
        }
        return;
      }
      this.handlers.notification();
    });
    subscriber.notifications.on(CONTROL_CHANNEL, () => this.handlers.control());
  }
}

// The LISTEN connection (pg-listen), configured to survive any outage:
// - pg-listen gives up for good after retryTimeout (default 3 s): set to Infinity, retried on our back-off table;
// - its paranoid check (SELECT pg_backend_pid() every 10 s) has no timeout of its own: query_timeout gives it one,
//   so a hung socket (a NAT that silently dropped the flow) is noticed within ~15 s, not never;
// - after every reconnect pg-listen LISTENs again, then emits `connected`: we recount then, which is the
//   order the PostgreSQL docs prescribe (LISTEN first, then read the state), so nothing sent while we were
//   away is missed.
import pg from 'pg';
import pgListen from 'pg-listen';
import { retryDelayMs } from './backoff.js';
import { interruptibleSleep, type Timers } from './timers.js';
import type { Logger } from './logger.js';

export const CHANNEL = 'training_controller';

// pg-listen is CommonJS: under ESM its factory is the default export's `default`.
type Factory = typeof pgListen.default;
const createSubscriber: Factory = (pgListen as unknown as { default?: Factory }).default ?? (pgListen as unknown as Factory);

export interface ListenerHandlers {
  notification(): void;
  /** LISTEN is active: `initial` on the first connection, false after a reconnect. */
  connected(initial: boolean): void;
  disconnected(reason: string): void;
}

export class Listener {
  private subscriber: ReturnType<Factory> | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly connectionString: string,
    private readonly logger: Logger,
    private readonly timers: Timers,
    private readonly handlers: ListenerHandlers,
  ) {}

  /** Connects in the background, retrying until it succeeds or stop() is called. */
  start(): void {
    this.loop ??= this.connectLoop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    const s = this.subscriber;
    this.subscriber = null;
    if (s) await s.close().catch(() => undefined);
  }

  private connectionConfig(): pg.ClientConfig {
    return {
      connectionString: this.connectionString,
      application_name: 'training-controller-listen',
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
        this.handlers.disconnected(err instanceof Error ? err.message : String(err));
        this.logger.warn({ err: err instanceof Error ? err.message : String(err), attempt, retryInMs: delay }, 'Cannot connect the LISTEN connection; retrying');
        const pause = interruptibleSleep(this.timers, delay);
        this.wake = pause.wake;
        await pause.done;
        this.wake = null;
      }
    }
  }

  private async subscribe(): Promise<void> {
    const subscriber = createSubscriber(this.connectionConfig(), {
      retryTimeout: Infinity,
      retryLimit: Infinity,
      // pg-listen's reconnect loop does not look at close(): throwing here is the only way to end it, so a
      // shutdown during a database outage does not leave it retrying (and the process alive) for minutes.
      retryInterval: (attempt: number) => {
        if (this.stopped) throw new Error('listener stopped');
        return retryDelayMs(attempt + 1);
      },
      paranoidChecking: 10_000,
      parse: (s: string) => s,
    });
    let initialDone = false;
    subscriber.events.on('reconnect', (attempt: number) => {
      if (attempt === 1) {
        this.logger.warn('LISTEN connection lost; reconnecting');
        this.handlers.disconnected('connection lost');
      }
    });
    subscriber.events.on('connected', () => {
      if (!initialDone || this.stopped) return;
      this.logger.info('LISTEN connection re-established');
      this.handlers.connected(false);
    });
    subscriber.events.on('error', (err: Error) => {
      this.logger.error({ err: err.message }, 'LISTEN connection error');
    });
    subscriber.notifications.on(CHANNEL, () => this.handlers.notification());
    try {
      await subscriber.connect();
      await subscriber.listenTo(CHANNEL);
    } catch (err: unknown) {
      await subscriber.close().catch(() => undefined);
      throw err;
    }
    this.subscriber = subscriber;
    initialDone = true;
    this.handlers.connected(true);
  }
}

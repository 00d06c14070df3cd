// A TCP proxy in front of PostgreSQL that a test can cut: every connection through it dies and new ones are
// refused until it is restored. Or black-hole: every socket stays open but no byte goes through either way
// (a NAT that silently dropped the flow, a half-open connection), new ones included, until clearBlackHole(). The database itself keeps running, so the test can go on writing to it
// directly while the controller's LISTEN connection (routed through here) misses every notification.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

export class TcpProxy {
  private sockets = new Set<Socket>();
  private pairs = new Set<[Socket, Socket]>();
  private server: Server | null = null;
  private blackHoled = false;

  private constructor(
    readonly port: number,
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  static async start(targetUrl: string): Promise<TcpProxy> {
    const u = new URL(targetUrl);
    const proxy = new TcpProxy(await freePort(), u.hostname, Number(u.port || 5432));
    await proxy.restore();
    return proxy;
  }

  /** The same URL, through the proxy. */
  via(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restore(): Promise<void> {
    if (this.server) return;
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      if (!this.blackHoled) client.pipe(upstream).pipe(client);
      client.on('close', () => {
        upstream.destroy();
        this.pairs.delete(pair);
      });
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** Keeps every socket open and forwards nothing, on existing and new connections alike. */
  blackHole(): void {
    this.blackHoled = true;
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** New connections work again; the black-holed ones stay dead (their peers must give up on them). */
  clearBlackHole(): void {
    this.blackHoled = false;
    for (const pair of this.pairs) for (const s of pair) s.destroy();
  }

  async stop(): Promise<void> {
    await this.cut();
  }
}

// A database address that records whether anything connected to it: a TCP listener on loopback that accepts
// and closes. "Before any connection" is then a count of 0, not a wall-clock bound (under c8 and four test
// files at once a CLI process alone took over 5 s to start), and no test sends a packet off this machine.
import { createServer, type Server, type Socket } from 'node:net';

export interface Tripwire {
  /** A postgres:// URL at the tripwire (with this user and password). */
  url(credentials?: string): string;
  connections(): number;
  close(): Promise<void>;
}

export async function tripwire(): Promise<Tripwire> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: (credentials = 'u') => `postgres://${credentials}@127.0.0.1:${port}/x`,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

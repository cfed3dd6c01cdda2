/**
 * What every in-process test server shares: listen on 127.0.0.1 on a port the kernel picks, keep
 * track of connections, and stop for good (close, and end keep-alive connections, which would
 * otherwise hold close() open). Safe to stop twice.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** A listening server's port and how to stop it. */
export interface LoopbackListener {
  port: number;
  /** Stops listening and ends every open connection; `cleanup` runs once, after close is requested. */
  stop(): Promise<void>;
}

/** Listens on 127.0.0.1; `name` goes into the error when the address is not a TCP one. */
export async function listenOnLoopback(server: Server, name: string, cleanup: () => void = () => undefined): Promise<LoopbackListener> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error(`${name}: unexpected address ${String(address)}`);
  let stopped: Promise<void> | undefined;
  return {
    port: address.port,
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        cleanup();
      })),
  };
}

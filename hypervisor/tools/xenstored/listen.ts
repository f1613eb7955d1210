/*
 * A unix-socket listener for xenstored's host clients, shared by
 * startXenstored (a fresh Xenstored) and the machine's listenXenstored (an
 * existing one): replace any stale socket file, hand each connection to
 * `onSocket`, and on close drop the clients and remove the socket file.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';

export interface UnixListener {
  /**
   * Destroy every client socket, run `beforeServerClose` (if given), stop
   * listening and remove the socket file. Not idempotent by itself.
   */
  close(beforeServerClose?: () => void): Promise<void>;
}

/** Listen on `socketPath` (its directory made, a stale file removed); resolves once listening. */
export async function listenUnixSocket(socketPath: string, onSocket: (sock: Socket) => void): Promise<UnixListener> {
  mkdirSync(dirname(socketPath), { recursive: true });
  rmSync(socketPath, { force: true });
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    onSocket(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: (beforeServerClose) => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      beforeServerClose?.();
      server.close(() => {
        rmSync(socketPath, { force: true });
        resolve();
      });
    }),
  };
}

/*
 * xenstored on a unix socket for host clients (`XENSTORED_PATH=<dir>/xenstored.sock
 * xenstore-ls`, pyxs, the test suite), serving an existing in-process
 * Xenstored: the machine makes xenstored first (its ring hooks need the
 * machine) and then opens the socket.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Xenstored } from '../xenstored/server.js';

export interface SocketListener {
  readonly socketPath: string;
  /** Stop listening, drop the socket's clients, remove the socket file. */
  close(): Promise<void>;
}

export async function listenXenstored(xenstored: Xenstored, socketPath: string): Promise<SocketListener> {
  mkdirSync(dirname(socketPath), { recursive: true });
  rmSync(socketPath, { force: true });
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    xenstored.acceptSocket(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    socketPath,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          rmSync(socketPath, { force: true });
          resolve();
        });
      });
      return closing;
    },
  };
}

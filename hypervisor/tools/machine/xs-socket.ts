/*
 * xenstored on a unix socket for host clients (`XENSTORED_PATH=<dir>/xenstored.sock
 * xenstore-ls`, pyxs, the test suite), serving an existing in-process
 * Xenstored: the machine makes xenstored first (its ring hooks need the
 * machine) and then opens the socket.
 */
import type { Xenstored } from '../xenstored/server.js';
import { listenUnixSocket } from '../xenstored/listen.js';

export interface SocketListener {
  readonly socketPath: string;
  /** Stop listening, drop the socket's clients, remove the socket file. */
  close(): Promise<void>;
}

export async function listenXenstored(xenstored: Xenstored, socketPath: string): Promise<SocketListener> {
  const listener = await listenUnixSocket(socketPath, (sock) => xenstored.acceptSocket(sock));
  let closing: Promise<void> | undefined;
  return {
    socketPath,
    close: () => {
      closing ??= listener.close();
      return closing;
    },
  };
}

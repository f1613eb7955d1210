/*
 * The unix-socket transport: xs_wire messages over a byte stream, for host
 * clients (xenstore-utils, libxenstore, pyxs, the toolstack). Chunks arrive
 * in any size; the frame decoder reassembles them. A client announcing a
 * payload over XENSTORE_PAYLOAD_MAX gets an E2BIG error and is dropped:
 * after that its stream cannot be trusted to be in sync.
 */
import type { Socket } from 'node:net';
import { encodeMsg, errorReply, FrameDecoder, type XsMsg } from './wire.js';

export class XsSocketTransport {
  /** A complete request arrived. */
  onMessage: (msg: XsMsg) => void = () => undefined;
  /** The connection is gone (either side closed it). */
  onClose: () => void = () => undefined;
  /** The client broke the framing (oversize message) and is being dropped. */
  onProtocolError: (reason: string) => void = () => undefined;

  private readonly decoder = new FrameDecoder();
  private closed = false;

  constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => this.receive(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    sock.on('error', () => undefined); // 'close' follows and does the cleanup
    sock.on('close', () => this.gone());
  }

  /** Feed received bytes (also used by tests to replay a stream in chosen chunks). */
  receive(chunk: Uint8Array): void {
    if (this.closed) return;
    for (const ev of this.decoder.pushAll(chunk)) {
      if (ev.kind === 'oversize') {
        this.onProtocolError(`message of ${ev.header.len} bytes`);
        this.send(errorReply(ev.header, 'E2BIG'));
        this.sock.end(() => this.sock.destroy());
        this.gone();
        return;
      }
      this.onMessage(ev.msg);
      if (this.closed) return;
    }
  }

  send(msg: XsMsg): void {
    if (this.sock.destroyed || this.sock.writableEnded) return;
    this.sock.write(encodeMsg(msg));
  }

  close(): void {
    this.gone();
    this.sock.destroy();
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}

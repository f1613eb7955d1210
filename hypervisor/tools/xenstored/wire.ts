/*
 * xenstored wire layer: messages, payload strings, error replies and the
 * incremental framing of `struct xsd_sockmsg` + payload.
 *
 * Pure and validating: nothing here does I/O and nothing here throws on peer
 * bytes. The frame decoder is fed whatever the transport has (one byte, a
 * socket chunk, what the ring holds) and tells the transport how many bytes
 * it wants next, so the ring transport never consumes more than one message
 * at a time and the socket transport can slice chunks the same way.
 */
import { bytesMem } from '../../public/layout.js';
import { XSD_ERRORS, XS_ERROR, XENSTORE_PAYLOAD_MAX, xsd_sockmsg } from '../../public/io/xs_wire.js';

/** One xs_wire message: the header fields and the payload bytes. */
export interface XsMsg {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

/** Size of `struct xsd_sockmsg`. */
export const XS_HEADER_SIZE = xsd_sockmsg.size;

/** The errno names xenstored may send (the XSD_ERRORS table). */
export type XsErr =
  | 'EINVAL' | 'EACCES' | 'EEXIST' | 'EISDIR' | 'ENOENT' | 'ENOMEM' | 'ENOSPC' | 'EIO'
  | 'ENOTEMPTY' | 'ENOSYS' | 'EROFS' | 'EBUSY' | 'EAGAIN' | 'EISCONN' | 'E2BIG' | 'EPERM';

const ERRNO_BY_NAME = new Map<string, number>(XSD_ERRORS.map(([n, s]) => [s, n]));

/** Errno number of an error name (for clients that want the number). */
export function errnoOf(name: string): number | undefined {
  return ERRNO_BY_NAME.get(name);
}

// ---------------------------------------------------------------------------
// Bytes <-> strings. Paths and tokens are 7-bit ASCII on the wire; latin1
// maps every byte to one UTF-16 unit, so no input byte can make decoding fail
// and validation (path characters) sees exactly what the peer sent.

export function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return s;
}

export function fromLatin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Concatenate byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** `s1\0s2\0...`: each string followed by a NUL. */
export function nulStrings(strings: readonly string[]): Uint8Array {
  return fromLatin1(strings.map((s) => s + '\0').join(''));
}

/** Number of NUL bytes in a payload (xenstored counts strings this way). */
export function countNuls(payload: Uint8Array): number {
  let n = 0;
  for (const b of payload) if (b === 0) n++;
  return n;
}

/**
 * The NUL-terminated strings at the start of a payload; bytes after the last
 * NUL are not a string and are left out (as xenstored's get_strings does).
 */
export function nulTerminated(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(latin1(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** The single argument of a request: exactly one NUL, at the end. */
export function oneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0) return undefined;
  const nul = payload.indexOf(0);
  if (nul !== payload.length - 1) return undefined;
  return latin1(payload.subarray(0, nul));
}

/** The first NUL-terminated string and the bytes after it (WRITE's path|value). */
export function firstArgAndRest(payload: Uint8Array): { arg: string; rest: Uint8Array } | undefined {
  const nul = payload.indexOf(0);
  if (nul < 0) return undefined;
  return { arg: latin1(payload.subarray(0, nul)), rest: payload.slice(nul + 1) };
}

/** C's atoi: optional blanks and sign, then decimal digits; garbage gives 0. */
export function atoi(s: string): number {
  const m = /^[ \t\n\r\f\v]*([+-]?)(\d+)/.exec(s);
  if (!m) return 0;
  // Enough digits to overflow are clamped; xenstored compares the result as unsigned.
  const v = Math.min(Number((m[2] ?? '0').slice(0, 12)), 0xffffffff);
  return m[1] === '-' ? -v : v;
}

// ---------------------------------------------------------------------------
// Messages

export function encodeMsg(m: XsMsg): Uint8Array {
  const out = new Uint8Array(XS_HEADER_SIZE + m.payload.length);
  const hdr = xsd_sockmsg.view(bytesMem(out), 0);
  hdr.set('type', m.type >>> 0);
  hdr.set('req_id', m.reqId >>> 0);
  hdr.set('tx_id', m.txId >>> 0);
  hdr.set('len', m.payload.length);
  out.set(m.payload, XS_HEADER_SIZE);
  return out;
}

export interface XsHeader {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly len: number;
}

export function decodeHeader(bytes: Uint8Array): XsHeader {
  const hdr = xsd_sockmsg.view(bytesMem(bytes), 0);
  return { type: hdr.get('type'), reqId: hdr.get('req_id'), txId: hdr.get('tx_id'), len: hdr.get('len') };
}

/** Reply helpers: a reply echoes req_id and tx_id of its request. */
export function replyTo(req: XsHeader | XsMsg, type: number, payload: Uint8Array): XsMsg {
  return { type, reqId: req.reqId, txId: req.txId, payload };
}

export function errorReply(req: XsHeader | XsMsg, err: XsErr): XsMsg {
  return replyTo(req, XS_ERROR, fromLatin1(err + '\0'));
}

// ---------------------------------------------------------------------------
// Framing

export type FrameEvent =
  | { readonly kind: 'msg'; readonly msg: XsMsg }
  | { readonly kind: 'oversize'; readonly header: XsHeader };

/**
 * Incremental decoder of the byte stream. `need()` is how many more bytes
 * complete the current part (header, then payload); `push()` accepts at most
 * that many and returns a message when one is complete. A header announcing
 * more than XENSTORE_PAYLOAD_MAX bytes poisons the decoder: the stream can
 * no longer be trusted to be in sync, so the connection must be dropped.
 */
export class FrameDecoder {
  private readonly hdr = new Uint8Array(XS_HEADER_SIZE);
  private hdrUsed = 0;
  private header: XsHeader | undefined;
  private body: Uint8Array = new Uint8Array(0);
  private bodyUsed = 0;
  private broken = false;

  get isBroken(): boolean {
    return this.broken;
  }

  /** True between messages (nothing partially received). */
  get atBoundary(): boolean {
    return this.hdrUsed === 0 && this.header === undefined;
  }

  need(): number {
    if (this.broken) return 0;
    if (this.header === undefined) return XS_HEADER_SIZE - this.hdrUsed;
    return this.header.len - this.bodyUsed;
  }

  /** Feed up to `need()` bytes (extra bytes are refused, not dropped: returns how many were taken). */
  push(bytes: Uint8Array): { taken: number; event?: FrameEvent } {
    if (this.broken) return { taken: 0 };
    if (this.header === undefined) {
      const n = Math.min(bytes.length, XS_HEADER_SIZE - this.hdrUsed);
      this.hdr.set(bytes.subarray(0, n), this.hdrUsed);
      this.hdrUsed += n;
      if (this.hdrUsed < XS_HEADER_SIZE) return { taken: n };
      const header = decodeHeader(this.hdr);
      if (header.len > XENSTORE_PAYLOAD_MAX) {
        this.broken = true;
        return { taken: n, event: { kind: 'oversize', header } };
      }
      this.header = header;
      this.body = new Uint8Array(header.len);
      this.bodyUsed = 0;
      if (header.len === 0) return { taken: n, event: this.complete() };
      return { taken: n };
    }
    const n = Math.min(bytes.length, this.header.len - this.bodyUsed);
    this.body.set(bytes.subarray(0, n), this.bodyUsed);
    this.bodyUsed += n;
    if (this.bodyUsed < this.header.len) return { taken: n };
    return { taken: n, event: this.complete() };
  }

  /** Feed a whole chunk of any size; returns every frame event it completes. */
  pushAll(chunk: Uint8Array): FrameEvent[] {
    const events: FrameEvent[] = [];
    let off = 0;
    while (off < chunk.length && !this.broken) {
      const { taken, event } = this.push(chunk.subarray(off));
      off += taken;
      if (event !== undefined) events.push(event);
      if (taken === 0) break;
    }
    return events;
  }

  /** Forget any partial message (ring reconnection). */
  reset(): void {
    this.hdrUsed = 0;
    this.header = undefined;
    this.body = new Uint8Array(0);
    this.bodyUsed = 0;
    this.broken = false;
  }

  private complete(): FrameEvent {
    const h = this.header;
    const msg: XsMsg = { type: h?.type ?? 0, reqId: h?.reqId ?? 0, txId: h?.txId ?? 0, payload: this.body };
    this.header = undefined;
    this.hdrUsed = 0;
    this.body = new Uint8Array(0);
    this.bodyUsed = 0;
    return { kind: 'msg', msg };
  }
}

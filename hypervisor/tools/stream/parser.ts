/*
 * The stream reader: an incremental, validating parser of xl save files,
 * libxl v2 streams and libxc streams.
 *
 * Feed it chunks of any size (a file read, a migration socket) with push();
 * call end() at EOF. Each call returns the headers and records completed so
 * far, in stream order, or the StreamError that stopped the parse. Errors
 * are sticky; nothing but StreamError comes out of bad input, and the parser
 * never waits for bytes it will not be given: end() turns any incomplete
 * header or record into a `truncated` error.
 *
 * Record bodies in the yielded items (page data, contexts) may be views of
 * the pushed chunks: do not modify a chunk after pushing it.
 *
 * Layers (docs/specs/libxl-migration-stream.pandoc): after the xl header,
 * the libxl stream's LIBXC_CONTEXT hands the stream to libxc until libxc's
 * END; in a checkpointed stream each libxc CHECKPOINT hands it back to libxl
 * until CHECKPOINT_END. The parser follows those hand-overs.
 */
import {
  LIBXL_IDENT,
  LIBXL_OPT_BE,
  LIBXL_OPT_RESERVED,
  LIBXL_REC,
  LIBXL_VERSION,
  REC_TYPE_OPTIONAL,
  EMULATOR_ID,
  XL_BYTEORDER,
  XL_MANDATORY_FLAG_STREAMV2,
  XL_MANDATORY_FLAGS_KNOWN,
} from './constants.js';
import { StreamError, streamError, type StreamLayer, type Where } from './errors.js';
import { LibxcParser, type LibxcStop } from './libxc-parser.js';
import {
  ParseState,
  checkLength,
  namesOf,
  readBody,
  readRecordHeader,
  skipBody,
  take,
  type Need,
  type Parse,
} from './parse-core.js';
import type { StreamItem, XlHeaderItem } from './records.js';
import type { StreamFormat } from './writer.js';
import { EMULATOR_HEADER, LIBXL_HEADER, XL_HEADER, hex, readU32le } from './wire.js';
import { XL_MAGIC_BYTES, XL_OPTIONAL_DATA_MAX, decodeOptionalData } from './xl-header.js';

export interface ParserOptions {
  /** Outermost layer; default 'xl' (a file written by `xl save`). */
  readonly format?: StreamFormat;
  /** Accept bytes after the final END (a migration socket carries more); see remainder(). */
  readonly allowTrailing?: boolean;
}

export interface ParseStep {
  /** Items completed by this call. */
  readonly items: StreamItem[];
  /** Set once the stream is known bad; every later call returns it again. */
  readonly error: StreamError | undefined;
  /** The final END has been read. */
  readonly done: boolean;
}

const EMPTY = new Uint8Array(0);

export class StreamParser {
  readonly format: StreamFormat;
  readonly allowTrailing: boolean;
  readonly #st = new ParseState();
  readonly #gen: Parse<void>;
  #need: Need | undefined;
  #skipLeft = 0;
  #queue: Uint8Array[] = [];
  #qHead = 0;
  /** Read position within #queue[#qHead]. */
  #cHead = 0;
  #avail = 0;
  #fed = 0;
  #done = false;
  #ended = false;
  #error: StreamError | undefined;

  constructor(opts: ParserOptions = {}) {
    this.format = opts.format ?? 'xl';
    this.allowTrailing = opts.allowTrailing ?? false;
    this.#gen = parseStream(this.#st, this.format);
    this.#resume(EMPTY);
  }

  /** Bytes pushed so far. */
  get bytesFed(): number {
    return this.#fed;
  }

  /** Stream offset up to which the parser has consumed. */
  get offset(): number {
    return this.#st.offset;
  }

  get done(): boolean {
    return this.#done;
  }

  get error(): StreamError | undefined {
    return this.#error;
  }

  push(chunk: Uint8Array): ParseStep {
    if (this.#ended) throw new Error('StreamParser.push() after end()');
    if (this.#error === undefined && chunk.length > 0) {
      this.#queue.push(chunk);
      this.#avail += chunk.length;
      this.#fed += chunk.length;
      this.#pump();
    }
    return this.#step();
  }

  /** End of input: anything incomplete is a truncation. */
  end(): ParseStep {
    this.#ended = true;
    this.#pump();
    if (this.#error === undefined && !this.#done && this.#need !== undefined) {
      const n = this.#need;
      const have = n.skip ? n.n - this.#skipLeft : this.#avail;
      this.#error = streamError(n.where, 'truncated', this.#fed,
        `stream ends after ${this.#fed} bytes: ${n.what} at offset ${this.#st.offset} needs ${n.n} bytes, ${have} available`
        + (n.where.recordOffset !== this.#st.offset ? ` (record starts at offset ${n.where.recordOffset})` : ''));
    }
    return this.#step();
  }

  /** Bytes after the final END (only with allowTrailing). */
  remainder(): Uint8Array {
    if (!this.#done) return EMPTY;
    return this.#takeBytes(this.#avail);
  }

  #step(): ParseStep {
    const items = this.#st.items.splice(0);
    return { items, error: this.#error, done: this.#done };
  }

  #pump(): void {
    while (this.#error === undefined && !this.#done && this.#need !== undefined) {
      const need = this.#need;
      if (need.skip) {
        const k = Math.min(this.#avail, this.#skipLeft);
        if (k === 0) return;
        this.#dropBytes(k);
        this.#skipLeft -= k;
        if (this.#skipLeft > 0) return;
        this.#resume(EMPTY);
      } else {
        if (this.#avail < need.n) return;
        this.#resume(this.#takeBytes(need.n));
      }
    }
    if (this.#done && this.#avail > 0 && !this.allowTrailing && this.#error === undefined) {
      const layer: StreamLayer = this.format === 'libxc' ? 'libxc' : 'libxl';
      this.#error = streamError({ layer, record: 'END', recordOffset: this.#st.offset }, 'trailing-data', this.#st.offset,
        `${this.#avail} bytes after the final END`);
    }
  }

  #resume(bytes: Uint8Array): void {
    try {
      const r = this.#gen.next(bytes);
      if (r.done) {
        this.#done = true;
        this.#need = undefined;
      } else {
        this.#need = r.value;
        if (r.value.skip) this.#skipLeft = r.value.n;
      }
    } catch (e) {
      if (!(e instanceof StreamError)) throw e;
      this.#error = e;
      this.#need = undefined;
    }
  }

  /** n bytes from the queue: a view when they sit in one chunk, else a copy. */
  #takeBytes(n: number): Uint8Array {
    const first = this.#queue[this.#qHead];
    if (first !== undefined && first.length - this.#cHead >= n) {
      const out = first.subarray(this.#cHead, this.#cHead + n);
      this.#advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#queue[this.#qHead];
      if (c === undefined) throw new Error('stream parser queue underflow');
      const k = Math.min(n - filled, c.length - this.#cHead);
      out.set(c.subarray(this.#cHead, this.#cHead + k), filled);
      filled += k;
      this.#advance(k);
    }
    return out;
  }

  #dropBytes(n: number): void {
    while (n > 0) {
      const c = this.#queue[this.#qHead];
      if (c === undefined) throw new Error('stream parser queue underflow');
      const k = Math.min(n, c.length - this.#cHead);
      this.#advance(k);
      n -= k;
    }
  }

  #advance(k: number): void {
    this.#avail -= k;
    this.#cHead += k;
    const c = this.#queue[this.#qHead];
    if (c !== undefined && this.#cHead >= c.length) {
      this.#qHead++;
      this.#cHead = 0;
      if (this.#qHead > 64 && this.#qHead * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#qHead);
        this.#qHead = 0;
      }
    }
  }
}

/** Parse a whole image held in memory. */
export function parseImage(bytes: Uint8Array, opts: ParserOptions = {}): { items: StreamItem[]; error: StreamError | undefined } {
  const p = new StreamParser(opts);
  const a = p.push(bytes);
  const b = p.end();
  return { items: [...a.items, ...b.items], error: b.error ?? a.error };
}

/**
 * Parse a stream from any (async) iterable of chunks, e.g. a Node Readable:
 * yields items as they complete, throws the StreamError that stops it.
 */
export async function* readStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ParserOptions = {},
): AsyncGenerator<StreamItem, void, undefined> {
  const p = new StreamParser(opts);
  for await (const chunk of source) {
    const r = p.push(chunk);
    yield* r.items;
    if (r.error !== undefined) throw r.error;
  }
  const r = p.end();
  yield* r.items;
  if (r.error !== undefined) throw r.error;
}

// ---------------------------------------------------------------------------
// The outer layers

function* parseStream(st: ParseState, format: StreamFormat): Parse<void> {
  if (format === 'xl') yield* parseXlHeader(st);
  if (format === 'libxc') {
    const xc = new LibxcParser(st, false);
    yield* xc.headers();
    yield* xc.records();
    return;
  }
  yield* parseLibxl(st);
}

function* parseXlHeader(st: ParseState): Parse<void> {
  const where: Where = { layer: 'xl', record: 'XL_HEADER', recordOffset: st.offset };
  const magic = yield* take(st, XL_MAGIC_BYTES.length, where, 'xl magic');
  const bad = XL_MAGIC_BYTES.findIndex((b, i) => magic[i] !== b);
  if (bad >= 0) throw streamError(where, 'bad-magic', bad, 'not an xl save file: the 32-byte magic does not match');

  const base = st.offset;
  const h = XL_HEADER.decode(yield* take(st, XL_HEADER.size, where, 'xl header fields'));
  const off = XL_HEADER.offsets;
  if (h.byteorder !== XL_BYTEORDER) {
    const swapped = h.byteorder === 0x04030201;
    throw streamError(where, swapped ? 'bad-endianness' : 'bad-magic', base + off.byteorder,
      swapped ? 'big-endian save file; only little-endian is supported' : `byteorder word ${hex(h.byteorder)} is not ${hex(XL_BYTEORDER)}`);
  }
  const unknown = h.mandatoryFlags & ~XL_MANDATORY_FLAGS_KNOWN;
  if (unknown) throw streamError(where, 'unsupported-flags', base + off.mandatoryFlags, `unknown mandatory flags ${hex(unknown)}`);
  if (!(h.mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2)) {
    throw streamError(where, 'bad-version', base + off.mandatoryFlags, 'mandatory flag STREAMV2 clear: legacy (v1) streams are not supported');
  }
  // xl.h: "unknown flags => reject restore"; no optional flag is defined.
  if (h.optionalFlags !== 0) throw streamError(where, 'unsupported-flags', base + off.optionalFlags, `unknown optional flags ${hex(h.optionalFlags)}`);
  if (h.optionalDataLen > XL_OPTIONAL_DATA_MAX) {
    throw streamError(where, 'bad-length', base + off.optionalDataLen, `optional_data_len ${h.optionalDataLen} exceeds ${XL_OPTIONAL_DATA_MAX}`);
  }
  const optAt = st.offset;
  const opt = yield* take(st, h.optionalDataLen, where, 'xl optional data');
  const { config, xenportMeta } = decodeOptionalData(opt, h.mandatoryFlags, optAt);
  const item: XlHeaderItem = {
    layer: 'xl',
    type: 'XL_HEADER',
    offset: where.recordOffset,
    mandatoryFlags: h.mandatoryFlags,
    optionalFlags: h.optionalFlags,
    ...(config !== undefined ? { config } : {}),
    ...(xenportMeta !== undefined ? { xenportMeta } : {}),
  };
  st.emit(item);
}

const LIBXL_NAMES = namesOf(LIBXL_REC);
const KNOWN_EMULATORS: ReadonlySet<number> = new Set(Object.values(EMULATOR_ID));

function* parseLibxl(st: ParseState): Parse<void> {
  const at = st.offset;
  const where: Where = { layer: 'libxl', record: 'LIBXL_HEADER', recordOffset: at };
  const h = LIBXL_HEADER.decode(yield* take(st, LIBXL_HEADER.size, where, 'libxl header'));
  const off = LIBXL_HEADER.offsets;
  if (h.ident !== LIBXL_IDENT) throw streamError(where, 'bad-magic', at + off.ident, `ident ${hex(h.ident)} is not ${hex(LIBXL_IDENT)} ("LibxlFmt")`);
  if (h.version !== LIBXL_VERSION) throw streamError(where, 'bad-version', at + off.version, `version ${h.version}, expected ${LIBXL_VERSION}`);
  if (h.options & LIBXL_OPT_RESERVED) {
    throw streamError(where, 'reserved-nonzero', at + off.options, `reserved option bits ${hex(h.options & LIBXL_OPT_RESERVED)} set`);
  }
  if (h.options & LIBXL_OPT_BE) throw streamError(where, 'bad-endianness', at + off.options, 'big-endian stream; only little-endian is supported');
  st.emit({ layer: 'libxl', type: 'LIBXL_HEADER', offset: at, version: h.version, options: h.options });

  let libxc: LibxcParser | undefined;
  let state: 'before' | LibxcStop = 'before';
  for (;;) {
    const r = yield* readRecordHeader(st, 'libxl', LIBXL_NAMES);
    const fail = (code: Parameters<typeof streamError>[1], detail: string, offset = r.offset): never => {
      throw streamError(r.where, code, offset, detail);
    };
    switch (r.type) {
      case LIBXL_REC.END:
        checkLength(r, { exact: 0 });
        if (state === 'before') fail('bad-order', 'libxl END before any LIBXC_CONTEXT');
        if (state === 'checkpoint') fail('bad-order', 'libxl END inside a checkpoint (expected CHECKPOINT_END)');
        yield* readBody(st, r);
        st.emit({ layer: 'libxl', type: 'END', offset: r.offset });
        return;

      case LIBXL_REC.LIBXC_CONTEXT:
        checkLength(r, { exact: 0 });
        if (libxc !== undefined) fail('duplicate', 'second LIBXC_CONTEXT record');
        yield* readBody(st, r);
        st.emit({ layer: 'libxl', type: 'LIBXC_CONTEXT', offset: r.offset });
        libxc = new LibxcParser(st, true);
        yield* libxc.headers();
        state = yield* libxc.records();
        break;

      case LIBXL_REC.CHECKPOINT_END:
        checkLength(r, { exact: 0 });
        if (state !== 'checkpoint' || libxc === undefined) fail('bad-order', 'CHECKPOINT_END without a libxc CHECKPOINT before it');
        yield* readBody(st, r);
        st.emit({ layer: 'libxl', type: 'CHECKPOINT_END', offset: r.offset });
        state = yield* (libxc as LibxcParser).records();
        break;

      case LIBXL_REC.EMULATOR_XENSTORE_DATA:
      case LIBXL_REC.EMULATOR_CONTEXT: {
        checkLength(r, { min: EMULATOR_HEADER.size });
        const body = yield* readBody(st, r);
        const e = EMULATOR_HEADER.decode(body);
        if (!KNOWN_EMULATORS.has(e.id)) fail('bad-value', `unknown emulator id ${hex(e.id)}`, r.body);
        const data = body.subarray(EMULATOR_HEADER.size);
        if (r.type === LIBXL_REC.EMULATOR_XENSTORE_DATA) checkXenstorePairs(data, r.where, r.body + EMULATOR_HEADER.size);
        st.emit({
          layer: 'libxl',
          type: r.type === LIBXL_REC.EMULATOR_CONTEXT ? 'EMULATOR_CONTEXT' : 'EMULATOR_XENSTORE_DATA',
          offset: r.offset,
          emulatorId: e.id,
          index: e.index,
          data,
        });
        break;
      }

      case LIBXL_REC.CHECKPOINT_STATE: {
        checkLength(r, { exact: 4 });
        const body = yield* readBody(st, r);
        st.emit({ layer: 'libxl', type: 'CHECKPOINT_STATE', offset: r.offset, id: readU32le(body, 0) });
        break;
      }

      default:
        if (!(r.type & REC_TYPE_OPTIONAL)) fail('unknown-record', `unknown mandatory record type ${hex(r.type)}`);
        yield* skipBody(st, r);
        st.emit({ layer: 'libxl', type: 'OPTIONAL', offset: r.offset, rawType: r.type, length: r.length });
    }
  }
}

/** EMULATOR_XENSTORE_DATA: NUL-terminated key, value, key, value ... */
function checkXenstorePairs(data: Uint8Array, where: Where, at: number): void {
  if (data.length === 0) return;
  if (data[data.length - 1] !== 0) throw streamError(where, 'bad-value', at + data.length - 1, 'xenstore data is not NUL-terminated');
  let strings = 0;
  for (const b of data) if (b === 0) strings++;
  if (strings % 2 !== 0) throw streamError(where, 'bad-value', at, `xenstore data holds ${strings} strings, not key/value pairs`);
}

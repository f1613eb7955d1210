/*
 * The reader is written as generators that ask for bytes: `yield* take(n)`
 * suspends until the driver (parser.ts) has n bytes, whatever chunk sizes the
 * input arrives in. Parsing code therefore reads like the spec, top to
 * bottom, and chunking cannot change what it sees. Each request carries
 * where the parser is, so a stream that ends mid-request gives a precise
 * "truncated" error.
 */
import { REC_LENGTH_MAX, REC_TYPE_OPTIONAL } from './constants.js';
import { streamError, type StreamLayer, type Where } from './errors.js';
import type { StreamItem } from './records.js';
import { RECORD_HEADER, firstNonZero, hex, padLength } from './wire.js';

/** A request for bytes: `n` of them to be returned, or (skip) consumed unseen. */
export interface Need {
  readonly n: number;
  readonly skip: boolean;
  readonly where: Where;
  /** What the bytes are, for a truncation message: "PAGE_DATA body", "padding". */
  readonly what: string;
}

export type Parse<T> = Generator<Need, T, Uint8Array>;

const EMPTY = new Uint8Array(0);

export class ParseState {
  /** Stream offset of the next byte the parser will take. */
  offset = 0;
  readonly items: StreamItem[] = [];

  emit(item: StreamItem): void {
    this.items.push(item);
  }
}

export function* take(st: ParseState, n: number, where: Where, what: string): Parse<Uint8Array> {
  if (n === 0) return EMPTY;
  const bytes = yield { n, skip: false, where, what };
  st.offset += n;
  return bytes;
}

export function* skip(st: ParseState, n: number, where: Where, what: string): Parse<void> {
  if (n === 0) return;
  yield { n, skip: true, where, what };
  st.offset += n;
}

export interface RecordHeader {
  readonly type: number;
  readonly length: number;
  /** Offset of the record header. */
  readonly offset: number;
  readonly name: string;
  readonly where: Where;
  /** Offset of the first body byte. */
  readonly body: number;
}

/** Read a record header and name the record (`OPTIONAL`, or `UNKNOWN(0x..)` for types we do not know). */
export function* readRecordHeader(
  st: ParseState,
  layer: StreamLayer,
  names: ReadonlyMap<number, string>,
): Parse<RecordHeader> {
  const at = st.offset;
  const bytes = yield* take(st, RECORD_HEADER.size, { layer, record: 'RECORD_HEADER', recordOffset: at }, 'record header');
  const { type, length } = RECORD_HEADER.decode(bytes);
  const name = names.get(type) ?? (type & REC_TYPE_OPTIONAL ? 'OPTIONAL' : `UNKNOWN(${hex(type)})`);
  const where: Where = { layer, record: name, recordOffset: at };
  if (length > REC_LENGTH_MAX) {
    throw streamError(where, 'bad-length', at + 4, `length ${length} exceeds the record maximum ${REC_LENGTH_MAX}`);
  }
  return { type, length, offset: at, name, where, body: at + RECORD_HEADER.size };
}

/** The body of a record, then its padding, which must be zero. */
export function* readBody(st: ParseState, h: RecordHeader): Parse<Uint8Array> {
  const body = yield* take(st, h.length, h.where, `${h.name} body (${h.length} bytes)`);
  yield* readPadding(st, h);
  return body;
}

/** Consume a body unseen (optional records), then check its padding. */
export function* skipBody(st: ParseState, h: RecordHeader): Parse<void> {
  yield* skip(st, h.length, h.where, `${h.name} body (${h.length} bytes)`);
  yield* readPadding(st, h);
}

function* readPadding(st: ParseState, h: RecordHeader): Parse<void> {
  const n = padLength(h.length);
  const at = st.offset;
  const pad = yield* take(st, n, h.where, 'record padding');
  const bad = firstNonZero(pad);
  if (bad >= 0) throw streamError(h.where, 'bad-padding', at + bad, `padding byte ${bad} is ${hex(pad[bad] ?? 0)}, not zero`);
}

export interface LengthRule {
  readonly exact?: number;
  readonly min?: number;
  readonly max?: number;
  /** The length minus `min` must be a multiple of this. */
  readonly step?: number;
}

/** Check a record's length against its type before waiting for the body. */
export function checkLength(h: RecordHeader, rule: LengthRule): void {
  const bad = (why: string): never => {
    throw streamError(h.where, 'bad-length', h.offset + 4, `length ${h.length} ${why}`);
  };
  if (rule.exact !== undefined && h.length !== rule.exact) bad(`should be ${rule.exact}`);
  if (rule.min !== undefined && h.length < rule.min) bad(`is below the minimum ${rule.min}`);
  if (rule.max !== undefined && h.length > rule.max) bad(`exceeds the maximum ${rule.max}`);
  if (rule.step !== undefined && (h.length - (rule.min ?? 0)) % rule.step !== 0) {
    bad(`is not ${rule.min ?? 0} plus a multiple of ${rule.step}`);
  }
}

/** Name lookup for a record-type table such as LIBXC_REC. */
export function namesOf(table: { readonly [name: string]: number }): ReadonlyMap<number, string> {
  return new Map(Object.entries(table).map(([k, v]) => [v, k]));
}

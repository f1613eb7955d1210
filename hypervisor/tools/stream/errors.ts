/*
 * The one error type of the stream codec. Decoding peer data never throws
 * anything else: a bad image is reported as a StreamError carrying which
 * layer and record failed, what, and where (byte offsets in the stream).
 */

export type StreamLayer = 'xl' | 'libxl' | 'libxc';

export type StreamErrorCode =
  /** The stream ended before a header or record was complete. */
  | 'truncated'
  /** A magic number, marker or ident does not match. */
  | 'bad-magic'
  /** A format version we cannot read. */
  | 'bad-version'
  /** Big-endian stream or byte-order word; we read little-endian only. */
  | 'bad-endianness'
  /** A mandatory flag or option bit this reader does not know. */
  | 'unsupported-flags'
  /** A reserved field or reserved bits are not zero. */
  | 'reserved-nonzero'
  /** Record padding is not zero. */
  | 'bad-padding'
  /** A record's length disagrees with its type or contents. */
  | 'bad-length'
  /** A field has a value the format does not allow. */
  | 'bad-value'
  /** A mandatory record type this reader does not know. */
  | 'unknown-record'
  /** A valid record or value this project does not support (HVM, 32-bit PV, ...). */
  | 'unsupported'
  /** A record arrived before a record it depends on. */
  | 'bad-order'
  /** A record that may appear once appeared again. */
  | 'duplicate'
  /** A required record never appeared (checked at END). */
  | 'missing'
  /** A pfn (in PAGE_DATA, a PTE, the P2M list, a vCPU register) is not below max_pfn. */
  | 'pfn-out-of-range'
  /** Bytes after the final END. */
  | 'trailing-data'
  /** The xenport metadata in the xl header is malformed. */
  | 'bad-meta'
  /** A page table breaks a rule of the saved-image format (checker only). */
  | 'bad-pagetable'
  /** A vCPU context breaks a rule of the saved-image format (checker only). */
  | 'bad-vcpu';

export interface StreamErrorInfo {
  readonly layer: StreamLayer;
  /** Record (or header) name, e.g. `PAGE_DATA`, `IMAGE_HEADER`, `XL_HEADER`. */
  readonly record: string;
  /** Byte offset in the stream of the offending field (or of the end, when truncated). */
  readonly offset: number;
  /** Byte offset of the start of the record or header that failed. */
  readonly recordOffset: number;
  readonly code: StreamErrorCode;
  /** What is wrong, without the location prefix. */
  readonly detail: string;
}

export class StreamError extends Error implements StreamErrorInfo {
  override readonly name = 'StreamError';
  readonly layer: StreamLayer;
  readonly record: string;
  readonly offset: number;
  readonly recordOffset: number;
  readonly code: StreamErrorCode;
  readonly detail: string;

  constructor(info: StreamErrorInfo) {
    super(`${info.layer} ${info.record} at offset ${info.offset} (0x${info.offset.toString(16)}): ${info.detail}`);
    this.layer = info.layer;
    this.record = info.record;
    this.offset = info.offset;
    this.recordOffset = info.recordOffset;
    this.code = info.code;
    this.detail = info.detail;
  }
}

/** Where the parser is: enough to build an error for anything that goes wrong here. */
export interface Where {
  readonly layer: StreamLayer;
  readonly record: string;
  readonly recordOffset: number;
}

export function streamError(where: Where, code: StreamErrorCode, offset: number, detail: string): StreamError {
  return new StreamError({ ...where, code, offset, detail });
}

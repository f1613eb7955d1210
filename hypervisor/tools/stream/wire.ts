/*
 * The fixed-size wire structs of the three stream layers, each declared once
 * as an ordered field list. The same list gives the byte offsets the codec
 * uses and the Python `struct` format string Xen's verify-stream-v2 uses
 * (e.g. "!QIIHHI"), so tests/stream/constants.test.ts can compare the two.
 *
 * Byte order is part of each declaration: the xl header and every record are
 * little-endian (the only order we write or accept); the libxl header and the
 * libxc image header are big-endian whatever the stream's endianness bit says.
 */

type FieldCode = 'B' | 'H' | 'I' | 'Q';
type FieldList = { readonly [name: string]: FieldCode };
type Value<C extends FieldCode> = C extends 'Q' ? bigint : number;
export type Decoded<F extends FieldList> = { -readonly [K in keyof F]: Value<F[K]> };

/** `!` big-endian, `=` native order without alignment, `` native with alignment. */
type PyPrefix = '!' | '=' | '';

const WIDTH: Record<FieldCode, number> = { B: 1, H: 2, I: 4, Q: 8 };

export interface WireStruct<F extends FieldList> {
  readonly name: string;
  readonly size: number;
  /** Python struct format, as in verify-stream-v2's sources. */
  readonly format: string;
  readonly offsets: { readonly [K in keyof F]: number };
  decode(bytes: Uint8Array, at?: number): Decoded<F>;
  encode(values: Decoded<F>, into?: Uint8Array, at?: number): Uint8Array;
}

function defineStruct<F extends FieldList>(name: string, prefix: PyPrefix, fields: F): WireStruct<F> {
  const bigEndian = prefix === '!';
  const entries = Object.entries(fields) as [keyof F & string, FieldCode][];
  const offsets = {} as { [K in keyof F]: number };
  let size = 0;
  for (const [k, code] of entries) {
    const w = WIDTH[code];
    // Every struct here is naturally aligned; a declaration that is not would
    // decode differently under "" and "="/"!" prefixes, so refuse it.
    if (size % w !== 0) throw new Error(`${name}.${k} is not naturally aligned`);
    offsets[k] = size;
    size += w;
  }
  const format = prefix + entries.map(([, c]) => c).join('');
  const le = !bigEndian;

  return Object.freeze({
    name,
    size,
    format,
    offsets,
    decode(bytes: Uint8Array, at = 0): Decoded<F> {
      if (at < 0 || at + size > bytes.length) throw new RangeError(`${name}: ${size} bytes at ${at} outside ${bytes.length}`);
      const dv = new DataView(bytes.buffer, bytes.byteOffset + at, size);
      const out = {} as Record<string, number | bigint>;
      for (const [k, code] of entries) {
        const o = offsets[k];
        switch (code) {
          case 'B': out[k] = dv.getUint8(o); break;
          case 'H': out[k] = dv.getUint16(o, le); break;
          case 'I': out[k] = dv.getUint32(o, le); break;
          case 'Q': out[k] = dv.getBigUint64(o, le); break;
        }
      }
      return out as Decoded<F>;
    },
    encode(values: Decoded<F>, into?: Uint8Array, at = 0): Uint8Array {
      const buf = into ?? new Uint8Array(size);
      if (at < 0 || at + size > buf.length) throw new RangeError(`${name}: ${size} bytes at ${at} outside ${buf.length}`);
      const dv = new DataView(buf.buffer, buf.byteOffset + at, size);
      for (const [k, code] of entries) {
        const o = offsets[k];
        const v = values[k] as number | bigint;
        switch (code) {
          case 'B': dv.setUint8(o, Number(v)); break;
          case 'H': dv.setUint16(o, Number(v), le); break;
          case 'I': dv.setUint32(o, Number(v), le); break;
          case 'Q': dv.setBigUint64(o, BigInt.asUintN(64, BigInt(v)), le); break;
        }
      }
      return buf;
    },
  });
}

// ---------------------------------------------------------------------------
// xl: struct save_file_header after its 32-byte magic.
//   uint32_t byteorder, mandatory_flags, optional_flags, optional_data_len;
export const XL_HEADER = defineStruct('xl header', '=', {
  byteorder: 'I',
  mandatoryFlags: 'I',
  optionalFlags: 'I',
  optionalDataLen: 'I',
});

// libxl: struct libxl__sr_hdr { uint64_t ident; uint32_t version; uint32_t options; } (big-endian)
export const LIBXL_HEADER = defineStruct('libxl header', '!', { ident: 'Q', version: 'I', options: 'I' });

// Both layers: struct { uint32_t type; uint32_t length; } then body, then zero padding to 8.
export const RECORD_HEADER = defineStruct('record header', '', { type: 'I', length: 'I' });

// libxl emulator records: struct libxl__sr_emulator_hdr { uint32_t id; uint32_t index; }
export const EMULATOR_HEADER = defineStruct('emulator header', '', { id: 'I', index: 'I' });

// libxc: struct xc_sr_ihdr { uint64_t marker; uint32_t id; uint32_t version;
//                            uint16_t options; uint16_t _res1; uint32_t _res2; } (big-endian)
export const IMAGE_HEADER = defineStruct('image header', '!', {
  marker: 'Q',
  id: 'I',
  version: 'I',
  options: 'H',
  res1: 'H',
  res2: 'I',
});

// struct xc_sr_dhdr { uint32_t type; uint16_t page_shift; uint16_t _res1;
//                     uint32_t xen_major; uint32_t xen_minor; }
export const DOMAIN_HEADER = defineStruct('domain header', '', {
  type: 'I',
  pageShift: 'H',
  res1: 'H',
  xenMajor: 'I',
  xenMinor: 'I',
});

// struct xc_sr_rec_page_data_header { uint32_t count; uint32_t _res1; uint64_t pfn[]; }
export const PAGE_DATA_HEADER = defineStruct('PAGE_DATA header', '', { count: 'I', res1: 'I' });

// struct xc_sr_rec_x86_pv_info { uint8_t guest_width; uint8_t pt_levels;
//                                uint8_t _res[6]; }  (verify.py reads the
// reserved bytes as a u16 and a u32)
export const X86_PV_INFO = defineStruct('X86_PV_INFO', '', { guestWidth: 'B', ptLevels: 'B', res1: 'H', res2: 'I' });

// struct xc_sr_rec_x86_pv_p2m_frames { uint32_t start_pfn; uint32_t end_pfn; uint64_t p2m_pfns[]; }
export const X86_PV_P2M_FRAMES = defineStruct('X86_PV_P2M_FRAMES header', '', { startPfn: 'I', endPfn: 'I' });

// struct xc_sr_rec_x86_pv_vcpu_hdr { uint32_t vcpu_id; uint32_t _res1; uint8_t context[]; }
export const X86_PV_VCPU_HEADER = defineStruct('X86_PV_VCPU header', '', { vcpuId: 'I', res1: 'I' });

// struct xc_sr_rec_tsc_info { uint32_t mode; uint32_t khz; uint64_t nsec;
//                             uint32_t incarnation; uint32_t _res1; }
export const TSC_INFO = defineStruct('TSC_INFO', '', {
  mode: 'I',
  khz: 'I',
  nsec: 'Q',
  incarnation: 'I',
  res1: 'I',
});

// xen_cpuid_leaf_t { uint32_t leaf, subleaf, a, b, c, d; }
export const CPUID_LEAF = defineStruct('xen_cpuid_leaf_t', '', { leaf: 'I', subleaf: 'I', a: 'I', b: 'I', c: 'I', d: 'I' });

// An X86_MSR_POLICY entry as verify.py declares it ("QII"); only its 16-byte
// size matters to the stream (the C type is xen_msr_entry_t).
export const MSR_POLICY_ENTRY = defineStruct('X86_MSR_POLICY entry', '', { q: 'Q', i0: 'I', i1: 'I' });

// ---------------------------------------------------------------------------
// Small helpers shared by the reader and the writer.

/** Bytes of zero padding after a body of `length` bytes. */
export function padLength(length: number): number {
  return (8 - (length % 8)) % 8;
}

export function ascii(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) throw new RangeError(`non-ASCII character in ${JSON.stringify(s)}`);
    b[i] = c;
  }
  return b;
}

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

export function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

export function readU32le(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
}

/** Index of the first non-zero byte, or -1. */
export function firstNonZero(bytes: Uint8Array, from = 0, to = bytes.length): number {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return i;
  return -1;
}

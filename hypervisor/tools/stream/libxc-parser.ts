/*
 * Reading a libxc stream (v2 or v3) of an x86 PV guest: its two headers and
 * its records, each checked for what Xen 4.17's restore and
 * verify-stream-v2 check, plus the dependencies the spec's "x86 PV Guest"
 * layout states:
 *
 *   X86_PV_INFO -> [CPUID/MSR policy] -> STATIC_DATA_END (v3)
 *     -> X86_PV_P2M_FRAMES -> PAGE_DATA ... -> X86_PV_VCPU_* -> END
 *
 * (SHARED_INFO needs X86_PV_INFO; TSC_INFO may come anywhere.) A v2 stream
 * has no STATIC_DATA_END: as the spec says, its position is inferred at the
 * first X86_PV_P2M_FRAMES. Records independent of each other may come in any
 * order and interleave, as in a live migration's repeated page rounds.
 */
import type { Pfn } from '../../public/types.js';
import {
  CPUID_LEAF_SIZE,
  DHDR_TYPE,
  IHDR_ID,
  IHDR_MARKER,
  IHDR_OPT_BE,
  IHDR_OPT_RESERVED,
  IHDR_VERSION,
  IHDR_VERSION_MIN,
  LIBXC_REC,
  MSR_ENTRY_SIZE,
  P2M_FRAME_ENTRIES,
  PAGE_DATA_MAX_BATCH,
  PAGE_SHIFT,
  PAGE_SIZE,
  REC_TYPE_OPTIONAL,
  TSC_INFO_LENGTH,
  VCPU_CONTEXT_SIZE,
  VCPU_EXTENDED_MAX,
  VCPU_MSR_ENTRY_SIZE,
  VCPU_XSAVE_MIN,
  X86_PV_GUEST_WIDTH,
  X86_PV_PT_LEVELS,
  isKnownPageType,
  pageTypeHasData,
} from './constants.js';
import { streamError, type Where } from './errors.js';
import {
  checkLength,
  namesOf,
  readBody,
  readRecordHeader,
  skipBody,
  take,
  type LengthRule,
  type Parse,
  type ParseState,
  type RecordHeader,
} from './parse-core.js';
import type { PageEntry, VcpuRecordName } from './records.js';
import {
  DOMAIN_HEADER,
  IMAGE_HEADER,
  PAGE_DATA_HEADER,
  TSC_INFO,
  X86_PV_INFO,
  X86_PV_P2M_FRAMES,
  X86_PV_VCPU_HEADER,
  hex,
} from './wire.js';

const NAMES = namesOf(LIBXC_REC);
const R = LIBXC_REC;
const VCPU_HDR = X86_PV_VCPU_HEADER.size;

/** Length rules checked from the record header alone, before the body arrives. */
const LENGTH_RULES: ReadonlyMap<number, LengthRule> = new Map<number, LengthRule>([
  [R.END, { exact: 0 }],
  [R.STATIC_DATA_END, { exact: 0 }],
  [R.CHECKPOINT, { exact: 0 }],
  [R.VERIFY, { exact: 0 }],
  [R.PAGE_DATA, { min: PAGE_DATA_HEADER.size + 8, max: PAGE_DATA_HEADER.size + PAGE_DATA_MAX_BATCH * (8 + PAGE_SIZE), step: 8 }],
  [R.X86_PV_INFO, { exact: X86_PV_INFO.size }],
  [R.X86_PV_P2M_FRAMES, { min: X86_PV_P2M_FRAMES.size + 8, step: 8 }],
  [R.X86_PV_VCPU_BASIC, { exact: VCPU_HDR + VCPU_CONTEXT_SIZE }],
  [R.X86_PV_VCPU_EXTENDED, { min: VCPU_HDR, max: VCPU_HDR + VCPU_EXTENDED_MAX }],
  [R.X86_PV_VCPU_XSAVE, { min: VCPU_HDR }],
  [R.X86_PV_VCPU_MSRS, { min: VCPU_HDR, step: VCPU_MSR_ENTRY_SIZE }],
  [R.SHARED_INFO, { exact: PAGE_SIZE }],
  [R.TSC_INFO, { exact: TSC_INFO_LENGTH }],
  [R.X86_CPUID_POLICY, { min: CPUID_LEAF_SIZE, step: CPUID_LEAF_SIZE }],
  [R.X86_MSR_POLICY, { min: MSR_ENTRY_SIZE, step: MSR_ENTRY_SIZE }],
]);

/** Result of reading records: the stream ended, or (inside libxl) a checkpoint hands control back. */
export type LibxcStop = 'end' | 'checkpoint';

export class LibxcParser {
  version = 0;
  #pvInfo = false;
  #staticDataEnd = false;
  /** Number of PFNs the P2M covers (Xen's max_pfn + 1); 0 until X86_PV_P2M_FRAMES. */
  #maxPfn = 0;
  #pageRecords = 0;
  #sharedInfo = false;
  #vcpusEver = new Set<number>();
  #vcpusThisCheckpoint = new Set<number>();

  /** `embedded`: inside a libxl stream, where CHECKPOINT returns control to libxl. */
  constructor(
    private readonly st: ParseState,
    private readonly embedded: boolean,
  ) {}

  get maxPfn(): number {
    return this.#maxPfn;
  }

  *headers(): Parse<void> {
    const st = this.st;
    let at = st.offset;
    let where: Where = { layer: 'libxc', record: 'IMAGE_HEADER', recordOffset: at };
    const ih = IMAGE_HEADER.decode(yield* take(st, IMAGE_HEADER.size, where, 'image header'));
    const off = IMAGE_HEADER.offsets;
    if (ih.marker !== IHDR_MARKER) {
      throw streamError(where, 'bad-magic', at + off.marker, `marker ${hex(ih.marker)} is not ${hex(IHDR_MARKER)} (a legacy or non-libxc stream)`);
    }
    if (ih.id !== IHDR_ID) throw streamError(where, 'bad-magic', at + off.id, `id ${hex(ih.id)} is not ${hex(IHDR_ID)} ("XENF")`);
    if (ih.version < IHDR_VERSION_MIN || ih.version > IHDR_VERSION) {
      throw streamError(where, 'bad-version', at + off.version, `version ${ih.version}, expected ${IHDR_VERSION_MIN}..${IHDR_VERSION}`);
    }
    if (ih.options & IHDR_OPT_RESERVED) {
      throw streamError(where, 'reserved-nonzero', at + off.options, `reserved option bits ${hex(ih.options & IHDR_OPT_RESERVED)} set`);
    }
    if (ih.options & IHDR_OPT_BE) throw streamError(where, 'bad-endianness', at + off.options, 'big-endian stream; only little-endian is supported');
    if (ih.res1 !== 0) throw streamError(where, 'reserved-nonzero', at + off.res1, `reserved field is ${hex(ih.res1)}`);
    if (ih.res2 !== 0) throw streamError(where, 'reserved-nonzero', at + off.res2, `reserved field is ${hex(ih.res2)}`);
    this.version = ih.version;
    st.emit({ layer: 'libxc', type: 'IMAGE_HEADER', offset: at, version: ih.version, options: ih.options });

    at = st.offset;
    where = { layer: 'libxc', record: 'DOMAIN_HEADER', recordOffset: at };
    const dh = DOMAIN_HEADER.decode(yield* take(st, DOMAIN_HEADER.size, where, 'domain header'));
    const doff = DOMAIN_HEADER.offsets;
    if (dh.type === DHDR_TYPE.X86_HVM) throw streamError(where, 'unsupported', at + doff.type, 'x86 HVM domain; only x86 PV is supported');
    if (dh.type !== DHDR_TYPE.X86_PV) throw streamError(where, 'bad-value', at + doff.type, `unknown domain type ${hex(dh.type)}`);
    if (dh.pageShift !== PAGE_SHIFT) throw streamError(where, 'bad-value', at + doff.pageShift, `page_shift ${dh.pageShift}, expected ${PAGE_SHIFT}`);
    if (dh.res1 !== 0) throw streamError(where, 'reserved-nonzero', at + doff.res1, `reserved field is ${hex(dh.res1)}`);
    st.emit({
      layer: 'libxc',
      type: 'DOMAIN_HEADER',
      offset: at,
      domainType: dh.type,
      pageShift: dh.pageShift,
      xenMajor: dh.xenMajor,
      xenMinor: dh.xenMinor,
    });
  }

  /** Records up to END (or, embedded, up to a CHECKPOINT). */
  *records(): Parse<LibxcStop> {
    const st = this.st;
    for (;;) {
      const h = yield* readRecordHeader(st, 'libxc', NAMES);
      const rule = LENGTH_RULES.get(h.type);
      if (rule !== undefined) checkLength(h, rule);
      const fail = (code: Parameters<typeof streamError>[1], detail: string, offset = h.offset): never => {
        throw streamError(h.where, code, offset, detail);
      };

      switch (h.type) {
        case R.END:
        case R.CHECKPOINT: {
          this.#checkComplete(h);
          yield* readBody(st, h);
          st.emit({ layer: 'libxc', type: h.type === R.END ? 'END' : 'CHECKPOINT', offset: h.offset });
          if (h.type === R.END) return 'end';
          this.#vcpusThisCheckpoint = new Set();
          if (this.embedded) return 'checkpoint';
          break;
        }
        case R.VERIFY:
          yield* readBody(st, h);
          st.emit({ layer: 'libxc', type: 'VERIFY', offset: h.offset });
          break;

        case R.X86_PV_INFO: {
          if (this.#pvInfo) fail('duplicate', 'second X86_PV_INFO record');
          if (this.#staticDataEnd) fail('bad-order', 'X86_PV_INFO after STATIC_DATA_END');
          const v = X86_PV_INFO.decode(yield* readBody(st, h));
          if (v.guestWidth === 4 && v.ptLevels === 3) fail('unsupported', '32-bit PV guest (width 4, 3 levels); only 64-bit is supported', h.body);
          if (v.guestWidth !== X86_PV_GUEST_WIDTH || v.ptLevels !== X86_PV_PT_LEVELS) {
            fail('bad-value', `guest width ${v.guestWidth} with ${v.ptLevels} page-table levels is not a valid combination`, h.body);
          }
          if (v.res1 !== 0 || v.res2 !== 0) fail('reserved-nonzero', 'reserved bytes set', h.body + 2);
          this.#pvInfo = true;
          st.emit({ layer: 'libxc', type: 'X86_PV_INFO', offset: h.offset, guestWidth: v.guestWidth, ptLevels: v.ptLevels });
          break;
        }

        case R.X86_CPUID_POLICY:
        case R.X86_MSR_POLICY: {
          if (this.version < 3) fail('bad-version', `${h.name} in a v${this.version} stream`);
          if (this.#staticDataEnd) fail('bad-order', `${h.name} after STATIC_DATA_END`);
          const data = yield* readBody(st, h);
          st.emit({ layer: 'libxc', type: h.type === R.X86_CPUID_POLICY ? 'X86_CPUID_POLICY' : 'X86_MSR_POLICY', offset: h.offset, data });
          break;
        }

        case R.STATIC_DATA_END:
          if (this.version < 3) fail('bad-version', `STATIC_DATA_END in a v${this.version} stream`);
          if (this.#staticDataEnd) fail('duplicate', 'second STATIC_DATA_END record');
          if (!this.#pvInfo) fail('bad-order', 'STATIC_DATA_END before X86_PV_INFO');
          yield* readBody(st, h);
          this.#staticDataEnd = true;
          st.emit({ layer: 'libxc', type: 'STATIC_DATA_END', offset: h.offset });
          break;

        case R.X86_PV_P2M_FRAMES:
          if (!this.#pvInfo) fail('bad-order', 'X86_PV_P2M_FRAMES before X86_PV_INFO');
          if (!this.#staticDataEnd) {
            if (this.version >= 3) fail('bad-order', 'X86_PV_P2M_FRAMES before STATIC_DATA_END');
            this.#staticDataEnd = true; // v2: inferred here, as the spec says
          }
          yield* this.#p2mFrames(h);
          break;

        case R.PAGE_DATA:
          if (this.#maxPfn === 0) fail('bad-order', 'PAGE_DATA before X86_PV_P2M_FRAMES');
          yield* this.#pageData(h);
          break;

        case R.X86_PV_VCPU_BASIC:
        case R.X86_PV_VCPU_EXTENDED:
        case R.X86_PV_VCPU_XSAVE:
        case R.X86_PV_VCPU_MSRS:
          if (this.#pageRecords === 0) fail('bad-order', `${h.name} before any PAGE_DATA`);
          yield* this.#vcpu(h);
          break;

        case R.SHARED_INFO: {
          if (!this.#pvInfo) fail('bad-order', 'SHARED_INFO before X86_PV_INFO');
          const data = yield* readBody(st, h);
          this.#sharedInfo = true;
          st.emit({ layer: 'libxc', type: 'SHARED_INFO', offset: h.offset, data });
          break;
        }

        case R.TSC_INFO: {
          const t = TSC_INFO.decode(yield* readBody(st, h));
          if (t.res1 !== 0) fail('reserved-nonzero', `reserved field is ${hex(t.res1)}`, h.body + TSC_INFO.offsets.res1);
          st.emit({ layer: 'libxc', type: 'TSC_INFO', offset: h.offset, mode: t.mode, khz: t.khz, nsec: t.nsec, incarnation: t.incarnation });
          break;
        }

        case R.HVM_CONTEXT:
        case R.HVM_PARAMS:
          return fail('unsupported', `${h.name} record in an x86 PV stream`);
        case R.TOOLSTACK:
          return fail('unsupported', 'TOOLSTACK records are deprecated and not accepted');
        case R.CHECKPOINT_DIRTY_PFN_LIST:
          return fail('unsupported', 'CHECKPOINT_DIRTY_PFN_LIST belongs to the COLO back channel, not the forward stream');

        default:
          if (!(h.type & REC_TYPE_OPTIONAL)) return fail('unknown-record', `unknown mandatory record type ${hex(h.type)}`);
          yield* skipBody(st, h);
          st.emit({ layer: 'libxc', type: 'OPTIONAL', offset: h.offset, rawType: h.type, length: h.length });
      }
    }
  }

  /** At END (or CHECKPOINT): everything a PV restore needs has been seen. */
  #checkComplete(h: RecordHeader): void {
    const missing = (what: string): never => {
      throw streamError(h.where, 'missing', h.offset, `${h.name} without ${what}`);
    };
    if (!this.#pvInfo) missing('X86_PV_INFO');
    if (!this.#staticDataEnd) missing('STATIC_DATA_END');
    if (this.#maxPfn === 0) missing('X86_PV_P2M_FRAMES');
    if (this.#pageRecords === 0) missing('any PAGE_DATA');
    if (!this.#sharedInfo) missing('SHARED_INFO');
    if (this.#vcpusEver.size === 0) missing('any X86_PV_VCPU_BASIC');
  }

  *#p2mFrames(h: RecordHeader): Parse<void> {
    const body = yield* readBody(this.st, h);
    const { startPfn, endPfn } = X86_PV_P2M_FRAMES.decode(body);
    if (startPfn > endPfn) {
      throw streamError(h.where, 'bad-value', h.body, `p2m_start_pfn ${hex(startPfn)} is above p2m_end_pfn ${hex(endPfn)}`);
    }
    const count = Math.floor(endPfn / P2M_FRAME_ENTRIES) - Math.floor(startPfn / P2M_FRAME_ENTRIES) + 1;
    if (h.length !== X86_PV_P2M_FRAMES.size + 8 * count) {
      throw streamError(h.where, 'bad-length', h.offset + 4,
        `length ${h.length}, but pfns ${startPfn}..${endPfn} need ${count} frames (${X86_PV_P2M_FRAMES.size + 8 * count} bytes)`);
    }
    const dv = new DataView(body.buffer, body.byteOffset, body.length);
    const frames: bigint[] = [];
    for (let i = 0; i < count; i++) frames.push(dv.getBigUint64(X86_PV_P2M_FRAMES.size + 8 * i, true));
    // A domain may grow during a live migration: later records extend the P2M.
    this.#maxPfn = Math.max(this.#maxPfn, endPfn + 1);
    this.st.emit({ layer: 'libxc', type: 'X86_PV_P2M_FRAMES', offset: h.offset, startPfn, endPfn, frames });
  }

  *#pageData(h: RecordHeader): Parse<void> {
    const body = yield* readBody(this.st, h);
    const { count, res1 } = PAGE_DATA_HEADER.decode(body);
    const fail = (code: Parameters<typeof streamError>[1], offset: number, detail: string): never => {
      throw streamError(h.where, code, offset, detail);
    };
    if (count === 0) fail('bad-value', h.body, 'count is 0');
    if (count > PAGE_DATA_MAX_BATCH) fail('bad-value', h.body, `count ${count} exceeds the batch limit ${PAGE_DATA_MAX_BATCH}`);
    if (res1 !== 0) fail('reserved-nonzero', h.body + 4, `reserved field is ${hex(res1)}`);
    const words = PAGE_DATA_HEADER.size;
    if (body.length < words + 8 * count) fail('bad-length', h.offset + 4, `length ${h.length} cannot hold ${count} pfns`);

    const dv = new DataView(body.buffer, body.byteOffset, body.length);
    const pages: PageEntry[] = [];
    let dataAt = words + 8 * count;
    let withData = 0;
    for (let i = 0; i < count; i++) {
      const at = words + 8 * i;
      const lo = dv.getUint32(at, true);
      const hi = dv.getUint32(at + 4, true);
      const type = hi >>> 28;
      const fieldAt = h.body + at;
      if ((hi >>> 20) & 0xff) fail('reserved-nonzero', fieldAt, `pfn[${i}] has reserved bits 52..59 set (${hex((hi >>> 20) & 0xff)})`);
      if (!isKnownPageType(type)) fail('bad-value', fieldAt, `pfn[${i}] has invalid page type ${hex(type)}`);
      const pfn = (hi & 0xfffff) * 2 ** 32 + lo;
      if (pfn >= this.#maxPfn) {
        fail('pfn-out-of-range', fieldAt, `pfn[${i}] = ${hex(pfn)} is not below max_pfn ${hex(this.#maxPfn)} (p2m_end_pfn ${hex(this.#maxPfn - 1)})`);
      }
      if (isKnownPageType(type) && pageTypeHasData(type)) {
        withData++;
        if (dataAt + PAGE_SIZE <= body.length) {
          pages.push({ pfn: pfn as Pfn, type, data: body.subarray(dataAt, dataAt + PAGE_SIZE) });
        }
        dataAt += PAGE_SIZE;
      } else if (isKnownPageType(type)) {
        pages.push({ pfn: pfn as Pfn, type });
      }
    }
    const expected = words + 8 * count + PAGE_SIZE * withData;
    if (body.length !== expected) {
      fail('bad-length', h.offset + 4, `length ${h.length}, but ${count} pfns with ${withData} pages of data need ${expected}`);
    }
    this.#pageRecords++;
    this.st.emit({ layer: 'libxc', type: 'PAGE_DATA', offset: h.offset, pages });
  }

  *#vcpu(h: RecordHeader): Parse<void> {
    const body = yield* readBody(this.st, h);
    const { vcpuId, res1 } = X86_PV_VCPU_HEADER.decode(body);
    if (res1 !== 0) throw streamError(h.where, 'reserved-nonzero', h.body + 4, `reserved field is ${hex(res1)}`);
    const context = body.subarray(VCPU_HDR);
    if (h.type === R.X86_PV_VCPU_XSAVE && context.length > 0 && context.length < VCPU_XSAVE_MIN) {
      throw streamError(h.where, 'bad-length', h.offset + 4, `xsave context of ${context.length} bytes is below the minimum ${VCPU_XSAVE_MIN}`);
    }
    if (h.type === R.X86_PV_VCPU_BASIC) {
      if (this.#vcpusThisCheckpoint.has(vcpuId)) {
        throw streamError(h.where, 'duplicate', h.body, `second X86_PV_VCPU_BASIC for vCPU ${vcpuId} in one checkpoint`);
      }
      this.#vcpusThisCheckpoint.add(vcpuId);
      this.#vcpusEver.add(vcpuId);
    }
    this.st.emit({ layer: 'libxc', type: h.name as VcpuRecordName, offset: h.offset, vcpuId, context });
  }
}

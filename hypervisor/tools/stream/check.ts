/*
 * checkImage: everything the parser checks, plus what makes a saved image
 * *restorable* rather than merely well-formed, i.e. that save canonicalized
 * every machine frame into a pseudo-physical one (ARCHITECTURE §6, §7):
 *
 *  - records in the spec's typical x86 PV order: X86_PV_INFO, STATIC_DATA_END,
 *    X86_PV_P2M_FRAMES, PAGE_DATA..., then per checkpoint TSC_INFO,
 *    SHARED_INFO and each vCPU's records (BASIC first, ids ascending), END;
 *  - every pfn 0..max_pfn-1 saved (XTAB for holes) by the first checkpoint;
 *  - every present PTE of an L1..L4 page names a pfn below max_pfn; no
 *    superpages; Xen's own L4 slots are empty;
 *  - the P2M frames are pfns below max_pfn saved as ordinary pages;
 *  - each vCPU's CR3 is pfn << 12 of a page saved as an L4 table, vCPU 0's
 *    rdx (start_info) and the GDT frames are pfns below max_pfn;
 *  - shared_info.arch.max_pfn equals the P2M size.
 *
 * Problems are collected (up to a limit) rather than stopping at the first;
 * a parse error ends the check.
 */
import { createReadStream } from 'node:fs';
import {
  GDT_ENTRIES_MAX,
  L4_XEN_SLOT_FIRST,
  L4_XEN_SLOT_LAST,
  IHDR_VERSION,
  PAGE_SIZE,
  PageType,
  SHARED_INFO_ARCH_MAX_PFN,
  VCPU_CONTEXT_CR3,
  VCPU_CONTEXT_GDT_ENTS,
  VCPU_CONTEXT_GDT_FRAMES,
  VCPU_CONTEXT_RDX,
  pageTableLevel,
  pageTypeHasData,
  pageTypeName,
} from './constants.js';
import { StreamError, type StreamErrorCode, type StreamLayer } from './errors.js';
import { StreamParser, type ParserOptions } from './parser.js';
import type { StreamItem, XenportMeta, XlConfig } from './records.js';
import { PAGE_DATA_HEADER, RECORD_HEADER, X86_PV_P2M_FRAMES, X86_PV_VCPU_HEADER, hex } from './wire.js';

export interface ImageSummary {
  bytes: number;
  records: number;
  checkpoints: number;
  maxPfn: number;
  /** Pfns saved with data, by page-table level: [NOTAB, L1, L2, L3, L4]. */
  pagesByLevel: number[];
  vcpus: number[];
  config?: XlConfig;
  xenportMeta?: XenportMeta;
}

export interface CheckResult {
  readonly ok: boolean;
  readonly errors: readonly StreamError[];
  readonly summary: ImageSummary;
}

export interface CheckOptions extends ParserOptions {
  /** Stop collecting after this many problems (default 20). */
  readonly maxErrors?: number;
}

type Source = Uint8Array | string | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Check an image given as bytes, a file path, or a stream of chunks (read
 * incrementally: a file is never held in memory whole). Problems with the
 * image are in the result; only I/O failures (no such file) reject.
 */
export async function checkImage(source: Source, opts: CheckOptions = {}): Promise<CheckResult> {
  const parser = new StreamParser(opts);
  const checker = new ImageChecker(opts);
  const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
    typeof source === 'string' ? createReadStream(source) : source instanceof Uint8Array ? [source] : source;
  for await (const chunk of chunks) {
    const step = parser.push(chunk);
    for (const it of step.items) checker.add(it);
    if (step.error !== undefined) break;
  }
  const last = parser.end();
  for (const it of last.items) checker.add(it);
  checker.summary.bytes = parser.bytesFed;
  if (last.error !== undefined) checker.fail(last.error);
  else checker.finish();
  return checker.result();
}

/** Ranks of the typical x86 PV layout; a record may not follow one of higher rank. */
const RANK: Readonly<Record<string, number>> = {
  IMAGE_HEADER: 0,
  DOMAIN_HEADER: 1,
  X86_PV_INFO: 2,
  X86_CPUID_POLICY: 3,
  X86_MSR_POLICY: 4,
  STATIC_DATA_END: 5,
  X86_PV_P2M_FRAMES: 6,
  PAGE_DATA: 7,
  VERIFY: 7,
  TSC_INFO: 8,
  SHARED_INFO: 9,
  X86_PV_VCPU_BASIC: 10,
  X86_PV_VCPU_EXTENDED: 10,
  X86_PV_VCPU_XSAVE: 10,
  X86_PV_VCPU_MSRS: 10,
  CHECKPOINT: 11,
  END: 11,
};
const VCPU_SUBRANK: Readonly<Record<string, number>> = {
  X86_PV_VCPU_BASIC: 0,
  X86_PV_VCPU_EXTENDED: 1,
  X86_PV_VCPU_XSAVE: 2,
  X86_PV_VCPU_MSRS: 3,
};
const UNSEEN = 0xff;

/** Enough of an item to name it in an error. */
interface ItemRef {
  readonly layer: StreamLayer;
  readonly type: string;
  readonly offset: number;
}

export class ImageChecker {
  readonly errors: StreamError[] = [];
  readonly summary: ImageSummary = { bytes: 0, records: 0, checkpoints: 0, maxPfn: 0, pagesByLevel: [0, 0, 0, 0, 0], vcpus: [] };
  readonly #maxErrors: number;
  readonly #requireMeta: boolean;
  #sawXlHeader = false;
  #rank = -1;
  #types = new Uint8Array(0);
  #p2m: { offset: number; frames: readonly bigint[] } | undefined;
  #covered = false;
  #tsc = 0;
  #shinfo = 0;
  #vcpu: { id: number; sub: number } | undefined;
  #vcpusThisCheckpoint: number[] = [];
  #ended = false;

  constructor(opts: CheckOptions = {}) {
    this.#maxErrors = opts.maxErrors ?? 20;
    this.#requireMeta = (opts.format ?? 'xl') === 'xl';
  }

  get #maxPfn(): number {
    return this.summary.maxPfn;
  }

  fail(e: StreamError): void {
    if (this.errors.length < this.#maxErrors) this.errors.push(e);
  }

  result(): CheckResult {
    return { ok: this.errors.length === 0, errors: this.errors, summary: this.summary };
  }

  #problem(item: ItemRef, code: StreamErrorCode, offset: number, detail: string): void {
    this.fail(new StreamError({ layer: item.layer, record: item.type, offset, recordOffset: item.offset, code, detail }));
  }

  add(item: StreamItem): void {
    if (item.layer === 'xl') {
      this.#sawXlHeader = true;
      if (item.config !== undefined) this.summary.config = item.config;
      if (item.xenportMeta !== undefined) this.summary.xenportMeta = item.xenportMeta;
      else if (this.#requireMeta) this.#problem(item, 'missing', item.offset, 'the xl header carries no xenport metadata');
      return;
    }
    if (item.layer === 'libxl') return;
    this.summary.records++;
    this.#order(item);
    switch (item.type) {
      case 'IMAGE_HEADER':
        if (item.version !== IHDR_VERSION) this.#problem(item, 'bad-version', item.offset, `image version ${item.version}; we save v${IHDR_VERSION}`);
        break;
      case 'X86_PV_P2M_FRAMES':
        this.#p2mFrames(item);
        break;
      case 'PAGE_DATA':
        this.#pageData(item);
        break;
      case 'TSC_INFO':
        this.#tsc++;
        break;
      case 'SHARED_INFO': {
        this.#shinfo++;
        const dv = new DataView(item.data.buffer, item.data.byteOffset, item.data.length);
        const m = dv.getBigUint64(SHARED_INFO_ARCH_MAX_PFN, true);
        if (m !== BigInt(this.#maxPfn)) {
          this.#problem(item, 'bad-value', item.offset + RECORD_HEADER.size + SHARED_INFO_ARCH_MAX_PFN,
            `shared_info.arch.max_pfn is ${hex(m)}, but the P2M covers ${hex(this.#maxPfn)} pfns`);
        }
        break;
      }
      case 'X86_PV_VCPU_BASIC':
        this.#vcpuBasic(item.vcpuId, item.context, item);
        break;
      case 'CHECKPOINT':
      case 'END':
        this.#endOfCheckpoint(item);
        break;
      default:
        break;
    }
  }

  finish(): void {
    if (!this.#ended) return; // the parser has reported why
    if (this.#requireMeta && !this.#sawXlHeader) {
      this.fail(new StreamError({ layer: 'xl', record: 'XL_HEADER', offset: 0, recordOffset: 0, code: 'missing', detail: 'no xl header' }));
    }
  }

  #order(item: Exclude<StreamItem, { layer: 'xl' | 'libxl' }>): void {
    const rank = RANK[item.type];
    if (rank === undefined) return; // optional records may go anywhere
    if (rank < this.#rank) {
      this.#problem(item, 'bad-order', item.offset, `${item.type} after a record that the x86 PV layout puts later`);
    }
    this.#rank = rank;
    const sub = VCPU_SUBRANK[item.type];
    if (sub !== undefined && 'vcpuId' in item) {
      const prev = this.#vcpu;
      if (sub === 0) {
        if (prev !== undefined && item.vcpuId <= prev.id) {
          this.#problem(item, 'bad-order', item.offset, `vCPU ${item.vcpuId} after vCPU ${prev.id}: ids should ascend`);
        }
        this.#vcpusThisCheckpoint.push(item.vcpuId);
      } else if (prev === undefined || prev.id !== item.vcpuId || prev.sub >= sub) {
        this.#problem(item, 'bad-order', item.offset, `${item.type} for vCPU ${item.vcpuId} not right after that vCPU's earlier records`);
      }
      this.#vcpu = { id: item.vcpuId, sub };
    }
  }

  #p2mFrames(item: Extract<StreamItem, { type: 'X86_PV_P2M_FRAMES' }>): void {
    if (this.#p2m !== undefined) this.#problem(item, 'duplicate', item.offset, 'a second X86_PV_P2M_FRAMES record');
    if (item.startPfn !== 0) this.#problem(item, 'bad-value', item.offset + RECORD_HEADER.size, `p2m_start_pfn is ${item.startPfn}, not 0`);
    const maxPfn = item.endPfn + 1;
    this.summary.maxPfn = Math.max(this.summary.maxPfn, maxPfn);
    const types = new Uint8Array(this.summary.maxPfn).fill(UNSEEN);
    types.set(this.#types.subarray(0, types.length));
    this.#types = types;
    this.#p2m = { offset: item.offset, frames: item.frames };
    item.frames.forEach((f, i) => {
      if (f >= BigInt(maxPfn)) {
        this.#problem(item, 'pfn-out-of-range', item.offset + RECORD_HEADER.size + X86_PV_P2M_FRAMES.size + 8 * i,
          `P2M frame ${i} is pfn ${hex(f)}, not below max_pfn ${hex(maxPfn)}`);
      }
    });
  }

  #pageData(item: Extract<StreamItem, { type: 'PAGE_DATA' }>): void {
    let dataAt = item.offset + RECORD_HEADER.size + PAGE_DATA_HEADER.size + 8 * item.pages.length;
    for (const p of item.pages) {
      this.#types[p.pfn] = p.type;
      if (!pageTypeHasData(p.type) || p.data === undefined) continue;
      const level = pageTableLevel(p.type);
      this.summary.pagesByLevel[level] = (this.summary.pagesByLevel[level] ?? 0) + 1;
      if (level > 0) this.#pageTable(item, p.pfn, level, p.data, dataAt);
      dataAt += PAGE_SIZE;
    }
  }

  /** Every present entry of a page table must name a pfn below max_pfn. */
  #pageTable(item: ItemRef, pfn: number, level: number, page: Uint8Array, at: number): void {
    const dv = new DataView(page.buffer, page.byteOffset, page.length);
    for (let i = 0; i < PAGE_SIZE / 8; i++) {
      const lo = dv.getUint32(8 * i, true);
      if (!(lo & 1)) continue;
      const hi = dv.getUint32(8 * i + 4, true);
      const frame = (hi & 0xfffff) * 2 ** 20 + (lo >>> 12);
      const where = `L${level} pfn ${hex(pfn)} entry ${i}`;
      if (frame >= this.#maxPfn) {
        this.#problem(item, 'pfn-out-of-range', at + 8 * i, `${where} maps frame ${hex(frame)}, not a pfn below max_pfn ${hex(this.#maxPfn)}`);
      }
      if ((level === 2 || level === 3) && lo & 0x80) this.#problem(item, 'bad-pagetable', at + 8 * i, `${where} is a superpage, which cannot be migrated`);
      if (level === 4 && i >= L4_XEN_SLOT_FIRST && i <= L4_XEN_SLOT_LAST) {
        this.#problem(item, 'bad-pagetable', at + 8 * i, `${where} is a Xen slot; the saver must clear it`);
      }
    }
  }

  #vcpuBasic(id: number, ctx: Uint8Array, item: ItemRef): void {
    if (!this.summary.vcpus.includes(id)) this.summary.vcpus.push(id);
    const base = item.offset + RECORD_HEADER.size + X86_PV_VCPU_HEADER.size;
    const dv = new DataView(ctx.buffer, ctx.byteOffset, ctx.length);
    const cr3 = dv.getBigUint64(VCPU_CONTEXT_CR3, true);
    const cr3Pfn = Number(cr3 >> 12n);
    if (cr3 & 0xfffn) {
      this.#problem(item, 'bad-vcpu', base + VCPU_CONTEXT_CR3, `vCPU ${id} CR3 ${hex(cr3)} is not a pfn << 12`);
    } else if (cr3Pfn >= this.#maxPfn) {
      this.#problem(item, 'pfn-out-of-range', base + VCPU_CONTEXT_CR3, `vCPU ${id} CR3 ${hex(cr3)} names pfn ${hex(cr3Pfn)}, not below max_pfn ${hex(this.#maxPfn)}`);
    } else {
      const t = this.#types[cr3Pfn] ?? UNSEEN;
      if (t !== PageType.L4TAB && t !== PageType.L4TAB_PIN) {
        const saved = t === UNSEEN ? 'not saved before it' : `saved as ${pageTypeName(t)}`;
        this.#problem(item, 'bad-vcpu', base + VCPU_CONTEXT_CR3, `vCPU ${id} CR3 names pfn ${hex(cr3Pfn)}, which is ${saved}, not an L4 table`);
      }
    }
    if (id === 0) {
      const rdx = dv.getBigUint64(VCPU_CONTEXT_RDX, true);
      if (rdx >= BigInt(this.#maxPfn)) {
        this.#problem(item, 'pfn-out-of-range', base + VCPU_CONTEXT_RDX, `vCPU 0 rdx (start_info) ${hex(rdx)} is not a pfn below max_pfn ${hex(this.#maxPfn)}`);
      }
    }
    const ents = dv.getBigUint64(VCPU_CONTEXT_GDT_ENTS, true);
    if (ents > BigInt(GDT_ENTRIES_MAX)) {
      this.#problem(item, 'bad-vcpu', base + VCPU_CONTEXT_GDT_ENTS, `vCPU ${id} gdt_ents ${ents} exceeds ${GDT_ENTRIES_MAX}`);
      return;
    }
    for (let i = 0; i < Math.ceil(Number(ents) / 512); i++) {
      const f = dv.getBigUint64(VCPU_CONTEXT_GDT_FRAMES + 8 * i, true);
      if (f >= BigInt(this.#maxPfn)) {
        this.#problem(item, 'pfn-out-of-range', base + VCPU_CONTEXT_GDT_FRAMES + 8 * i, `vCPU ${id} GDT frame ${i} ${hex(f)} is not a pfn below max_pfn`);
      }
    }
  }

  #endOfCheckpoint(item: ItemRef): void {
    if (item.type === 'CHECKPOINT') this.summary.checkpoints++;
    if (this.#tsc !== 1) this.#problem(item, this.#tsc ? 'duplicate' : 'missing', item.offset, `${this.#tsc} TSC_INFO records in this checkpoint, expected 1`);
    if (this.#shinfo !== 1) this.#problem(item, this.#shinfo ? 'duplicate' : 'missing', item.offset, `${this.#shinfo} SHARED_INFO records in this checkpoint, expected 1`);
    if (!this.#vcpusThisCheckpoint.includes(0)) this.#problem(item, 'missing', item.offset, 'no X86_PV_VCPU_BASIC for vCPU 0 in this checkpoint');
    if (!this.#covered) {
      this.#covered = true;
      const missing: number[] = [];
      this.#types.forEach((t, pfn) => {
        if (t === UNSEEN) missing.push(pfn);
      });
      if (missing.length > 0) {
        const list = missing.slice(0, 8).map(hex).join(', ');
        this.#problem(item, 'missing', item.offset, `${missing.length} pfns below max_pfn never saved (${list}${missing.length > 8 ? ', ...' : ''})`);
      }
      this.#p2m?.frames.forEach((f, i) => {
        const t = f < BigInt(this.#types.length) ? this.#types[Number(f)] : undefined;
        if (t !== undefined && t !== PageType.NOTAB && t !== UNSEEN) {
          this.#problem(item, 'bad-value', (this.#p2m?.offset ?? 0) + RECORD_HEADER.size + X86_PV_P2M_FRAMES.size + 8 * i,
            `P2M frame ${i} (pfn ${hex(f)}) is saved as ${pageTypeName(t)}, not an ordinary page`);
        }
      });
    }
    this.#tsc = 0;
    this.#shinfo = 0;
    this.#vcpu = undefined;
    this.#vcpusThisCheckpoint = [];
    this.#rank = RANK['X86_PV_P2M_FRAMES'] ?? 0;
    if (item.type === 'END') this.#ended = true;
  }
}

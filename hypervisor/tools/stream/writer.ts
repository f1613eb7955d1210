/*
 * Writing a save image / migration stream, incrementally.
 *
 * Everything goes to a sink as a sequence of chunks: a Node Writable (the
 * writer waits for 'drain' when it says so) or a callback (awaited when it
 * returns a promise). Small records are coalesced into one staging buffer;
 * each PAGE_DATA record is one freshly allocated chunk of at most ~4 MiB, so
 * a 1 GiB guest streams through with a bounded amount of memory in flight.
 * Data the caller passes in is copied before the writer awaits the sink, so
 * the caller may reuse its buffers as soon as a call returns.
 *
 * The calls follow the stream's own order (docs/specs/libxc-migration-stream):
 *
 *   start()                xl header, libxl header, LIBXC_CONTEXT, image and
 *                          domain headers, X86_PV_INFO, [X86_CPUID_POLICY,
 *                          X86_MSR_POLICY], STATIC_DATA_END
 *   writeP2mFrames()       X86_PV_P2M_FRAMES
 *   writePages() ...       PAGE_DATA batches (call again for each pre-copy round)
 *   writeEndOfCheckpoint() TSC_INFO, SHARED_INFO, X86_PV_VCPU_* per vCPU
 *   [writeCheckpoint()     CHECKPOINT + libxl CHECKPOINT_END, then writePages()...]
 *   finish()               libxc END, libxl END
 *
 * Calling them out of order, or with values that cannot be written (a pfn
 * beyond max_pfn, a context of the wrong size), is a bug in the caller and
 * throws a RangeError before anything of that call is written, except in
 * writePages(), which checks each page as it streams by: earlier batches may
 * be out already. Any failure inside a call (a bad page, a sink error) leaves
 * the writer unusable, so a half-written stream is never continued.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import {
  DHDR_TYPE,
  IHDR_ID,
  IHDR_MARKER,
  IHDR_OPT_LE,
  IHDR_VERSION,
  LIBXC_REC,
  LIBXL_IDENT,
  LIBXL_OPT_LE,
  LIBXL_REC,
  LIBXL_VERSION,
  P2M_FRAME_ENTRIES,
  PAGE_DATA_MAX_BATCH,
  PAGE_SHIFT,
  PAGE_SIZE,
  VCPU_CONTEXT_SIZE,
  VCPU_EXTENDED_MAX,
  VCPU_MSR_ENTRY_SIZE,
  VCPU_XSAVE_MIN,
  CPUID_LEAF_SIZE,
  MSR_ENTRY_SIZE,
  X86_PV_GUEST_WIDTH,
  X86_PV_PT_LEVELS,
  isKnownPageType,
  pageTypeHasData,
  pageTypeName,
} from './constants.js';
import type { CheckpointTail, P2mInput, PageInput, XenportMeta } from './records.js';
import {
  DOMAIN_HEADER,
  IMAGE_HEADER,
  LIBXL_HEADER,
  PAGE_DATA_HEADER,
  RECORD_HEADER,
  TSC_INFO,
  X86_PV_INFO,
  X86_PV_P2M_FRAMES,
  X86_PV_VCPU_HEADER,
  padLength,
} from './wire.js';
import { encodeXlHeader } from './xl-header.js';

export type ChunkSink = (chunk: Uint8Array) => void | Promise<void>;
/** Where the stream goes. A Writable is not ended by finish(): a migration socket carries more after END. */
export type StreamSink = ChunkSink | Writable;
/** Outermost layer of the stream: a file from `xl save`, a bare libxl stream, or a bare libxc stream. */
export type StreamFormat = 'xl' | 'libxl' | 'libxc';

export interface StreamStart {
  /** xl.cfg text; required when the format is 'xl'. */
  readonly config?: string;
  /** Required when the format is 'xl'. */
  readonly xenportMeta?: XenportMeta;
  /** Xen version in the domain header; default 4.17. */
  readonly xenVersion?: { readonly major: number; readonly minor: number };
  /** Raw X86_CPUID_POLICY / X86_MSR_POLICY bodies, written only when given. */
  readonly cpuidPolicy?: Uint8Array;
  readonly msrPolicy?: Uint8Array;
}

/** A whole plain (non-checkpointed) save, for writeSaveImage(). */
export interface SaveImage extends StreamStart, CheckpointTail {
  readonly p2m: P2mInput;
  /** Every pfn 0..maxPfn-1 once, in any order; XTAB for pfns without memory. */
  readonly pages: Iterable<PageInput> | AsyncIterable<PageInput>;
}

export interface WriteSummary {
  readonly bytes: number;
  readonly records: number;
  readonly pages: number;
}

/** Write a complete plain save image: the whole sequence of SaveStreamWriter calls. */
export async function writeSaveImage(sink: StreamSink, image: SaveImage, format: StreamFormat = 'xl'): Promise<WriteSummary> {
  const w = new SaveStreamWriter(sink, format);
  await w.start(image);
  await w.writeP2mFrames(image.p2m);
  await w.writePages(image.pages);
  await w.writeEndOfCheckpoint(image);
  return w.finish();
}

const STAGE_SIZE = 64 * 1024;
const DEFAULT_XEN_VERSION = { major: 4, minor: 17 };

type Phase = 'new' | 'static' | 'pages' | 'tail' | 'checkpointed' | 'finished' | 'failed';

export class SaveStreamWriter {
  readonly format: StreamFormat;
  readonly #sink: ChunkSink;
  readonly #stage = new Uint8Array(STAGE_SIZE);
  #stageLen = 0;
  #bytes = 0;
  #records = 0;
  #pages = 0;
  #maxPfn = 0;
  #phase: Phase = 'new';

  constructor(sink: StreamSink, format: StreamFormat = 'xl') {
    this.format = format;
    this.#sink = toChunkSink(sink);
  }

  /** Bytes handed to the sink so far (staged bytes not included). */
  get bytesWritten(): number {
    return this.#bytes;
  }

  /** Stream offset of the next byte to be written. */
  get offset(): number {
    return this.#bytes + this.#stageLen;
  }

  async start(opts: StreamStart): Promise<void> {
    this.#enter(['new'], 'start');
    const ver = opts.xenVersion ?? DEFAULT_XEN_VERSION;
    if (!isU32(ver.major) || !isU32(ver.minor) || ver.major === 0) throw new RangeError(`bad Xen version ${ver.major}.${ver.minor}`);
    checkMultiple('X86_CPUID_POLICY', opts.cpuidPolicy, CPUID_LEAF_SIZE);
    checkMultiple('X86_MSR_POLICY', opts.msrPolicy, MSR_ENTRY_SIZE);
    let xl: Uint8Array | undefined;
    if (this.format === 'xl') {
      if (opts.config === undefined || opts.xenportMeta === undefined) throw new RangeError('an xl stream needs config and xenportMeta');
      xl = encodeXlHeader(opts.config, opts.xenportMeta);
    }
    await this.#guard(async () => {
      if (xl !== undefined) await this.#put(xl, true);
      if (this.format !== 'libxc') {
        await this.#put(LIBXL_HEADER.encode({ ident: LIBXL_IDENT, version: LIBXL_VERSION, options: LIBXL_OPT_LE }), true);
        await this.#record(LIBXL_REC.LIBXC_CONTEXT, []);
      }
      await this.#put(
        IMAGE_HEADER.encode({ marker: IHDR_MARKER, id: IHDR_ID, version: IHDR_VERSION, options: IHDR_OPT_LE, res1: 0, res2: 0 }),
        true,
      );
      await this.#put(
        DOMAIN_HEADER.encode({ type: DHDR_TYPE.X86_PV, pageShift: PAGE_SHIFT, res1: 0, xenMajor: ver.major, xenMinor: ver.minor }),
        true,
      );
      await this.#record(LIBXC_REC.X86_PV_INFO, [
        X86_PV_INFO.encode({ guestWidth: X86_PV_GUEST_WIDTH, ptLevels: X86_PV_PT_LEVELS, res1: 0, res2: 0 }),
      ]);
      if (opts.cpuidPolicy !== undefined) await this.#record(LIBXC_REC.X86_CPUID_POLICY, [opts.cpuidPolicy]);
      if (opts.msrPolicy !== undefined) await this.#record(LIBXC_REC.X86_MSR_POLICY, [opts.msrPolicy]);
      await this.#record(LIBXC_REC.STATIC_DATA_END, []);
    });
    this.#phase = 'static';
  }

  async writeP2mFrames(p2m: P2mInput): Promise<void> {
    this.#enter(['static'], 'writeP2mFrames');
    const { maxPfn, frames } = p2m;
    if (!Number.isInteger(maxPfn) || maxPfn < 1 || maxPfn > 2 ** 32) throw new RangeError(`maxPfn ${maxPfn} outside 1..2^32`);
    const expected = Math.floor((maxPfn - 1) / P2M_FRAME_ENTRIES) + 1;
    if (frames.length !== expected) {
      throw new RangeError(`${frames.length} P2M frames for maxPfn ${maxPfn}; expected ${expected} (${P2M_FRAME_ENTRIES} entries each)`);
    }
    const body = new Uint8Array(X86_PV_P2M_FRAMES.size + 8 * frames.length);
    X86_PV_P2M_FRAMES.encode({ startPfn: 0, endPfn: maxPfn - 1 }, body);
    const dv = new DataView(body.buffer);
    frames.forEach((f, i) => {
      const v = BigInt(f);
      if (v < 0n || v >= BigInt(maxPfn)) throw new RangeError(`P2M frame ${i} is pfn ${f}, not below maxPfn ${maxPfn}`);
      dv.setBigUint64(X86_PV_P2M_FRAMES.size + 8 * i, v, true);
    });
    await this.#guard(() => this.#record(LIBXC_REC.X86_PV_P2M_FRAMES, [body], true));
    this.#maxPfn = maxPfn;
    this.#phase = 'pages';
  }

  /** Write pages as PAGE_DATA records of at most 1024 pfns. Returns how many were written. */
  async writePages(pages: Iterable<PageInput> | AsyncIterable<PageInput>): Promise<number> {
    this.#enter(['pages', 'checkpointed'], 'writePages');
    this.#phase = 'pages';
    let batch: PageInput[] = [];
    let n = 0;
    await this.#guard(async () => {
      for await (const p of pages) {
        this.#checkPage(p);
        batch.push(p);
        if (batch.length === PAGE_DATA_MAX_BATCH) {
          await this.#pageBatch(batch);
          n += batch.length;
          batch = [];
        }
      }
      if (batch.length > 0) {
        await this.#pageBatch(batch);
        n += batch.length;
      }
    });
    return n;
  }

  /** TSC_INFO, SHARED_INFO and every vCPU's records: the end of a checkpoint (or of the stream). */
  async writeEndOfCheckpoint(tail: CheckpointTail): Promise<void> {
    this.#enter(['pages'], 'writeEndOfCheckpoint');
    const { tscInfo: t, sharedInfo, vcpus } = tail;
    if (!isU32(t.mode) || !isU32(t.khz) || !isU32(t.incarnation) || t.nsec < 0n || t.nsec >= 1n << 64n) {
      throw new RangeError(`TSC info out of range: ${JSON.stringify({ ...t, nsec: String(t.nsec) })}`);
    }
    if (sharedInfo.length !== PAGE_SIZE) throw new RangeError(`shared info is ${sharedInfo.length} bytes, expected ${PAGE_SIZE}`);
    if (vcpus.length === 0) throw new RangeError('no vCPUs to save');
    const seen = new Set<number>();
    for (const v of vcpus) {
      if (!isU32(v.id) || seen.has(v.id)) throw new RangeError(`vCPU id ${v.id} is not a distinct u32`);
      seen.add(v.id);
      if (v.context.length !== VCPU_CONTEXT_SIZE) {
        throw new RangeError(`vCPU ${v.id} context is ${v.context.length} bytes, expected ${VCPU_CONTEXT_SIZE}`);
      }
      if (v.extended !== undefined && v.extended.length > VCPU_EXTENDED_MAX) {
        throw new RangeError(`vCPU ${v.id} extended context is ${v.extended.length} bytes, at most ${VCPU_EXTENDED_MAX}`);
      }
      if (v.xsave !== undefined && v.xsave.length > 0 && v.xsave.length < VCPU_XSAVE_MIN) {
        throw new RangeError(`vCPU ${v.id} xsave context is ${v.xsave.length} bytes, at least ${VCPU_XSAVE_MIN}`);
      }
      if (v.msrs !== undefined && v.msrs.length % VCPU_MSR_ENTRY_SIZE !== 0) {
        throw new RangeError(`vCPU ${v.id} MSR blob is ${v.msrs.length} bytes, not a multiple of ${VCPU_MSR_ENTRY_SIZE}`);
      }
    }
    await this.#guard(async () => {
      await this.#record(LIBXC_REC.TSC_INFO, [
        TSC_INFO.encode({ mode: t.mode, khz: t.khz, nsec: t.nsec, incarnation: t.incarnation, res1: 0 }),
      ]);
      await this.#record(LIBXC_REC.SHARED_INFO, [sharedInfo]);
      for (const v of vcpus) {
        const hdr = X86_PV_VCPU_HEADER.encode({ vcpuId: v.id, res1: 0 });
        await this.#record(LIBXC_REC.X86_PV_VCPU_BASIC, [hdr, v.context]);
        // Empty blobs are elided, as the spec asks of data records.
        if (v.extended?.length) await this.#record(LIBXC_REC.X86_PV_VCPU_EXTENDED, [hdr, v.extended]);
        if (v.xsave?.length) await this.#record(LIBXC_REC.X86_PV_VCPU_XSAVE, [hdr, v.xsave]);
        if (v.msrs?.length) await this.#record(LIBXC_REC.X86_PV_VCPU_MSRS, [hdr, v.msrs]);
      }
    });
    this.#phase = 'tail';
  }

  /** A consistent state is complete: CHECKPOINT, and (above libxc) libxl CHECKPOINT_END. */
  async writeCheckpoint(): Promise<void> {
    this.#enter(['tail'], 'writeCheckpoint');
    await this.#guard(async () => {
      await this.#record(LIBXC_REC.CHECKPOINT, []);
      if (this.format !== 'libxc') await this.#record(LIBXL_REC.CHECKPOINT_END, []);
      await this.#flush();
    });
    this.#phase = 'checkpointed';
  }

  /** libxc END and libxl END, then everything staged goes to the sink. */
  async finish(): Promise<WriteSummary> {
    this.#enter(['tail', 'checkpointed'], 'finish');
    await this.#guard(async () => {
      await this.#record(LIBXC_REC.END, []);
      if (this.format !== 'libxc') await this.#record(LIBXL_REC.END, []);
      await this.#flush();
    });
    this.#phase = 'finished';
    return { bytes: this.#bytes, records: this.#records, pages: this.#pages };
  }

  // -------------------------------------------------------------------------

  #enter(allowed: readonly Phase[], call: string): void {
    if (!allowed.includes(this.#phase)) {
      throw new RangeError(`SaveStreamWriter.${call}() called in phase '${this.#phase}' (allowed: ${allowed.join(', ')})`);
    }
  }

  /** Run sink I/O; a failure leaves the writer unusable rather than half-consistent. */
  async #guard<T>(io: () => Promise<T>): Promise<T> {
    try {
      return await io();
    } catch (e) {
      this.#phase = 'failed';
      throw e;
    }
  }

  #checkPage(p: PageInput): void {
    if (!Number.isInteger(p.pfn) || p.pfn < 0 || p.pfn >= this.#maxPfn) {
      throw new RangeError(`page pfn ${p.pfn} is not below maxPfn ${this.#maxPfn}`);
    }
    if (!isKnownPageType(p.type)) throw new RangeError(`pfn ${p.pfn}: unknown page type ${p.type}`);
    if (pageTypeHasData(p.type)) {
      if (p.data === undefined || p.data.length !== PAGE_SIZE) {
        throw new RangeError(`pfn ${p.pfn} (${pageTypeName(p.type)}) needs ${PAGE_SIZE} bytes of data, got ${p.data?.length ?? 'none'}`);
      }
    } else if (p.data !== undefined) {
      throw new RangeError(`pfn ${p.pfn} (${pageTypeName(p.type)}) carries no data, but data was given`);
    }
  }

  async #pageBatch(batch: readonly PageInput[]): Promise<void> {
    const withData = batch.reduce((n, p) => n + (pageTypeHasData(p.type) ? 1 : 0), 0);
    const length = PAGE_DATA_HEADER.size + 8 * batch.length + PAGE_SIZE * withData;
    const rec = new Uint8Array(RECORD_HEADER.size + length);
    RECORD_HEADER.encode({ type: LIBXC_REC.PAGE_DATA, length }, rec);
    PAGE_DATA_HEADER.encode({ count: batch.length, res1: 0 }, rec, RECORD_HEADER.size);
    const dv = new DataView(rec.buffer);
    let word = RECORD_HEADER.size + PAGE_DATA_HEADER.size;
    let page = word + 8 * batch.length;
    for (const p of batch) {
      // type << 60 | pfn, as two little-endian halves (pfn < 2^32 here).
      dv.setUint32(word, p.pfn >>> 0, true);
      dv.setUint32(word + 4, ((p.type << 28) | Math.floor(p.pfn / 2 ** 32)) >>> 0, true);
      word += 8;
      if (p.data !== undefined) {
        rec.set(p.data, page);
        page += PAGE_SIZE;
      }
    }
    this.#records++;
    this.#pages += batch.length;
    await this.#put(rec, true);
  }

  /** One record: header, body parts, zero padding. */
  async #record(type: number, parts: readonly Uint8Array[], owned = false): Promise<void> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    this.#records++;
    await this.#put(RECORD_HEADER.encode({ type, length }), true);
    for (const p of parts) await this.#put(p, owned);
    const pad = padLength(length);
    if (pad > 0) await this.#put(new Uint8Array(pad), true);
  }

  /** Stage small pieces; large ones go straight out (copied unless the writer owns them). */
  async #put(bytes: Uint8Array, owned: boolean): Promise<void> {
    if (this.#stageLen + bytes.length <= STAGE_SIZE) {
      this.#stage.set(bytes, this.#stageLen);
      this.#stageLen += bytes.length;
      return;
    }
    await this.#flush();
    if (bytes.length <= STAGE_SIZE) {
      this.#stage.set(bytes, 0);
      this.#stageLen = bytes.length;
      return;
    }
    await this.#emit(owned ? bytes : bytes.slice());
  }

  async #flush(): Promise<void> {
    if (this.#stageLen === 0) return;
    const chunk = this.#stage.slice(0, this.#stageLen);
    this.#stageLen = 0;
    await this.#emit(chunk);
  }

  async #emit(chunk: Uint8Array): Promise<void> {
    await this.#sink(chunk);
    this.#bytes += chunk.length;
  }
}

function toChunkSink(sink: StreamSink): ChunkSink {
  if (typeof sink === 'function') return sink;
  return async (chunk: Uint8Array): Promise<void> => {
    if (sink.destroyed || sink.writableEnded) throw new Error('stream sink is closed');
    if (sink.write(chunk)) return;
    // Wait for 'drain', but not forever: a sink that closes instead fails the write.
    const ac = new AbortController();
    try {
      await Promise.race([
        once(sink, 'drain', { signal: ac.signal }),
        once(sink, 'close', { signal: ac.signal }).then(() => {
          throw new Error('stream sink closed while the writer waited for it to drain');
        }),
      ]);
    } finally {
      ac.abort();
    }
  };
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function checkMultiple(name: string, body: Uint8Array | undefined, unit: number): void {
  if (body !== undefined && (body.length === 0 || body.length % unit !== 0)) {
    throw new RangeError(`${name} body of ${body.length} bytes is not a non-zero multiple of ${unit}`);
  }
}

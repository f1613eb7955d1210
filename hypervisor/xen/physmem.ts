/*
 * Machine memory: 4 KiB frames in large ArrayBuffers, addressed by MFN.
 *
 * This is the ONE write path into machine memory. Guest writes (through the
 * MMU), device writes (grant copy, backend DMA) and toolstack writes
 * (restore) all end here, so this is where log-dirty tracking lives: when a
 * dirty hook is installed every written frame is reported to it.
 *
 * Frames live in chunks of 64 Ki frames (256 MiB) so that machines of
 * several GiB do not need one giant buffer.
 */
import type { ByteMem } from '../public/layout.js';
import { PAGE_SHIFT, PAGE_SIZE, type Mfn } from '../public/types.js';

const CHUNK_SHIFT = 16; // frames per chunk = 65536
const CHUNK_FRAMES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_FRAMES - 1;

/** Told about every frame written while log-dirty mode is on somewhere. */
export type DirtyHook = (mfn: number) => void;

export class MachineMemory {
  readonly nrFrames: number;
  private readonly bytes: Uint8Array[] = [];
  private readonly views: DataView[] = [];
  /** Installed by the frame table while any domain is in log-dirty mode. */
  dirtyHook: DirtyHook | null = null;

  constructor(totalBytes: number) {
    if (!Number.isInteger(totalBytes) || totalBytes < PAGE_SIZE || totalBytes % PAGE_SIZE !== 0) {
      throw new RangeError(`machine memory must be a positive multiple of ${PAGE_SIZE} bytes, not ${totalBytes}`);
    }
    this.nrFrames = totalBytes / PAGE_SIZE;
    for (let left = this.nrFrames; left > 0; left -= CHUNK_FRAMES) {
      const frames = Math.min(left, CHUNK_FRAMES);
      const buf = new ArrayBuffer(frames * PAGE_SIZE);
      this.bytes.push(new Uint8Array(buf));
      this.views.push(new DataView(buf));
    }
  }

  isValid(mfn: number): boolean {
    return Number.isInteger(mfn) && mfn >= 0 && mfn < this.nrFrames;
  }

  private check(mfn: number, off: number, len: number): void {
    if (!(mfn >= 0 && mfn < this.nrFrames) || !(off >= 0 && off + len <= PAGE_SIZE)) {
      throw new RangeError(`machine access mfn ${mfn} offset ${off}+${len} out of range`);
    }
  }

  /** DataView of the chunk holding `mfn` and the byte offset of the frame in it. */
  private dv(mfn: number): DataView {
    return this.views[mfn >>> CHUNK_SHIFT]!;
  }
  private base(mfn: number): number {
    return (mfn & CHUNK_MASK) << PAGE_SHIFT;
  }

  private dirty(mfn: number): void {
    const h = this.dirtyHook;
    if (h !== null) h(mfn);
  }

  // --- where frames live (for the MMU's software TLB) --------------------

  /**
   * The DataViews of the chunks, and where a frame sits in them: a TLB
   * keeps (chunk, byte offset) per entry so that a hit reads without a
   * bounds check. Reads only: writes go through the methods below, which
   * own dirty tracking.
   */
  chunkViews(): readonly DataView[] {
    return this.views;
  }
  chunkOf(mfn: number): number {
    return mfn >>> CHUNK_SHIFT;
  }
  offsetInChunk(mfn: number): number {
    return (mfn & CHUNK_MASK) << PAGE_SHIFT;
  }

  // --- reads -------------------------------------------------------------
  readU8(mfn: number, off: number): number { this.check(mfn, off, 1); return this.dv(mfn).getUint8(this.base(mfn) + off); }
  readU16(mfn: number, off: number): number { this.check(mfn, off, 2); return this.dv(mfn).getUint16(this.base(mfn) + off, true); }
  readU32(mfn: number, off: number): number { this.check(mfn, off, 4); return this.dv(mfn).getUint32(this.base(mfn) + off, true); }
  readU64(mfn: number, off: number): bigint { this.check(mfn, off, 8); return this.dv(mfn).getBigUint64(this.base(mfn) + off, true); }
  readI8(mfn: number, off: number): number { this.check(mfn, off, 1); return this.dv(mfn).getInt8(this.base(mfn) + off); }
  readI16(mfn: number, off: number): number { this.check(mfn, off, 2); return this.dv(mfn).getInt16(this.base(mfn) + off, true); }
  readI32(mfn: number, off: number): number { this.check(mfn, off, 4); return this.dv(mfn).getInt32(this.base(mfn) + off, true); }
  readI64(mfn: number, off: number): bigint { this.check(mfn, off, 8); return this.dv(mfn).getBigInt64(this.base(mfn) + off, true); }
  /**
   * A 64-bit entry as two 32-bit halves, for hot paths (page-table walks)
   * that must not allocate bigints. Returns the low half; the high half is
   * left in `lastHigh`.
   */
  readU64Lo(mfn: number, off: number): number {
    this.check(mfn, off, 8);
    const dv = this.dv(mfn);
    const b = this.base(mfn) + off;
    this.lastHigh = dv.getUint32(b + 4, true);
    return dv.getUint32(b, true);
  }
  lastHigh = 0;

  /** Copy bytes out of one frame. */
  readBytes(mfn: number, off: number, len: number): Uint8Array {
    this.check(mfn, off, len);
    const start = this.base(mfn) + off;
    return this.bytes[mfn >>> CHUNK_SHIFT]!.slice(start, start + len);
  }
  /** Copy bytes out of one frame into `dst` at `dstOff`. */
  readInto(mfn: number, off: number, dst: Uint8Array, dstOff: number, len: number): void {
    this.check(mfn, off, len);
    const start = this.base(mfn) + off;
    dst.set(this.bytes[mfn >>> CHUNK_SHIFT]!.subarray(start, start + len), dstOff);
  }
  /**
   * A read-only look at a frame without copying (saving a guest at memory
   * speed). The caller must not keep it past the current operation.
   */
  peekFrame(mfn: number): Uint8Array {
    this.check(mfn, 0, PAGE_SIZE);
    const start = this.base(mfn);
    return this.bytes[mfn >>> CHUNK_SHIFT]!.subarray(start, start + PAGE_SIZE);
  }

  // --- the write path ----------------------------------------------------
  writeU8(mfn: number, off: number, v: number): void { this.check(mfn, off, 1); this.dv(mfn).setUint8(this.base(mfn) + off, v); this.dirty(mfn); }
  writeU16(mfn: number, off: number, v: number): void { this.check(mfn, off, 2); this.dv(mfn).setUint16(this.base(mfn) + off, v, true); this.dirty(mfn); }
  writeU32(mfn: number, off: number, v: number): void { this.check(mfn, off, 4); this.dv(mfn).setUint32(this.base(mfn) + off, v, true); this.dirty(mfn); }
  writeU64(mfn: number, off: number, v: bigint): void { this.check(mfn, off, 8); this.dv(mfn).setBigUint64(this.base(mfn) + off, BigInt.asUintN(64, v), true); this.dirty(mfn); }
  writeI8(mfn: number, off: number, v: number): void { this.check(mfn, off, 1); this.dv(mfn).setInt8(this.base(mfn) + off, v); this.dirty(mfn); }
  writeI16(mfn: number, off: number, v: number): void { this.check(mfn, off, 2); this.dv(mfn).setInt16(this.base(mfn) + off, v, true); this.dirty(mfn); }
  writeI32(mfn: number, off: number, v: number): void { this.check(mfn, off, 4); this.dv(mfn).setInt32(this.base(mfn) + off, v, true); this.dirty(mfn); }
  writeI64(mfn: number, off: number, v: bigint): void { this.check(mfn, off, 8); this.dv(mfn).setBigInt64(this.base(mfn) + off, BigInt.asIntN(64, v), true); this.dirty(mfn); }
  /** 64-bit write from two 32-bit halves (page-table entries on hot paths). */
  writeU64Halves(mfn: number, off: number, lo: number, hi: number): void {
    this.check(mfn, off, 8);
    const dv = this.dv(mfn);
    const b = this.base(mfn) + off;
    dv.setUint32(b, lo >>> 0, true);
    dv.setUint32(b + 4, hi >>> 0, true);
    this.dirty(mfn);
  }

  writeBytes(mfn: number, off: number, data: Uint8Array): void {
    this.check(mfn, off, data.length);
    this.bytes[mfn >>> CHUNK_SHIFT]!.set(data, this.base(mfn) + off);
    this.dirty(mfn);
  }
  fill(mfn: number, off: number, len: number, byte: number): void {
    this.check(mfn, off, len);
    const start = this.base(mfn) + off;
    this.bytes[mfn >>> CHUNK_SHIFT]!.fill(byte, start, start + len);
    this.dirty(mfn);
  }
  zeroFrame(mfn: number): void {
    this.fill(mfn, 0, PAGE_SIZE, 0);
  }
  /** Copy `len` bytes between (possibly the same) frames. */
  copy(dstMfn: number, dstOff: number, srcMfn: number, srcOff: number, len: number): void {
    this.check(srcMfn, srcOff, len);
    this.check(dstMfn, dstOff, len);
    const src = this.bytes[srcMfn >>> CHUNK_SHIFT]!;
    const s = this.base(srcMfn) + srcOff;
    if (srcMfn === dstMfn) src.copyWithin(this.base(dstMfn) + dstOff, s, s + len);
    else this.bytes[dstMfn >>> CHUNK_SHIFT]!.set(src.subarray(s, s + len), this.base(dstMfn) + dstOff);
    this.dirty(dstMfn);
  }

  /**
   * A ByteMem over one frame (offsets 0..4095), for layout views of
   * hypervisor-owned structures such as shared_info or a grant frame.
   * Writes go through the write path.
   */
  frameMem(mfn: Mfn | number): ByteMem {
    this.check(mfn, 0, PAGE_SIZE);
    return new FrameMem(this, mfn);
  }
}

/** ByteMem adapter: one frame of machine memory. */
class FrameMem implements ByteMem {
  constructor(private readonly m: MachineMemory, private readonly mfn: number) {}
  getUint8(o: number): number { return this.m.readU8(this.mfn, o); }
  getInt8(o: number): number { return this.m.readI8(this.mfn, o); }
  getUint16(o: number): number { return this.m.readU16(this.mfn, o); }
  getInt16(o: number): number { return this.m.readI16(this.mfn, o); }
  getUint32(o: number): number { return this.m.readU32(this.mfn, o); }
  getInt32(o: number): number { return this.m.readI32(this.mfn, o); }
  getBigUint64(o: number): bigint { return this.m.readU64(this.mfn, o); }
  getBigInt64(o: number): bigint { return this.m.readI64(this.mfn, o); }
  setUint8(o: number, v: number): void { this.m.writeU8(this.mfn, o, v); }
  setInt8(o: number, v: number): void { this.m.writeI8(this.mfn, o, v); }
  setUint16(o: number, v: number): void { this.m.writeU16(this.mfn, o, v); }
  setInt16(o: number, v: number): void { this.m.writeI16(this.mfn, o, v); }
  setUint32(o: number, v: number): void { this.m.writeU32(this.mfn, o, v); }
  setInt32(o: number, v: number): void { this.m.writeI32(this.mfn, o, v); }
  setBigUint64(o: number, v: bigint): void { this.m.writeU64(this.mfn, o, v); }
  setBigInt64(o: number, v: bigint): void { this.m.writeI64(this.mfn, o, v); }
  readBytes(o: number, len: number): Uint8Array { return this.m.readBytes(this.mfn, o, len); }
  writeBytes(o: number, data: Uint8Array): void { this.m.writeBytes(this.mfn, o, data); }
}

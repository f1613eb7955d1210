/*
 * Guest virtual memory: the MMU as seen by code running on a vCPU.
 *
 * Every access goes VA -> software TLB (hit) or 4-level page walk from CR3
 * (miss) -> MFN -> offset into machine memory. Hits cost a Math.floor, a
 * mask and one typed-array compare; the TLB stays coherent because every
 * page-table change drops what it could have made stale and every CR3 load
 * flushes it (mm.ts), so a hit is always what a walk would find. Writes
 * always go through machine memory's write path (log-dirty sees them);
 * reads on a hit go straight to the frame's chunk.
 *
 * Permissions are the AND of RW along the walk (CR0.WP is always on under
 * Xen). US and NX are not checked: kernel text is TypeScript and there is
 * no user mode to keep out. A/D bits are not set by the walker.
 *
 * The hypervisor hole [HYPERVISOR_VIRT_START, HYPERVISOR_VIRT_END) is never
 * walked: the read-only M2P at MACH2PHYS_VIRT_START is served straight
 * from the frame table (8 bytes per MFN, M2P_INVALID as all ones), as Xen
 * maps it into every PV guest; the rest of the hole is not present.
 */
import { GuestPageFault, type GuestMem } from '../public/cpu.js';
import {
  HYPERVISOR_VIRT_START_VA, HYPERVISOR_VIRT_END_VA, MACH2PHYS_VIRT_START_VA, MACH2PHYS_VIRT_END_VA,
  _PAGE_PRESENT, _PAGE_RW,
} from '../public/arch-x86_64.js';
import { PAGE_SIZE, VA_BITS } from '../public/types.js';
import type { MachineMemory } from './physmem.js';
import { TLB_SIZE, type MmEnv, type VcpuMmu } from './mm.js';
import { pteMfn } from './mm-validate.js';

const PAGE_MASK = PAGE_SIZE - 1;
/** Multiplying by a power of two's inverse is exact, and cheaper than dividing. */
const INV_PAGE = 1 / PAGE_SIZE;
/** A local binding: an imported one is reloaded (and hole-checked) on every use. */
const TLB_MASK = TLB_SIZE - 1;
const VA_LIMIT = 2 ** VA_BITS;
const PF_PRESENT = GuestPageFault.PF_PRESENT;
const PF_WRITE = GuestPageFault.PF_WRITE;
/** translate() result for a page of the M2P window (no MFN backs it). */
const M2P_PAGE = -1;
/** Divisors selecting the L4, L3, L2, L1 index of a VA. */
const LEVEL_DIV = [2 ** 39, 2 ** 30, 2 ** 21, 2 ** 12] as const;

/** [va, va+len) is guest address space, clear of the hypervisor hole (Xen's guest_handle_okay). */
export function guestRangeOk(va: number, len: number): boolean {
  if (!Number.isInteger(va) || !Number.isInteger(len) || va < 0 || len < 0 || va + len > VA_LIMIT) return false;
  return va + len <= HYPERVISOR_VIRT_START_VA || va >= HYPERVISOR_VIRT_END_VA;
}

const notPresent = (va: number, write: boolean): GuestPageFault => new GuestPageFault(va, write ? PF_WRITE : 0);

/**
 * The L1 table and slot that map `va` in the tables rooted at `cr3Mfn`, or
 * undefined when an upper level is not present (update_va_mapping's
 * lookup; Xen's map_guest_l1e).
 */
export function lookupL1(memory: MachineMemory, cr3Mfn: number, va: number): { l1Mfn: number; index: number } | undefined {
  if (cr3Mfn === 0 || !(va >= 0 && va < VA_LIMIT) || (va >= HYPERVISOR_VIRT_START_VA && va < HYPERVISOR_VIRT_END_VA)) return undefined;
  let table = cr3Mfn;
  for (let level = 0; level < 3; level++) {
    const lo = memory.readU64Lo(table, (Math.floor(va / LEVEL_DIV[level]!) & 511) * 8);
    if ((lo & _PAGE_PRESENT) === 0) return undefined;
    table = pteMfn(lo, memory.lastHigh);
    if (!memory.isValid(table)) return undefined;
  }
  return { l1Mfn: table, index: Math.floor(va / PAGE_SIZE) & 511 };
}

/** GuestMem of one vCPU: the guest's `cpu.mem`, and its hypercalls' argument memory. */
export class GuestVaMem implements GuestMem {
  private readonly m: MachineMemory;
  private readonly m2p: Float64Array;
  private readonly tag: Float64Array;
  private readonly mfn: Int32Array;
  private readonly wr: Uint8Array;
  private readonly chunk: Uint8Array;
  private readonly base: Int32Array;
  private readonly views: readonly DataView[];
  /** Bytes of the M2P window that are mapped (whole pages covering every MFN). */
  private readonly m2pBytes: number;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** scratch.subarray(0, n) for the access sizes, made once. */
  private readonly scratchOf: Uint8Array[] = [];

  constructor(env: MmEnv, readonly vcpu: VcpuMmu) {
    this.m = env.memory;
    this.m2p = env.frames.m2p;
    this.tag = vcpu.tlbTag;
    this.mfn = vcpu.tlbMfn;
    this.wr = vcpu.tlbWritable;
    this.chunk = vcpu.tlbChunk;
    this.base = vcpu.tlbBase;
    this.views = env.memory.chunkViews();
    this.m2pBytes = Math.ceil((env.frames.nrFrames * 8) / PAGE_SIZE) * PAGE_SIZE;
    for (let n = 0; n <= 8; n++) this.scratchOf.push(this.scratch.subarray(0, n));
  }

  /**
   * MFN backing `va` for a read or a write (M2P_PAGE for the M2P window,
   * reads only). Throws GuestPageFault.
   */
  translate(va: number, write: boolean): number {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    if (this.tag[i] === vpn && (!write || this.wr[i] === 1)) return this.mfn[i]!;
    return this.miss(va, vpn, i, write);
  }

  private miss(va: number, vpn: number, i: number, write: boolean): number {
    if (!(va >= 0 && va < VA_LIMIT)) throw notPresent(va, write);
    if (va >= HYPERVISOR_VIRT_START_VA && va < HYPERVISOR_VIRT_END_VA) {
      const inM2p = va >= MACH2PHYS_VIRT_START_VA && va < MACH2PHYS_VIRT_END_VA && va - MACH2PHYS_VIRT_START_VA < this.m2pBytes;
      if (inM2p && !write) return M2P_PAGE;
      throw new GuestPageFault(va, inM2p ? PF_PRESENT | PF_WRITE : write ? PF_WRITE : 0);
    }
    const m = this.m;
    let table = this.vcpu.cr3Mfn;
    if (table === 0) throw notPresent(va, write);
    let rw = _PAGE_RW;
    for (let level = 0; level < 4; level++) {
      const lo = m.readU64Lo(table, (Math.floor(va / LEVEL_DIV[level]!) & 511) * 8);
      if ((lo & _PAGE_PRESENT) === 0) throw notPresent(va, write);
      rw &= lo;
      table = pteMfn(lo, m.lastHigh);
      // Validated tables only hold real frames; this guards the guard.
      if (!m.isValid(table)) throw notPresent(va, write);
    }
    this.tag[i] = vpn;
    this.mfn[i] = table;
    this.wr[i] = rw !== 0 ? 1 : 0;
    this.chunk[i] = m.chunkOf(table);
    this.base[i] = m.offsetInChunk(table);
    this.vcpu.tlbUsed = true;
    if (write && rw === 0) throw new GuestPageFault(va, PF_PRESENT | PF_WRITE);
    return table;
  }

  // --- slow paths: page crossings, the M2P window, big-endian, misses -----

  /** Copy `len` guest bytes at `va` into dst, page by page (a fault stops it part way, as a faulting copy would). */
  readInto(va: number, len: number, dst: Uint8Array, dstOff: number): void {
    let done = 0;
    while (done < len) {
      const a = va + done;
      const off = a & PAGE_MASK;
      const n = Math.min(len - done, PAGE_SIZE - off);
      const mfn = this.translate(a, false);
      if (mfn === M2P_PAGE) this.m2pInto(a, dst, dstOff + done, n);
      else this.m.readInto(mfn, off, dst, dstOff + done, n);
      done += n;
    }
  }

  /** M2P bytes at `va` (within one page): little-endian PFNs, all ones when invalid. */
  private m2pInto(va: number, dst: Uint8Array, dstOff: number, n: number): void {
    const rel = va - MACH2PHYS_VIRT_START_VA;
    for (let k = 0; k < n; k++) {
      const entry = Math.floor((rel + k) / 8);
      const byte = (rel + k) & 7;
      const pfn = entry < this.m2p.length ? this.m2p[entry]! : -1;
      let b: number;
      if (pfn < 0) b = 0xff;
      else if (byte < 4) b = ((pfn % 2 ** 32) >>> (byte * 8)) & 0xff;
      else b = (Math.floor(pfn / 2 ** 32) >>> ((byte - 4) * 8)) & 0xff;
      dst[dstOff + k] = b;
    }
  }

  private load(va: number, n: number): DataView {
    this.readInto(va, n, this.scratch, 0);
    return this.scratchView;
  }

  /** Write scratch[0..n) at `va`; every page is checked writable before any byte lands. */
  private store(va: number, n: number): void {
    this.checkWritable(va, n);
    this.writeChecked(va, this.scratchOf[n]!);
  }

  private checkWritable(va: number, len: number): void {
    if (len <= 0) return;
    const last = va + len - 1;
    for (let a = va; ; a = (a - (a & PAGE_MASK)) + PAGE_SIZE) {
      this.translate(a, true);
      if (Math.floor(a / PAGE_SIZE) === Math.floor(last / PAGE_SIZE)) break;
    }
  }

  private writeChecked(va: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const a = va + done;
      const off = a & PAGE_MASK;
      const n = Math.min(data.length - done, PAGE_SIZE - off);
      this.m.writeBytes(this.translate(a, true), off, data.subarray(done, done + n));
      done += n;
    }
  }

  // --- MemView -------------------------------------------------------------

  getUint8(va: number): number {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    if (this.tag[i] === vpn) return this.views[this.chunk[i]!]!.getUint8(this.base[i]! + (va & PAGE_MASK));
    return this.load(va, 1).getUint8(0);
  }
  getInt8(va: number): number {
    return (this.getUint8(va) << 24) >> 24;
  }
  getUint16(va: number, le?: boolean): number {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && off <= PAGE_SIZE - 2 && le === true) return this.views[this.chunk[i]!]!.getUint16(this.base[i]! + off, true);
    return this.load(va, 2).getUint16(0, le);
  }
  getInt16(va: number, le?: boolean): number {
    return (this.getUint16(va, le) << 16) >> 16;
  }
  getUint32(va: number, le?: boolean): number {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && off <= PAGE_SIZE - 4 && le === true) return this.views[this.chunk[i]!]!.getUint32(this.base[i]! + off, true);
    return this.load(va, 4).getUint32(0, le);
  }
  getInt32(va: number, le?: boolean): number {
    return this.getUint32(va, le) | 0;
  }
  getBigUint64(va: number, le?: boolean): bigint {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && off <= PAGE_SIZE - 8 && le === true) return this.views[this.chunk[i]!]!.getBigUint64(this.base[i]! + off, true);
    return this.load(va, 8).getBigUint64(0, le);
  }
  getBigInt64(va: number, le?: boolean): bigint {
    return BigInt.asIntN(64, this.getBigUint64(va, le));
  }

  setUint8(va: number, v: number): void {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    if (this.tag[i] === vpn && this.wr[i] === 1) {
      this.m.writeU8(this.mfn[i]!, va & PAGE_MASK, v);
      return;
    }
    this.scratchView.setUint8(0, v);
    this.store(va, 1);
  }
  setInt8(va: number, v: number): void {
    this.setUint8(va, v & 0xff);
  }
  setUint16(va: number, v: number, le?: boolean): void {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && this.wr[i] === 1 && off <= PAGE_SIZE - 2 && le === true) {
      this.m.writeU16(this.mfn[i]!, off, v);
      return;
    }
    this.scratchView.setUint16(0, v, le);
    this.store(va, 2);
  }
  setInt16(va: number, v: number, le?: boolean): void {
    this.setUint16(va, v & 0xffff, le);
  }
  setUint32(va: number, v: number, le?: boolean): void {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && this.wr[i] === 1 && off <= PAGE_SIZE - 4 && le === true) {
      this.m.writeU32(this.mfn[i]!, off, v);
      return;
    }
    this.scratchView.setUint32(0, v, le);
    this.store(va, 4);
  }
  setInt32(va: number, v: number, le?: boolean): void {
    this.setUint32(va, v >>> 0, le);
  }
  setBigUint64(va: number, v: bigint, le?: boolean): void {
    const vpn = Math.floor(va * INV_PAGE);
    const i = vpn & TLB_MASK;
    const off = va & PAGE_MASK;
    if (this.tag[i] === vpn && this.wr[i] === 1 && off <= PAGE_SIZE - 8 && le === true) {
      this.m.writeU64(this.mfn[i]!, off, v);
      return;
    }
    this.scratchView.setBigUint64(0, BigInt.asUintN(64, v), le);
    this.store(va, 8);
  }
  setBigInt64(va: number, v: bigint, le?: boolean): void {
    this.setBigUint64(va, BigInt.asUintN(64, v), le);
  }

  // --- bulk ----------------------------------------------------------------

  readBytes(va: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(va, len, out, 0);
    return out;
  }

  writeBytes(va: number, data: Uint8Array): void {
    this.checkWritable(va, data.length);
    this.writeChecked(va, data);
  }

  fill(va: number, len: number, byte: number): void {
    this.checkWritable(va, len);
    let done = 0;
    while (done < len) {
      const a = va + done;
      const off = a & PAGE_MASK;
      const n = Math.min(len - done, PAGE_SIZE - off);
      this.m.fill(this.translate(a, true), off, n, byte);
      done += n;
    }
  }

  copyWithin(dstVa: number, srcVa: number, len: number): void {
    // Read all first: memmove semantics whatever the overlap.
    const tmp = this.readBytes(srcVa, len);
    this.writeBytes(dstVa, tmp);
  }
}

/**
 * A flat host buffer posing as an address space: dom0 is host code with no
 * page tables, so its hypercall arguments live here, at addresses
 * [base, base + size). Anything outside faults like an unmapped page, so a
 * handler's -EFAULT path is the same for dom0 and for guests. `alloc` hands
 * out argument space; `reset` frees it all.
 */
export class HostArenaMem implements GuestMem {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private top = 0;

  constructor(size: number, readonly base = 0x10_0000) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  /** Address of `len` fresh zeroed bytes aligned to `align`. Throws when full (a host bug). */
  alloc(len: number, align = 8): number {
    const at = Math.ceil(this.top / align) * align;
    if (at + len > this.bytes.length) throw new Error(`host arena full: ${len} bytes wanted, ${this.bytes.length - at} left`);
    this.bytes.fill(0, at, at + len);
    this.top = at + len;
    return this.base + at;
  }

  /** Copy `data` into fresh arena space; returns its address. */
  put(data: Uint8Array, align = 8): number {
    const va = this.alloc(data.length, align);
    this.bytes.set(data, va - this.base);
    return va;
  }

  reset(): void {
    this.top = 0;
  }

  private at(va: number, n: number, write: boolean): number {
    const o = va - this.base;
    if (!(o >= 0 && o + n <= this.bytes.length) || !Number.isInteger(o)) throw notPresent(va, write);
    return o;
  }

  getUint8(va: number): number { return this.dv.getUint8(this.at(va, 1, false)); }
  getInt8(va: number): number { return this.dv.getInt8(this.at(va, 1, false)); }
  getUint16(va: number, le?: boolean): number { return this.dv.getUint16(this.at(va, 2, false), le); }
  getInt16(va: number, le?: boolean): number { return this.dv.getInt16(this.at(va, 2, false), le); }
  getUint32(va: number, le?: boolean): number { return this.dv.getUint32(this.at(va, 4, false), le); }
  getInt32(va: number, le?: boolean): number { return this.dv.getInt32(this.at(va, 4, false), le); }
  getBigUint64(va: number, le?: boolean): bigint { return this.dv.getBigUint64(this.at(va, 8, false), le); }
  getBigInt64(va: number, le?: boolean): bigint { return this.dv.getBigInt64(this.at(va, 8, false), le); }
  setUint8(va: number, v: number): void { this.dv.setUint8(this.at(va, 1, true), v); }
  setInt8(va: number, v: number): void { this.dv.setInt8(this.at(va, 1, true), v); }
  setUint16(va: number, v: number, le?: boolean): void { this.dv.setUint16(this.at(va, 2, true), v, le); }
  setInt16(va: number, v: number, le?: boolean): void { this.dv.setInt16(this.at(va, 2, true), v, le); }
  setUint32(va: number, v: number, le?: boolean): void { this.dv.setUint32(this.at(va, 4, true), v, le); }
  setInt32(va: number, v: number, le?: boolean): void { this.dv.setInt32(this.at(va, 4, true), v, le); }
  setBigUint64(va: number, v: bigint, le?: boolean): void { this.dv.setBigUint64(this.at(va, 8, true), v, le); }
  setBigInt64(va: number, v: bigint, le?: boolean): void { this.dv.setBigInt64(this.at(va, 8, true), v, le); }

  readBytes(va: number, len: number): Uint8Array {
    const o = this.at(va, len, false);
    return this.bytes.slice(o, o + len);
  }
  writeBytes(va: number, data: Uint8Array): void {
    this.bytes.set(data, this.at(va, data.length, true));
  }
  fill(va: number, len: number, byte: number): void {
    const o = this.at(va, len, true);
    this.bytes.fill(byte, o, o + len);
  }
  copyWithin(dstVa: number, srcVa: number, len: number): void {
    const s = this.at(srcVa, len, false);
    const d = this.at(dstVa, len, true);
    this.bytes.copyWithin(d, s, s + len);
  }
}

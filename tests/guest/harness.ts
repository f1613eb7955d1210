/*
 * A machine small enough to hold in one hand, for running kernel code
 * without the hypervisor.
 *
 *  - FlatMem: guest memory as one flat buffer, KERNBASE.. mapped to it
 *    (the direct map of PFN 0..n-1; no page tables).
 *  - FakeRegs: a register file.
 *  - FakeCpu: a GuestCpu whose hypercalls are recorded; CONSOLEIO_write
 *    appends to `console`, SCHEDOP_block sets `blocked`, SCHEDOP_shutdown
 *    records the reason.
 *  - Harness: boots the MI kernel (kern_init + uvm_page_physload), runs it
 *    entry by entry at `rip` the way the machine does, delivers clock ticks
 *    the way the timer upcall will, and snapshots/restores memory +
 *    registers to prove that nothing else carries state.
 */
import { GuestPageFault, type GuestCpu, type GuestMem, type RegisterFile, type RegName } from '../../hypervisor/public/cpu.js';
import { canonicalVa, vaFromCanonical, type Vaddr } from '../../hypervisor/public/types.js';
import { __HYPERVISOR_console_io, __HYPERVISOR_sched_op, CONSOLEIO_write } from '../../hypervisor/public/xen.js';
import { SCHEDOP_block, SCHEDOP_shutdown, sched_shutdown } from '../../hypervisor/public/sched.js';
import { KERNBASE, KERNEL_IMAGE_PAGES, MACHDEP_DATA_VA, PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { defineKernelImage, type LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { MI_KSYMTABS } from '../../sys/conf/files.js';
import { kernCpu, kcall, type KernCpu, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { kern_init } from '../../sys/kern/init_main.js';
import { uvm_page_physload } from '../../sys/uvm/uvm_page.js';

export class FlatMem implements GuestMem {
  readonly dv: DataView;
  constructor(readonly base: number, readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private o(va: number, len: number, write = false): number {
    const off = va - this.base;
    if (!(off >= 0 && off + len <= this.bytes.length)) throw new GuestPageFault(va, write ? GuestPageFault.PF_WRITE : 0);
    return off;
  }
  getUint8(va: number): number { return this.dv.getUint8(this.o(va, 1)); }
  getInt8(va: number): number { return this.dv.getInt8(this.o(va, 1)); }
  getUint16(va: number, le?: boolean): number { return this.dv.getUint16(this.o(va, 2), le); }
  getInt16(va: number, le?: boolean): number { return this.dv.getInt16(this.o(va, 2), le); }
  getUint32(va: number, le?: boolean): number { return this.dv.getUint32(this.o(va, 4), le); }
  getInt32(va: number, le?: boolean): number { return this.dv.getInt32(this.o(va, 4), le); }
  getBigUint64(va: number, le?: boolean): bigint { return this.dv.getBigUint64(this.o(va, 8), le); }
  getBigInt64(va: number, le?: boolean): bigint { return this.dv.getBigInt64(this.o(va, 8), le); }
  setUint8(va: number, v: number): void { this.dv.setUint8(this.o(va, 1, true), v); }
  setInt8(va: number, v: number): void { this.dv.setInt8(this.o(va, 1, true), v); }
  setUint16(va: number, v: number, le?: boolean): void { this.dv.setUint16(this.o(va, 2, true), v, le); }
  setInt16(va: number, v: number, le?: boolean): void { this.dv.setInt16(this.o(va, 2, true), v, le); }
  setUint32(va: number, v: number, le?: boolean): void { this.dv.setUint32(this.o(va, 4, true), v, le); }
  setInt32(va: number, v: number, le?: boolean): void { this.dv.setInt32(this.o(va, 4, true), v, le); }
  setBigUint64(va: number, v: bigint, le?: boolean): void { this.dv.setBigUint64(this.o(va, 8, true), v, le); }
  setBigInt64(va: number, v: bigint, le?: boolean): void { this.dv.setBigInt64(this.o(va, 8, true), v, le); }
  readBytes(va: number, len: number): Uint8Array {
    const off = this.o(va, len);
    return this.bytes.slice(off, off + len);
  }
  writeBytes(va: number, data: Uint8Array): void {
    this.bytes.set(data, this.o(va, data.length, true));
  }
  fill(va: number, len: number, byte: number): void {
    const off = this.o(va, len, true);
    this.bytes.fill(byte, off, off + len);
  }
  copyWithin(dstVa: number, srcVa: number, len: number): void {
    const src = this.o(srcVa, len);
    const dst = this.o(dstVa, len, true);
    this.bytes.copyWithin(dst, src, src + len);
  }
}

const REG_NAMES: readonly RegName[] = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'rip',
  'cs', 'rflags', 'rsp', 'ss', 'es', 'ds', 'fs', 'gs',
];

export class FakeRegs implements RegisterFile {
  readonly r = new Map<RegName, bigint>(REG_NAMES.map((n) => [n, 0n]));
  readonly cr: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  get(r: RegName): bigint { return this.r.get(r) ?? 0n; }
  set(r: RegName, v: bigint): void { this.r.set(r, BigInt.asUintN(64, v)); }
  getNum(r: RegName): number { return Number(BigInt.asIntN(64, this.get(r))); }
  setNum(r: RegName, v: number): void { this.set(r, BigInt(v)); }
  getVa(r: RegName): Vaddr {
    const va = vaFromCanonical(this.get(r));
    if (va === undefined) throw new Error(`${r} holds a non-canonical address`);
    return va;
  }
  setVa(r: RegName, va: Vaddr): void { this.set(r, canonicalVa(va)); }
  getCr(n: number): bigint { return this.cr[n] ?? 0n; }
  snapshot(): Record<string, string> {
    return Object.fromEntries(REG_NAMES.map((n) => [n, this.get(n).toString(16)]));
  }
}

export interface HypercallRecord {
  readonly nr: number;
  readonly args: readonly bigint[];
}

const ptrOf = (v: bigint): number => {
  const va = vaFromCanonical(v);
  if (va === undefined) throw new Error(`bad pointer argument ${v.toString(16)}`);
  return va;
};

export class FakeCpu implements GuestCpu {
  readonly vcpuId = 0;
  readonly regs = new FakeRegs();
  readonly hypercalls: HypercallRecord[] = [];
  /** Everything written with CONSOLEIO_write. */
  console = '';
  blocked = false;
  shutdownReason: number | undefined = undefined;
  tsc = 0n;
  constructor(readonly mem: FlatMem) {}

  hypercall(nr: number, ...raw: (number | bigint | undefined)[]): number {
    const args = raw.map((a) => (a === undefined ? 0n : BigInt.asUintN(64, BigInt(a))));
    const a = (i: number): bigint => args[i] ?? 0n;
    this.hypercalls.push({ nr, args });
    if (nr === __HYPERVISOR_console_io && a(0) === BigInt(CONSOLEIO_write)) {
      const bytes = this.mem.readBytes(ptrOf(a(2)), Number(a(1)));
      this.console += String.fromCharCode(...bytes);
    } else if (nr === __HYPERVISOR_sched_op && a(0) === BigInt(SCHEDOP_block)) {
      this.blocked = true;
    } else if (nr === __HYPERVISOR_sched_op && a(0) === BigInt(SCHEDOP_shutdown)) {
      this.shutdownReason = sched_shutdown.view(this.mem, ptrOf(a(1))).get('reason');
    }
    return 0;
  }

  rdtsc(): bigint {
    this.tsc += 1000n;
    return this.tsc;
  }
}

export const TEST_NOTES = Object.freeze({
  guestOs: 'NetBSD',
  xenVersion: 'xen-3.0',
  features: 'writable_page_tables',
  suspendCancel: true,
});

/** The MI kernel plus a test's own symbol tables. */
export function testImage(extra: readonly KSymTab[] = []): LinkedKernelImage {
  return defineKernelImage({ name: 'test', symbols: [...MI_KSYMTABS, ...extra], entry: 'mi_switch', notes: TEST_NOTES });
}

export interface BootOptions {
  readonly extra?: readonly KSymTab[];
  readonly image?: LinkedKernelImage;
  /** Total guest pages (image included). */
  readonly memPages?: number;
  readonly boothowto?: number;
  /** Skip uvm_page_physload (the test loads pages itself). */
  readonly noPhysload?: boolean;
}

export interface Snapshot {
  readonly bytes: Uint8Array;
  readonly regs: ReadonlyMap<RegName, bigint>;
  readonly blocked: boolean;
  readonly memPages: number;
}

export class Harness {
  /** The per-entry KernCpu view tests use to call kernel functions directly. */
  readonly cpu: KernCpu;
  constructor(readonly image: LinkedKernelImage, readonly fake: FakeCpu) {
    this.cpu = kernCpu(fake, image.text);
  }

  static boot(opts: BootOptions = {}): Harness {
    const image = opts.image ?? testImage(opts.extra);
    const pages = opts.memPages ?? KERNEL_IMAGE_PAGES + 256;
    const h = new Harness(image, new FakeCpu(new FlatMem(KERNBASE, new Uint8Array(pages * PAGE_SIZE))));
    kern_init(h.cpu, opts.boothowto ?? 0);
    if (opts.noPhysload !== true && pages > KERNEL_IMAGE_PAGES) uvm_page_physload(h.cpu, KERNEL_IMAGE_PAGES, pages);
    h.fake.regs.setVa('rip', h.addr('mi_switch'));
    return h;
  }

  get memPages(): number {
    return this.fake.mem.bytes.length / PAGE_SIZE;
  }

  addr(name: string): Vaddr {
    const a = this.image.text.addrOf(name);
    if (a === undefined) throw new Error(`no symbol ${name}`);
    return a;
  }

  /** Name of the symbol in rip. */
  get rip(): string {
    return this.image.symbolNames.get(this.fake.regs.getVa('rip')) ?? '?';
  }

  /** Call a kernel symbol directly, as kcall does. */
  call(name: string, ...args: number[]): number {
    return kcall(this.cpu, name, ...args);
  }

  /**
   * One entry, as the machine makes it: call the image's function at rip
   * with the bare GuestCpu. False (and nothing run) while blocked or dead.
   */
  step(): boolean {
    if (this.fake.blocked || this.fake.shutdownReason !== undefined) return false;
    const fn = this.image.symbols.get(this.fake.regs.getVa('rip'));
    if (fn === undefined) throw new Error(`rip ${this.fake.regs.get('rip').toString(16)} is not a kernel symbol`);
    fn(this.fake);
    return true;
  }

  /** Up to `n` entries; stops early when the vCPU blocks. Returns entries run. */
  run(n: number): number {
    let i = 0;
    while (i < n && this.step()) i++;
    return i;
  }

  /** Clock ticks, as the timer upcall will deliver them; an event unblocks the vCPU. */
  tick(n = 1): void {
    for (let i = 0; i < n; i++) {
      this.call('hardclock');
      this.fake.blocked = false;
    }
  }

  /** Entry if runnable, else a tick: one unit of simulated machine time. */
  drive(units: number): void {
    for (let i = 0; i < units; i++) if (!this.step()) this.tick();
  }

  snapshot(): Snapshot {
    return {
      bytes: this.fake.mem.bytes.slice(),
      regs: new Map(this.fake.regs.r),
      blocked: this.fake.blocked,
      memPages: this.memPages,
    };
  }

  /** A new machine holding exactly the snapshot's memory and registers. */
  static restore(image: LinkedKernelImage, s: Snapshot): Harness {
    const h = new Harness(image, new FakeCpu(new FlatMem(KERNBASE, s.bytes.slice())));
    for (const [r, v] of s.regs) h.fake.regs.set(r, v);
    h.fake.blocked = s.blocked;
    return h;
  }
}

/** Deterministic PRNG (xorshift32) for tests. */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/*
 * A log kept in guest memory (the machdep area, unused by MI code), for
 * test kernel symbols to record what they did without keeping JS state:
 * a u32 length then the bytes.
 */
const TLOG_VA = MACHDEP_DATA_VA;
const TLOG_MAX = 16 * PAGE_SIZE;

export function tlog(cpu: GuestCpu, s: string): void {
  const len = cpu.mem.getUint32(TLOG_VA, true);
  if (len + s.length > TLOG_MAX) throw new Error('test log full');
  for (let i = 0; i < s.length; i++) cpu.mem.setUint8(TLOG_VA + 4 + len + i, s.charCodeAt(i));
  cpu.mem.setUint32(TLOG_VA, len + s.length, true);
}

export function tlogRead(h: Harness): string {
  const len = h.fake.mem.getUint32(TLOG_VA, true);
  return String.fromCharCode(...h.fake.mem.readBytes(TLOG_VA + 4, len));
}

export function tlogClear(h: Harness): void {
  h.fake.mem.setUint32(TLOG_VA, 0, true);
}

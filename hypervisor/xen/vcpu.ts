/*
 * A virtual CPU: its register file and its scheduling state.
 *
 * The register file IS a `vcpu_guest_context_t` (5168 bytes, Xen's x86_64
 * layout), so getvcpucontext/setvcpucontext and the migration stream's
 * X86_PV_VCPU_BASIC record are plain byte copies. `VcpuRegs` reads and
 * writes `user_regs.*` and `ctrlreg[*]` inside that buffer at offsets taken
 * from the layout table, never typed twice.
 *
 * Run states follow Xen's runstates: offline (VPF_down), runnable, running,
 * blocked (SCHEDOP_block or SCHEDOP_poll). Pausing is per domain (domain.ts).
 */
import { vcpu_guest_context, cpu_user_regs, VGCF_online, VGCF_in_kernel } from '../public/arch-x86_64.js';
import type { RegName, RegisterFile } from '../public/cpu.js';
import type { ScalarType } from '../public/layout.js';
import type { ByteMem } from '../public/layout.js';
import type { Vaddr } from '../public/types.js';
import type { VcpuMmu } from './mm.js';
import { Timer } from './time.js';

export const VCPU_CONTEXT_SIZE = vcpu_guest_context.size;

const USER_REGS = vcpu_guest_context.offsetOf('user_regs');
const CTRLREG = vcpu_guest_context.offsetOf('ctrlreg');
const FLAGS = vcpu_guest_context.offsetOf('flags');
export const CTX_EVENT_CALLBACK = vcpu_guest_context.offsetOf('event_callback_eip');
export const CTX_FAILSAFE_CALLBACK = vcpu_guest_context.offsetOf('failsafe_callback_eip');
export const CTX_SYSCALL_CALLBACK = vcpu_guest_context.offsetOf('syscall_callback_eip');
export const CTX_TRAP_CTXT = vcpu_guest_context.offsetOf('trap_ctxt');
export const CTX_VM_ASSIST = vcpu_guest_context.offsetOf('vm_assist');
export const CTX_KERNEL_SS = vcpu_guest_context.offsetOf('kernel_ss');
export const CTX_KERNEL_SP = vcpu_guest_context.offsetOf('kernel_sp');
export const CTX_ERROR_CODE = USER_REGS + cpu_user_regs.offsetOf('error_code');
export const CTX_ENTRY_VECTOR = USER_REGS + cpu_user_regs.offsetOf('entry_vector');

/** Byte offset and width of each named register inside the context. */
const REG: Readonly<Record<RegName, { off: number; size: number }>> = (() => {
  const names: RegName[] = [
    'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8',
    'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'rip', 'cs', 'rflags', 'rsp', 'ss', 'es', 'ds', 'fs', 'gs',
  ];
  const out = {} as Record<RegName, { off: number; size: number }>;
  for (const n of names) {
    const t = cpu_user_regs.typeOf(n) as ScalarType;
    out[n] = { off: USER_REGS + cpu_user_regs.offsetOf(n), size: t.size };
  }
  return Object.freeze(out);
})();

const TWO32 = 2 ** 32;

/** RegisterFile over a vcpu_guest_context buffer. */
export class VcpuRegs implements RegisterFile {
  private readonly dv: DataView;
  /**
   * @param mmu when given, CR3 and the user CR3 (ctrlreg[3], ctrlreg[1])
   * are read from the MMU, which owns them: MMUEXT_NEW_BASEPTR changes
   * them without going through the context. `syncFromMmu` copies them in
   * before the context is handed out.
   */
  constructor(readonly ctx: Uint8Array, private readonly mmu?: VcpuMmu) {
    this.dv = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
  }

  get(r: RegName): bigint {
    const { off, size } = REG[r];
    return size === 8 ? this.dv.getBigUint64(off, true) : BigInt(this.dv.getUint16(off, true));
  }

  set(r: RegName, v: bigint): void {
    const { off, size } = REG[r];
    if (size === 8) this.dv.setBigUint64(off, BigInt.asUintN(64, v), true);
    else this.dv.setUint16(off, Number(BigInt.asUintN(16, v)), true);
  }

  getNum(r: RegName): number {
    const { off, size } = REG[r];
    if (size !== 8) return this.dv.getUint16(off, true);
    // Signed 64-bit as a number without allocating a bigint (hot path).
    return this.dv.getInt32(off + 4, true) * TWO32 + this.dv.getUint32(off, true);
  }

  setNum(r: RegName, v: number): void {
    if (!Number.isInteger(v)) throw new TypeError(`register ${r}: ${v} is not an integer`);
    const { off, size } = REG[r];
    if (size !== 8) {
      this.dv.setUint16(off, v & 0xffff, true);
      return;
    }
    if (!Number.isSafeInteger(v)) {
      this.set(r, BigInt(v));
      return;
    }
    const hi = Math.floor(v / TWO32);
    this.dv.setUint32(off, v - hi * TWO32, true);
    this.dv.setInt32(off + 4, hi | 0, true);
  }

  getVa(r: RegName): Vaddr {
    const { off } = REG[r];
    const lo = this.dv.getUint32(off, true);
    const hi = this.dv.getUint32(off + 4, true);
    if (hi < 0x8000) return (hi * TWO32 + lo) as Vaddr;
    if (hi >= 0xffff_8000) return ((hi & 0xffff) * TWO32 + lo) as Vaddr;
    throw new RangeError(`register ${r} holds a non-canonical address ${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`);
  }

  setVa(r: RegName, va: Vaddr): void {
    if (!Number.isInteger(va) || va < 0 || va >= 2 ** 48) throw new RangeError(`register ${r}: ${va} is not a 48-bit address`);
    const { off } = REG[r];
    let hi = Math.floor(va / TWO32);
    const lo = va - hi * TWO32;
    if (hi >= 0x8000) hi = (hi | 0xffff_0000) >>> 0; // sign-extend bit 47
    this.dv.setUint32(off, lo, true);
    this.dv.setUint32(off + 4, hi, true);
  }

  getCr(n: number): bigint {
    if (!(Number.isInteger(n) && n >= 0 && n < 8)) throw new RangeError(`no control register ${n}`);
    if (this.mmu !== undefined && n === 3) return BigInt(this.mmu.cr3Mfn) << 12n;
    if (this.mmu !== undefined && n === 1) return BigInt(this.mmu.userCr3Mfn) << 12n;
    return this.dv.getBigUint64(CTRLREG + 8 * n, true);
  }

  /** Copy the MMU-owned registers into the context bytes (getvcpucontext, save). */
  syncFromMmu(): void {
    if (this.mmu === undefined) return;
    this.dv.setBigUint64(CTRLREG + 8 * 3, BigInt(this.mmu.cr3Mfn) << 12n, true);
    this.dv.setBigUint64(CTRLREG + 8 * 1, BigInt(this.mmu.userCr3Mfn) << 12n, true);
  }

  /** CR3 as stored in the context bytes (what setvcpucontext was given). */
  ctxCr(n: number): bigint {
    return this.dv.getBigUint64(CTRLREG + 8 * n, true);
  }

  setCr(n: number, v: bigint): void {
    if (!(Number.isInteger(n) && n >= 0 && n < 8)) throw new RangeError(`no control register ${n}`);
    this.dv.setBigUint64(CTRLREG + 8 * n, BigInt.asUintN(64, v), true);
  }

  /** A context field outside user_regs (callbacks, flags) as a number. */
  getCtxU64(off: number): number {
    return this.dv.getUint32(off + 4, true) * TWO32 + this.dv.getUint32(off, true);
  }

  setCtxU64(off: number, v: bigint): void {
    this.dv.setBigUint64(off, BigInt.asUintN(64, v), true);
  }

  getCtxU32(off: number): number {
    return this.dv.getUint32(off, true);
  }

  setCtxU32(off: number, v: number): void {
    this.dv.setUint32(off, v >>> 0, true);
  }

  get flags(): number {
    return this.dv.getUint32(FLAGS, true);
  }

  set flags(v: number) {
    this.dv.setUint32(FLAGS, v >>> 0, true);
  }
}

export type RunState = 'offline' | 'runnable' | 'running' | 'blocked';

/** Why a blocked vCPU is blocked. */
export type BlockKind = 'none' | 'block' | 'poll';

export class Vcpu {
  readonly ctx = new Uint8Array(VCPU_CONTEXT_SIZE);
  readonly regs: VcpuRegs;
  /** VPF_down cleared: VCPUOP_up, or a context set with VGCF_online. */
  up = false;
  /** A context was loaded (setvcpucontext / VCPUOP_initialise). */
  initialised = false;
  blocked: BlockKind = 'none';
  /** vcpu_info moved out of shared_info by VCPUOP_register_vcpu_info. */
  vcpuInfoAt: { mfn: number; offset: number } | null = null;
  /** ns this vCPU has run (for getdomaininfo cpu_time / runstate). */
  cpuTimeNs = 0;
  /** Entries since the domain started (diagnostics, fairness tests). */
  entries = 0;
  /** Queued in the scheduler's run queue. */
  queued = false;
  /**
   * A descheduling hypercall (block, poll, yield, shutdown, down) ran in
   * the current entry: rax keeps that call's result, later calls in the
   * same entry do not overwrite it, and the continuation is not run.
   */
  descheduled = false;
  /** Inside the page-fault handler (a second fault is a double fault). */
  inFaultHandler = false;
  /** Where this vCPU's vcpu_info lives: its shared_info slot, or registered. */
  info: { mem: ByteMem; base: number } | null = null;
  /** VCPUOP_set_periodic_timer period (0: none). */
  periodNs = 0;
  readonly singleshot: Timer;
  readonly periodic: Timer;
  readonly pollTimer: Timer;

  constructor(
    readonly domid: number,
    readonly id: number,
    readonly mmu: VcpuMmu,
    onTimer: (v: Vcpu, which: 'singleshot' | 'periodic' | 'poll') => void,
  ) {
    this.regs = new VcpuRegs(this.ctx, mmu);
    this.singleshot = new Timer(() => onTimer(this, 'singleshot'));
    this.periodic = new Timer(() => onTimer(this, 'periodic'));
    this.pollTimer = new Timer(() => onTimer(this, 'poll'));
  }

  /**
   * Load a whole context (setvcpucontext): a byte copy, then Xen's side
   * effects. The caller has already installed the CR3 it names.
   */
  loadContext(bytes: Uint8Array): void {
    this.ctx.set(bytes.subarray(0, VCPU_CONTEXT_SIZE));
    this.initialised = true;
    this.up = (this.regs.flags & VGCF_online) !== 0;
  }

  /** The context as getvcpucontext returns it (flags and CR3s current). */
  exportContext(): Uint8Array {
    this.regs.syncFromMmu();
    // A PV kernel here never leaves kernel mode (no user space to return to).
    this.regs.flags = (this.regs.flags & ~VGCF_online) | (this.up ? VGCF_online : 0) | VGCF_in_kernel;
    return this.ctx.slice();
  }

  /** Whether the guest has asked to be woken by events (not polling). */
  get isBlocked(): boolean {
    return this.blocked !== 'none';
  }
}

/*
 * Entering a vCPU: the protocol of hypervisor/public/cpu.ts, on the
 * hypervisor side.
 *
 *  1. Time moves (simulated clock: one quantum per entry) and the vCPU's
 *     vcpu_time_info is refreshed, as Xen does on every context switch.
 *  2. If evtchn_upcall_pending is set, evtchn_upcall_mask clear and an
 *     event callback is registered, the callback runs with the mask set;
 *     the mask is cleared when it returns (the `iret`).
 *  3. Unless the callback descheduled the vCPU, the continuation at `rip`
 *     runs.
 *
 * Faults: `rip` (or a callback address) that is not a kernel symbol
 * crashes the domain. A GuestPageFault escaping guest code goes to the
 * guest's page-fault handler (trap_ctxt[14] from set_trap_table) with
 * vcpu_info.arch.cr2 = the address and rdi = the x86 error code (also
 * stored in cpu_user_regs.error_code, entry_vector = 14); rdi is restored
 * if the handler returns without moving rip, and the faulting step is
 * re-run at the next entry (the instruction restarts). Without a handler,
 * or on a fault inside the handler, the domain crashes. Any other
 * exception from guest code crashes that domain only, with its stack in
 * the machine log.
 */
import { GuestPageFault, type GuestCpu, type GuestMem, type KernelFn } from '../public/cpu.js';
import { trap_info, TI_IF } from '../public/arch-x86_64.js';
import { vcpu_info } from '../public/xen.js';
import { vaFromCanonical, canonicalVa, type Vaddr } from '../public/types.js';
import type { CallCtx } from './hcall.js';
import type { HypercallTable } from './dispatch.js';
import { CTX_EVENT_CALLBACK, CTX_TRAP_CTXT, CTX_ERROR_CODE, CTX_ENTRY_VECTOR, type Vcpu } from './vcpu.js';
import type { Clock } from './time.js';
import type { CrashInfo, Domain } from './domain.js';

const UPCALL_PENDING = vcpu_info.offsetOf('evtchn_upcall_pending');
const UPCALL_MASK = vcpu_info.offsetOf('evtchn_upcall_mask');
const CR2 = vcpu_info.offsetOf('arch.cr2');
const TRAP_PAGE_FAULT = 14;

/** What entering a vCPU needs from the machine. */
export interface EntryHost {
  readonly clock: Clock;
  /** Simulated ns each entry costs. */
  readonly quantumNs: number;
  readonly hypercalls: HypercallTable;
  crashDomain(d: Domain, info: CrashInfo): void;
  /** Refresh the vCPU's vcpu_time_info (Xen's update_vcpu_system_time). */
  updateVcpuTime(d: Domain, v: Vcpu): void;
  /** A hypervisor bug surfaced in a guest's hypercall. Returns rax for the caller. */
  hypercallBug(d: Domain, v: Vcpu, e: unknown, nr: number): number;
}

const VA_HALF = 2 ** 47;
const VA_LIMIT = 2 ** 48;
const CANONICAL_HIGH = 0xffff_0000_0000_0000n;

/**
 * A hypercall argument as the 64-bit register value. Numbers follow the
 * xenport convention for virtual addresses (48-bit, types.ts): one in
 * [2^47, 2^48) is an upper-half address and is sign-extended to its
 * canonical form, as it would be in a real register. A bigint is taken as
 * the raw 64-bit value (use one for large non-address values).
 */
function toArg(a: number | bigint | undefined): bigint {
  if (a === undefined) return 0n;
  if (typeof a === 'bigint') return a;
  if (a >= VA_HALF && a < VA_LIMIT) return BigInt(a) | CANONICAL_HIGH;
  return BigInt(a);
}

/** The GuestCpu handed to kernel text: one per vCPU, reused every entry. */
export class VcpuCpu implements GuestCpu {
  readonly vcpuId: number;
  readonly regs: Vcpu['regs'];
  readonly ctx: CallCtx;
  private readonly onBug: (e: unknown, nr: number) => number;

  constructor(private readonly host: EntryHost, private readonly d: Domain, private readonly v: Vcpu, readonly mem: GuestMem) {
    this.vcpuId = v.id;
    this.regs = v.regs;
    this.ctx = { domid: d.id, vcpuId: v.id, privileged: d.privileged, mem };
    this.onBug = (e, nr) => host.hypercallBug(d, v, e, nr);
  }

  hypercall(nr: number, a1?: number | bigint, a2?: number | bigint, a3?: number | bigint, a4?: number | bigint, a5?: number | bigint): number {
    const b1 = toArg(a1);
    const b2 = toArg(a2);
    const b3 = toArg(a3);
    const b4 = toArg(a4);
    const b5 = toArg(a5);
    const regs = this.regs;
    // The arguments are in registers when the guest traps into Xen, so the
    // context shows them (the suspend hypercall's rdx is the start_info MFN
    // the toolstack reads from the saved context).
    regs.set('rdi', b1);
    regs.set('rsi', b2);
    regs.set('rdx', b3);
    regs.set('r10', b4);
    regs.set('r8', b5);
    const wasDescheduled = this.v.descheduled;
    const rc = this.host.hypercalls.call(this.ctx, nr, b1, b2, b3, b4, b5, this.onBug);
    // After a descheduling call rax holds *its* result until the vCPU runs
    // again (the toolstack may change it, e.g. 1 for a cancelled suspend).
    if (!wasDescheduled) regs.setNum('rax', rc);
    return rc;
  }

  rdtsc(): bigint {
    return this.host.clock.tsc();
  }
}

function symbolAt(d: Domain, va: Vaddr): KernelFn | undefined {
  return d.kernel?.symbols.get(va);
}

function describeVa(d: Domain, va: number): string {
  const name = d.kernel?.symbolNames.get(va);
  return name === undefined ? `0x${va.toString(16)}` : `${name} (0x${va.toString(16)})`;
}

/** Run one entry of `v`. Never throws for anything the guest does. */
export function enterVcpu(host: EntryHost, d: Domain, v: Vcpu, cpu: VcpuCpu): void {
  v.entries++;
  if (host.clock.kind === 'simulated') {
    host.clock.advance(host.quantumNs);
    v.cpuTimeNs += host.quantumNs;
  }
  const started = host.clock.kind === 'realtime' ? host.clock.rawNs() : 0;
  v.descheduled = false;
  if (d.kernel === null) {
    host.crashDomain(d, { reason: `d${d.id} v${v.id} has no kernel image` });
    return;
  }
  host.updateVcpuTime(d, v);
  try {
    runEntry(host, d, v, cpu);
  } finally {
    if (host.clock.kind === 'realtime') v.cpuTimeNs += host.clock.rawNs() - started;
  }
}

function runEntry(host: EntryHost, d: Domain, v: Vcpu, cpu: VcpuCpu): void {
  const info = v.info;
  if (info !== null && info.mem.getUint8(info.base + UPCALL_PENDING) !== 0 && info.mem.getUint8(info.base + UPCALL_MASK) === 0) {
    const cb = v.regs.getCtxU64(CTX_EVENT_CALLBACK);
    if (cb !== 0) {
      info.mem.setUint8(info.base + UPCALL_MASK, 1);
      const ok = callGuest(host, d, v, cpu, canonicalCtxVa(v, CTX_EVENT_CALLBACK), 'event callback');
      // The callback's iret (or its frame unwound by a handled fault):
      // events unmasked again, else they would stay masked for good.
      if (d.crash === null) info.mem.setUint8(info.base + UPCALL_MASK, 0);
      if (!ok || v.descheduled || !d.canRun() || !v.up) return;
    }
  }
  let rip: Vaddr;
  try {
    rip = v.regs.getVa('rip');
  } catch {
    host.crashDomain(d, { reason: `d${d.id} v${v.id}: rip ${v.regs.get('rip').toString(16)} is not a canonical address` });
    return;
  }
  callGuest(host, d, v, cpu, rip, 'rip');
}

/** A callback address from the context as a VA (0 when non-canonical). */
function canonicalCtxVa(v: Vcpu, off: number): Vaddr {
  const dv = new DataView(v.ctx.buffer, v.ctx.byteOffset + off, 8);
  return vaFromCanonical(dv.getBigUint64(0, true)) ?? (0 as Vaddr);
}

/** Call kernel text at `va`. False when the domain crashed or a fault was delivered. */
function callGuest(host: EntryHost, d: Domain, v: Vcpu, cpu: VcpuCpu, va: Vaddr, what: string): boolean {
  const fn = symbolAt(d, va);
  if (fn === undefined) {
    host.crashDomain(d, { reason: `d${d.id} v${v.id}: ${what} 0x${va.toString(16)} is not a symbol of kernel ${d.kernel?.name ?? '(none)'}` });
    return false;
  }
  try {
    fn(cpu);
    return true;
  } catch (e) {
    if (e instanceof GuestPageFault) deliverPageFault(host, d, v, cpu, e, va);
    else guestException(host, d, v, e, va);
    return false;
  }
}

function guestException(host: EntryHost, d: Domain, v: Vcpu, e: unknown, va: number): void {
  const err = e instanceof Error ? e : new Error(String(e));
  host.crashDomain(d, {
    reason: `d${d.id} v${v.id}: ${err.name}: ${err.message} in ${describeVa(d, va)}`,
    ...(err.stack === undefined ? {} : { stack: err.stack }),
  });
}

/** Deliver a page fault to the guest's trap_ctxt[14] handler, or crash. */
function deliverPageFault(host: EntryHost, d: Domain, v: Vcpu, cpu: VcpuCpu, pf: GuestPageFault, where: number): void {
  const trapBase = CTX_TRAP_CTXT + TRAP_PAGE_FAULT * trap_info.size;
  const handlerVa = canonicalCtxVa(v, trapBase + trap_info.offsetOf('address'));
  const flags = v.ctx[trapBase + trap_info.offsetOf('flags')]!;
  const fault = `page fault at 0x${pf.va.toString(16)} (error code ${pf.errorCode}) in ${describeVa(d, where)}`;
  if (v.inFaultHandler) {
    host.crashDomain(d, { reason: `d${d.id} v${v.id}: ${fault} inside the page-fault handler` });
    return;
  }
  const handler = handlerVa === 0 ? undefined : symbolAt(d, handlerVa);
  const info = v.info;
  if (handler === undefined || info === null) {
    host.crashDomain(d, { reason: `d${d.id} v${v.id}: unhandled ${fault}${handlerVa === 0 ? '' : ` (handler 0x${handlerVa.toString(16)} is not a symbol)`}` });
    return;
  }
  info.mem.setBigUint64(info.base + CR2, canonicalVa(pf.va as Vaddr), true);
  v.regs.setCtxU32(CTX_ERROR_CODE, pf.errorCode);
  v.regs.setCtxU32(CTX_ENTRY_VECTOR, TRAP_PAGE_FAULT);
  const savedRdi = v.regs.get('rdi');
  const savedRip = v.regs.get('rip');
  const maskAt = info.base + UPCALL_MASK;
  const savedMask = info.mem.getUint8(maskAt);
  // TI_IF in the trap's flags: an interrupt gate, events masked on entry.
  if ((flags & TI_IF) !== 0) info.mem.setUint8(maskAt, 1);
  v.regs.setNum('rdi', pf.errorCode);
  v.inFaultHandler = true;
  try {
    handler(cpu);
  } catch (e) {
    if (e instanceof GuestPageFault) {
      host.crashDomain(d, { reason: `d${d.id} v${v.id}: ${fault}, then page fault at 0x${e.va.toString(16)} in the handler` });
    } else {
      guestException(host, d, v, e, handlerVa);
    }
    return;
  } finally {
    v.inFaultHandler = false;
  }
  if (v.regs.get('rip') === savedRip) v.regs.set('rdi', savedRdi);
  if ((flags & TI_IF) !== 0 && !d.dying) info.mem.setUint8(maskAt, savedMask);
}

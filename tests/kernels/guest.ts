/*
 * The guest side of the test kernels: the memory layout they share with
 * the in-test builder, and small hypercall wrappers. Everything here is a
 * function of the GuestCpu it is given (no JS state between entries).
 *
 * Guest RAM is direct-mapped at VIRT_BASE (PFN p at VIRT_BASE + p*4096).
 * PFN 0 is the mailbox:
 *   0x000  args[64]     u64, written by the test before the domain runs
 *   0x200  results[64]  u64, written by the kernel
 *   0x400  vars[64]     u64, the kernel's own globals (counters, state)
 *   0x800  scratch      hypercall argument structs (2 KiB)
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import type { StructLayout, StructView, Fields } from '../../hypervisor/public/layout.js';
import { vaddr, canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import {
  __HYPERVISOR_sched_op, __HYPERVISOR_event_channel_op, __HYPERVISOR_update_va_mapping, __HYPERVISOR_console_io,
  __HYPERVISOR_set_callbacks, __HYPERVISOR_set_timer_op, CONSOLEIO_write, UVMF_INVLPG, shared_info, vcpu_info,
} from '../../hypervisor/public/xen.js';
import { SCHEDOP_block, SCHEDOP_shutdown, SCHEDOP_yield, SCHEDOP_poll, sched_shutdown, sched_poll } from '../../hypervisor/public/sched.js';
import {
  EVTCHNOP_send, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq,
  evtchn_send, evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq,
} from '../../hypervisor/public/event_channel.js';
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY } from '../../hypervisor/public/arch-x86_64.js';
import { DOMID_SELF } from '../../hypervisor/public/xen.js';

/** Direct-map base of test guests (L4 slot 272, just above Xen's hole). */
export const VIRT_BASE = vaddr(0x8800_0000_0000);
export const MBOX = VIRT_BASE;
export const SCRATCH = MBOX + 0x800;

/* Argument slots the builder fills. */
export const A_SHINFO_MFN = 0;
/** A VA with an L1 slot but no mapping: where the kernel maps shared_info. */
export const A_SHINFO_VA = 1;
export const A_NR_PAGES = 2;
/** Further spare VAs with L1 slots and no mapping (for hostile mappings). */
export const A_SPARE_VA = 3;
/** MFN of the first L1 table (a page-table page of the guest's own). */
export const A_L1_MFN = 4;
/** MFN of the L4 table. */
export const A_L4_MFN = 5;
/** First argument slot free for a test's own parameters. */
export const A_PARAM = 8;

export const argVa = (i: number): number => MBOX + 8 * i;
export const resVa = (i: number): number => MBOX + 0x200 + 8 * i;
export const varVa = (i: number): number => MBOX + 0x400 + 8 * i;

export function arg(cpu: GuestCpu, i: number): number {
  return Number(cpu.mem.getBigUint64(argVa(i), true));
}
export function argBig(cpu: GuestCpu, i: number): bigint {
  return cpu.mem.getBigUint64(argVa(i), true);
}
export function setResult(cpu: GuestCpu, i: number, v: number | bigint): void {
  cpu.mem.setBigUint64(resVa(i), BigInt.asUintN(64, BigInt(v)), true);
}
export function getVar(cpu: GuestCpu, i: number): number {
  return Number(cpu.mem.getBigInt64(varVa(i), true));
}
export function setVar(cpu: GuestCpu, i: number, v: number | bigint): void {
  cpu.mem.setBigInt64(varVa(i), BigInt.asIntN(64, BigInt(v)), true);
}
export function incVar(cpu: GuestCpu, i: number): number {
  const n = getVar(cpu, i) + 1;
  setVar(cpu, i, n);
  return n;
}

/** A struct in the scratch area, zeroed. */
export function scratch<F extends Fields>(cpu: GuestCpu, l: StructLayout<F>, at = 0): StructView<F> {
  cpu.mem.fill(SCRATCH + at, l.size, 0);
  return l.view(cpu.mem, SCRATCH + at);
}

/** Continue at `sym` when next entered. */
export function jump(cpu: GuestCpu, sym: Vaddr): void {
  cpu.regs.setVa('rip', sym);
}

// --- hypercall wrappers (return rax) -------------------------------------

export function mapSharedInfo(cpu: GuestCpu): number {
  const pte = BigInt(arg(cpu, A_SHINFO_MFN)) * 4096n | BigInt(_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY);
  return cpu.hypercall(__HYPERVISOR_update_va_mapping, arg(cpu, A_SHINFO_VA), pte, UVMF_INVLPG);
}

export function vcpuInfoVa(cpu: GuestCpu): number {
  return arg(cpu, A_SHINFO_VA) + shared_info.offsetOf('vcpu_info') + cpu.vcpuId * vcpu_info.size;
}

export function setUpcallMask(cpu: GuestCpu, masked: boolean): void {
  cpu.mem.setUint8(vcpuInfoVa(cpu) + vcpu_info.offsetOf('evtchn_upcall_mask'), masked ? 1 : 0);
}

export function setCallbacks(cpu: GuestCpu, event: Vaddr, failsafe: Vaddr = event): number {
  return cpu.hypercall(__HYPERVISOR_set_callbacks, BigInt(event) | 0xffff_0000_0000_0000n, BigInt(failsafe) | 0xffff_0000_0000_0000n, 0);
}

export function block(cpu: GuestCpu): number {
  return cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
}

export function yieldCpu(cpu: GuestCpu): number {
  return cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
}

export function shutdown(cpu: GuestCpu, reason: number, rdx: number | bigint = 0): number {
  const s = scratch(cpu, sched_shutdown, 0x700);
  s.set('reason', reason);
  return cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, s.base, rdx);
}

export function poll(cpu: GuestCpu, ports: readonly number[], timeoutAbsNs: bigint): number {
  const list = SCRATCH + 0x600;
  ports.forEach((p, i) => cpu.mem.setUint32(list + 4 * i, p, true));
  const s = scratch(cpu, sched_poll, 0x700);
  s.set('ports', canonicalVa(list as Vaddr));
  s.set('nr_ports', ports.length);
  s.set('timeout', timeoutAbsNs);
  return cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_poll, s.base);
}

export function send(cpu: GuestCpu, port: number): number {
  const s = scratch(cpu, evtchn_send);
  s.set('port', port);
  return cpu.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, s.base);
}

/** A port of ours that `remote` may bind; the port or -errno. */
export function allocUnbound(cpu: GuestCpu, remote: number): number {
  const s = scratch(cpu, evtchn_alloc_unbound);
  s.set('dom', DOMID_SELF);
  s.set('remote_dom', remote);
  const rc = cpu.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, s.base);
  return rc < 0 ? rc : s.get('port');
}

export function bindInterdomain(cpu: GuestCpu, remote: number, remotePort: number): number {
  const s = scratch(cpu, evtchn_bind_interdomain);
  s.set('remote_dom', remote);
  s.set('remote_port', remotePort);
  const rc = cpu.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_interdomain, s.base);
  return rc < 0 ? rc : s.get('local_port');
}

export function bindVirq(cpu: GuestCpu, virq: number): number {
  const s = scratch(cpu, evtchn_bind_virq);
  s.set('virq', virq);
  s.set('vcpu', cpu.vcpuId);
  const rc = cpu.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, s.base);
  return rc < 0 ? rc : s.get('port');
}

export function setTimer(cpu: GuestCpu, absNs: bigint): number {
  return cpu.hypercall(__HYPERVISOR_set_timer_op, absNs);
}

export function print(cpu: GuestCpu, text: string): number {
  const bytes = Buffer.from(text, 'latin1');
  cpu.mem.writeBytes(SCRATCH, bytes);
  return cpu.hypercall(__HYPERVISOR_console_io, CONSOLEIO_write, bytes.length, SCRATCH);
}

/**
 * The upcall, 2-level: take the selector, then every pending unmasked port
 * of those words; clear each and return them.
 */
export function takeEvents(cpu: GuestCpu): number[] {
  const sh = arg(cpu, A_SHINFO_VA);
  const vi = vcpuInfoVa(cpu);
  const mem = cpu.mem;
  mem.setUint8(vi + vcpu_info.offsetOf('evtchn_upcall_pending'), 0);
  const selAt = vi + vcpu_info.offsetOf('evtchn_pending_sel');
  const sel = mem.getBigUint64(selAt, true);
  mem.setBigUint64(selAt, 0n, true);
  const pendAt = sh + shared_info.offsetOf('evtchn_pending');
  const maskAt = sh + shared_info.offsetOf('evtchn_mask');
  const out: number[] = [];
  for (let w = 0; w < 64; w++) {
    if (((sel >> BigInt(w)) & 1n) === 0n) continue;
    const pending = mem.getBigUint64(pendAt + 8 * w, true);
    const ready = pending & ~mem.getBigUint64(maskAt + 8 * w, true);
    if (ready === 0n) continue;
    mem.setBigUint64(pendAt + 8 * w, pending & ~ready, true);
    for (let b = 0; b < 64; b++) if (((ready >> BigInt(b)) & 1n) !== 0n) out.push(w * 64 + b);
  }
  return out;
}

/** Read system time the Xen way from this vCPU's vcpu_time_info. */
export function readClock(cpu: GuestCpu): bigint {
  const t = vcpuInfoVa(cpu) + vcpu_info.offsetOf('time');
  const mem = cpu.mem;
  for (;;) {
    const version = mem.getUint32(t, true);
    const stamp = mem.getBigUint64(t + 8, true);
    const sys = mem.getBigUint64(t + 16, true);
    const mul = BigInt(mem.getUint32(t + 24, true));
    const shift = mem.getInt8(t + 28);
    const delta = cpu.rdtsc() - stamp;
    const scaled = shift < 0 ? delta >> BigInt(-shift) : delta << BigInt(shift);
    const now = sys + ((scaled * mul) >> 32n);
    if ((version & 1) === 0 && mem.getUint32(t, true) === version) return now;
  }
}

/*
 * A hostile guest: each symbol is one attack (the test enters the domain
 * at it). Each records what the hypervisor answered in the results and
 * powers off, so the test can check every refusal; the misbehaving ones
 * (throw, bad rip, fault) are expected to crash only their own domain.
 *
 * Parameters arrive in the mailbox from A_PARAM on.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import {
  __HYPERVISOR_update_va_mapping, __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_event_channel_op,
  __HYPERVISOR_sched_op, __HYPERVISOR_grant_table_op, __HYPERVISOR_memory_op, __HYPERVISOR_console_io,
  __HYPERVISOR_xen_version, __HYPERVISOR_vcpu_op, __HYPERVISOR_set_trap_table, __HYPERVISOR_multicall,
  __HYPERVISOR_domctl, __HYPERVISOR_set_callbacks, UVMF_INVLPG, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, DOMID_SELF,
  CONSOLEIO_write, XENVER_extraversion, mmuext_op, mmu_update, vcpu_info,
} from '../../hypervisor/public/xen.js';
import { SHUTDOWN_poweroff, SCHEDOP_shutdown, SCHEDOP_poll } from '../../hypervisor/public/sched.js';
import { EVTCHNOP_send } from '../../hypervisor/public/event_channel.js';
import {
  GNTTABOP_setup_table, GNTTABOP_map_grant_ref, GNTTABOP_copy, GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access,
  GTF_readonly, GNTCOPY_dest_gref, gnttab_setup_table, gnttab_map_grant_ref, gnttab_copy, grant_entry_v1,
} from '../../hypervisor/public/grant_table.js';
import { XENMEM_current_reservation } from '../../hypervisor/public/memory.js';
import { VCPUOP_register_vcpu_info } from '../../hypervisor/public/vcpu.js';
import { trap_info, _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY } from '../../hypervisor/public/arch-x86_64.js';
import { defineKernel, type TestKernel } from './image.js';
import {
  VIRT_BASE, A_PARAM, A_SPARE_VA, A_L1_MFN, A_L4_MFN, A_NR_PAGES, SCRATCH, arg, argBig, setResult, incVar,
  mapSharedInfo, shutdown, send, allocUnbound, bindInterdomain, scratch, jump, vcpuInfoVa,
} from './guest.js';

const PTE_RW = BigInt(_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY);
const PTE_RO = BigInt(_PAGE_PRESENT | _PAGE_ACCESSED);
/** An address inside the direct-map L4 slot but far past any guest's RAM: not present. */
export const UNMAPPED_VA = VIRT_BASE + 0x2000_0000;
const GRANT_REF = 8;

const done = (cpu: GuestCpu): void => {
  shutdown(cpu, SHUTDOWN_poweroff);
};

function mapAt(cpu: GuestCpu, va: number, mfn: bigint, flags: bigint): number {
  return cpu.hypercall(__HYPERVISOR_update_va_mapping, va, mfn * 4096n | flags, UVMF_INVLPG);
}

function mmuext(cpu: GuestCpu, cmd: number, mfn: bigint): number {
  const op = scratch(cpu, mmuext_op);
  op.set('cmd', cmd);
  op.sub('arg1').set('mfn', mfn);
  return cpu.hypercall(__HYPERVISOR_mmuext_op, op.base, 1, 0, DOMID_SELF);
}

/** The guest's grant table frame 0 mapped at the second spare VA; returns that VA. */
function grantTable(cpu: GuestCpu): number {
  const list = SCRATCH + 0x400;
  const st = scratch(cpu, gnttab_setup_table);
  st.set('dom', DOMID_SELF);
  st.set('nr_frames', 1);
  st.set('frame_list', canonicalVa(list as Vaddr));
  cpu.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, st.base, 1);
  const va = arg(cpu, A_SPARE_VA) + 4096;
  setResult(cpu, 9, mapAt(cpu, va, cpu.mem.getBigUint64(list, true), PTE_RW));
  return va;
}

function mapGrant(cpu: GuestCpu, dom: number, ref: number, flags: number, at: number): { status: number; handle: number } {
  const op = scratch(cpu, gnttab_map_grant_ref);
  op.set('host_addr', canonicalVa(at as Vaddr));
  op.set('flags', flags);
  op.set('ref', ref);
  op.set('dom', dom);
  cpu.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, op.base, 1);
  return { status: op.get('status'), handle: op.get('handle') };
}

export const hostileKernel: TestKernel = defineKernel({
  name: 'hostile',
  virtBase: VIRT_BASE,
  imageSize: 4096,
  textBase: 0x8000_7000_0000,
  entry: 'mapForeign',
  symbols: {
    /** A_PARAM: an MFN of another domain. Map it writable, then read-only. */
    mapForeign(cpu: GuestCpu) {
      const spare = arg(cpu, A_SPARE_VA);
      setResult(cpu, 0, mapAt(cpu, spare, argBig(cpu, A_PARAM), PTE_RW));
      setResult(cpu, 1, mapAt(cpu, spare, argBig(cpu, A_PARAM), PTE_RO));
      // The same through mmu_update on the L1 slot of the spare VA.
      const req = scratch(cpu, mmu_update);
      req.set('ptr', argBig(cpu, A_L1_MFN) * 4096n + BigInt((arg(cpu, A_NR_PAGES) + 1) * 8));
      req.set('val', argBig(cpu, A_PARAM) * 4096n | PTE_RO);
      setResult(cpu, 2, cpu.hypercall(__HYPERVISOR_mmu_update, req.base, 1, 0, DOMID_SELF));
      done(cpu);
    },
    /** Map our own L1 and L4 writable (update_va_mapping and mmu_update). */
    mapOwnPtWritable(cpu: GuestCpu) {
      const spare = arg(cpu, A_SPARE_VA);
      setResult(cpu, 0, mapAt(cpu, spare, argBig(cpu, A_L1_MFN), PTE_RW));
      const req = scratch(cpu, mmu_update);
      req.set('ptr', argBig(cpu, A_L1_MFN) * 4096n + BigInt((arg(cpu, A_NR_PAGES) + 1) * 8));
      req.set('val', argBig(cpu, A_L4_MFN) * 4096n | PTE_RW);
      setResult(cpu, 1, cpu.hypercall(__HYPERVISOR_mmu_update, req.base, 1, 0, DOMID_SELF));
      // Read-only is fine: the kernel may look at its tables.
      setResult(cpu, 2, mapAt(cpu, spare, argBig(cpu, A_L1_MFN), PTE_RO));
      // Writing through that read-only mapping faults (no handler here: crash).
      done(cpu);
    },
    /**
     * A_PARAM = MFN of PFN 5, A_PARAM+1 = a foreign MFN. Turn PFN 5 into a
     * table of garbage, unmap it, and try to pin it.
     */
    pinGarbage(cpu: GuestCpu) {
      const va5 = VIRT_BASE + 5 * 4096;
      cpu.mem.setBigUint64(va5, argBig(cpu, A_PARAM + 1) * 4096n | PTE_RW, true);
      setResult(cpu, 0, mmuext(cpu, MMUEXT_PIN_L1_TABLE, argBig(cpu, A_PARAM)));
      setResult(cpu, 1, mapAt(cpu, va5, 0n, 0n));
      setResult(cpu, 2, mmuext(cpu, MMUEXT_PIN_L1_TABLE, argBig(cpu, A_PARAM)));
      setResult(cpu, 3, mmuext(cpu, MMUEXT_PIN_L4_TABLE, argBig(cpu, A_PARAM)));
      done(cpu);
    },
    /** Granter: A_PARAM = grantee, A_PARAM+1 = 1 for a read-only grant. Writes ref 8 for our PFN 6. */
    grantOffer(cpu: GuestCpu) {
      const gt = grantTable(cpu);
      const e = grant_entry_v1.view(cpu.mem, gt + GRANT_REF * grant_entry_v1.size);
      e.set('domid', arg(cpu, A_PARAM));
      e.set('frame', arg(cpu, A_PARAM + 2));
      e.set('flags', GTF_permit_access | (arg(cpu, A_PARAM + 1) !== 0 ? GTF_readonly : 0));
      cpu.mem.setUint32(VIRT_BASE + 6 * 4096, 0x600d_f00d, true);
      done(cpu);
    },
    /**
     * Grantee: A_PARAM = granter. Map ref 8 writable (result 0), then
     * read-only (1), read through it (2), copy into it (3), then write
     * through the read-only mapping: the page-fault handler records
     * cr2 (4) and the error code (5).
     */
    grantTake(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      grantTable(cpu);
      const at = arg(cpu, A_SPARE_VA) + 2 * 4096;
      setResult(cpu, 0, mapGrant(cpu, arg(cpu, A_PARAM), GRANT_REF, GNTMAP_host_map, at).status);
      const ro = mapGrant(cpu, arg(cpu, A_PARAM), GRANT_REF, GNTMAP_host_map | GNTMAP_readonly, at);
      setResult(cpu, 1, ro.status);
      setResult(cpu, 2, ro.status === 0 ? cpu.mem.getUint32(at, true) : 0);
      const cp = scratch(cpu, gnttab_copy);
      cp.sub('source').sub('u').set('gmfn', argBig(cpu, A_PARAM + 1));
      cp.sub('source').set('domid', DOMID_SELF);
      cp.sub('dest').sub('u').set('ref', GRANT_REF);
      cp.sub('dest').set('domid', arg(cpu, A_PARAM));
      cp.set('len', 8);
      cp.set('flags', GNTCOPY_dest_gref);
      cpu.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, cp.base, 1);
      setResult(cpu, 3, cp.get('status'));
      installFaultHandler(cpu, hostileKernel.addr.onPageFault!);
      jump(cpu, hostileKernel.addr.afterFault!);
      cpu.mem.setUint32(at, 0xbad, true);
    },
    afterFault(cpu: GuestCpu) {
      done(cpu);
    },
    onPageFault(cpu: GuestCpu) {
      setResult(cpu, 4, cpu.mem.getBigUint64(vcpuInfoVa(cpu) + vcpu_info.offsetOf('arch.cr2'), true));
      setResult(cpu, 5, cpu.regs.getNum('rdi'));
      incVar(cpu, 7);
    },
    /** A_PARAM: a port number we never allocated (another domain's, maybe). */
    sendNotOwned(cpu: GuestCpu) {
      setResult(cpu, 0, send(cpu, arg(cpu, A_PARAM)));
      setResult(cpu, 1, send(cpu, 4095));
      setResult(cpu, 2, send(cpu, 1_000_000));
      done(cpu);
    },
    /** A_PARAM = a domain, A_PARAM+1 = its unbound port offered to someone else. */
    bindNotOffered(cpu: GuestCpu) {
      setResult(cpu, 0, bindInterdomain(cpu, arg(cpu, A_PARAM), arg(cpu, A_PARAM + 1)));
      setResult(cpu, 1, bindInterdomain(cpu, DOMID_SELF, arg(cpu, A_PARAM + 1)));
      done(cpu);
    },
    /** Allocate ports until refused: result 0 = how many, 1 = the refusal. */
    exhaustPorts(cpu: GuestCpu) {
      let n = 0;
      let rc = 0;
      for (;;) {
        rc = allocUnbound(cpu, 0);
        if (rc < 0) break;
        n++;
      }
      setResult(cpu, 0, n);
      setResult(cpu, 1, rc);
      done(cpu);
    },
    /** Every pointer-taking hypercall with a pointer to nothing. */
    garbagePointers(cpu: GuestCpu) {
      const bad = UNMAPPED_VA;
      const calls: [number, (number | bigint)[]][] = [
        [__HYPERVISOR_event_channel_op, [EVTCHNOP_send, bad]],
        [__HYPERVISOR_sched_op, [SCHEDOP_shutdown, bad]],
        [__HYPERVISOR_sched_op, [SCHEDOP_poll, bad]],
        [__HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, bad, 1]],
        [__HYPERVISOR_memory_op, [XENMEM_current_reservation, bad]],
        [__HYPERVISOR_console_io, [CONSOLEIO_write, 16, bad]],
        [__HYPERVISOR_xen_version, [XENVER_extraversion, bad]],
        [__HYPERVISOR_mmu_update, [bad, 1, 0, DOMID_SELF]],
        [__HYPERVISOR_mmuext_op, [bad, 1, 0, DOMID_SELF]],
        [__HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, bad]],
        [__HYPERVISOR_set_trap_table, [bad]],
        [__HYPERVISOR_multicall, [bad, 1]],
        // Non-canonical and hypervisor-hole pointers.
        [__HYPERVISOR_event_channel_op, [EVTCHNOP_send, 0x0000_8000_0000_0000n]],
        [__HYPERVISOR_event_channel_op, [EVTCHNOP_send, 0xffff_8100_0000_0000n]],
      ];
      calls.forEach(([nr, args], i) => setResult(cpu, i, cpu.hypercall(nr, ...args)));
      setResult(cpu, 20, cpu.hypercall(__HYPERVISOR_domctl, SCRATCH));
      setResult(cpu, 21, cpu.hypercall(__HYPERVISOR_set_callbacks, 0x0000_8000_0000_0000n, 0, 0));
      setResult(cpu, 22, cpu.hypercall(63));
      done(cpu);
    },
    throws(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      throw new TypeError('guest kernel bug: undefined is not a function');
    },
    badRip(cpu: GuestCpu) {
      cpu.regs.setVa('rip', 0x1234 as Vaddr);
    },
    /** Read memory that is not mapped, with no page-fault handler. */
    faults(cpu: GuestCpu) {
      cpu.mem.getUint32(UNMAPPED_VA, true);
    },
    /** Same with a handler: it moves rip on to afterFault. */
    faultsHandled(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      installFaultHandler(cpu, hostileKernel.addr.onPageFaultMove!);
      jump(cpu, hostileKernel.addr.retryFault!);
    },
    retryFault(cpu: GuestCpu) {
      // First entry faults; the handler moves rip on, so this never repeats.
      cpu.mem.getUint32(UNMAPPED_VA, true);
      setResult(cpu, 6, 1);
    },
    onPageFaultMove(cpu: GuestCpu) {
      setResult(cpu, 4, cpu.mem.getBigUint64(vcpuInfoVa(cpu) + vcpu_info.offsetOf('arch.cr2'), true));
      setResult(cpu, 5, cpu.regs.getNum('rdi'));
      incVar(cpu, 7);
      jump(cpu, hostileKernel.addr.afterFault!);
    },
  },
});

function installFaultHandler(cpu: GuestCpu, handler: Vaddr): void {
  const t = scratch(cpu, trap_info, 0x100);
  t.set('vector', 14);
  t.set('cs', 0xe033);
  t.set('address', canonicalVa(handler));
  // The terminating entry (address 0) follows, already zero.
  cpu.mem.fill(t.base + trap_info.size, trap_info.size, 0);
  cpu.hypercall(__HYPERVISOR_set_trap_table, t.base);
}


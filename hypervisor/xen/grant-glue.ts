/*
 * What the grant tables need from the core and the MMU (GnttabEnv):
 * typed references on granted frames, freeing orphaned frames, and host
 * mappings (GNTMAP_host_map) installed in the mapper's page tables.
 *
 * A host mapping is an ordinary checked L1 update at `host_addr` in the
 * mapping vCPU's current tables: the MMU accepts the foreign frame because
 * the grant table has already counted the mapping (isForeignMappable).
 * dom0 is host code without page tables: its host mappings need no PTE,
 * it reaches the frame through the grant handle.
 */
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_USER } from '../public/arch-x86_64.js';
import { GNTMAP_readonly, GNTST_general_error, GNTST_okay, GNTST_bad_virt_addr } from '../public/grant_table.js';
import { PageType } from './frametable.js';
import { getPageAndType, putPageAndType, releaseIfUnreferenced } from './mm.js';
import { setVaMapping } from './mm-hypercalls.js';
import { lookupL1 } from './mm-vamem.js';
import { pteMfn } from './mm-validate.js';
import type { GnttabEnv } from './gnttab.js';
import type { Machine } from './machine.js';

function hostVa(addr: bigint): number | undefined {
  const u = BigInt.asUintN(64, addr);
  const high = u >> 47n;
  if (high !== 0n && high !== 0x1ffffn) return undefined;
  return Number(u & 0xffff_ffff_ffffn);
}

export function gnttabEnvFor(m: Machine): GnttabEnv {
  return {
    releaseFrameIfUnused: (mfn) => {
      releaseIfUnreferenced(m.mmEnv, mfn);
    },
    getPageWritable: (mfn, owner) => getPageAndType(m.mmEnv, mfn, owner, PageType.Writable) === 0,
    putPageWritable: (mfn) => putPageAndType(m.mmEnv, mfn),
    createHostMapping: (domid, vcpu, hostAddr, mfn, flags) => {
      const d = m.domain(domid);
      if (d === undefined) return GNTST_general_error;
      // Host code (dom0) has no page tables: the mapping is only a record,
      // named by its address. Address 0 is what unmap reads as "no host
      // mapping", so such a map could never be removed: refuse it.
      if (d.isHost) return hostAddr === 0n ? GNTST_bad_virt_addr : GNTST_okay;
      const va = hostVa(hostAddr);
      if (va === undefined || va % 4096 !== 0) return GNTST_bad_virt_addr;
      const vm = d.mem.vcpu(vcpu);
      const ro = (flags & GNTMAP_readonly) !== 0;
      const lo = ((mfn % 0x10_0000) * 4096 + (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (ro ? 0 : _PAGE_RW | _PAGE_DIRTY))) >>> 0;
      const hi = Math.floor(mfn / 0x10_0000);
      const rc = setVaMapping(m.mmEnv, d.mem, vm, va, lo, hi, domid);
      return rc === 0 ? GNTST_okay : rc === -22 ? GNTST_bad_virt_addr : GNTST_general_error;
    },
    destroyHostMapping: (domid, vcpu, hostAddr, mfn) => {
      const d = m.domain(domid);
      if (d === undefined) return GNTST_general_error;
      // Host code (dom0) has no page tables: the mapping is only a record,
      // named by its address. Address 0 is what unmap reads as "no host
      // mapping", so such a map could never be removed: refuse it.
      if (d.isHost) return hostAddr === 0n ? GNTST_bad_virt_addr : GNTST_okay;
      const va = hostVa(hostAddr);
      if (va === undefined) return GNTST_bad_virt_addr;
      const vm = d.mem.vcpu(vcpu);
      // The entry must still map the granted frame (Xen's replace/destroy check).
      const loc = lookupL1(m.memory, vm.cr3Mfn, va);
      if (loc === undefined) return GNTST_bad_virt_addr;
      const lo = m.memory.readU64Lo(loc.l1Mfn, loc.index * 8);
      if ((lo & _PAGE_PRESENT) === 0 || pteMfn(lo, m.memory.lastHigh) !== mfn) return GNTST_general_error;
      const rc = setVaMapping(m.mmEnv, d.mem, vm, va, 0, 0, domid);
      return rc === 0 ? GNTST_okay : GNTST_general_error;
    },
  };
}

/*
 * The page-table hypercalls: mmu_update, mmuext_op, update_va_mapping
 * (and update_va_mapping_otherdomain). Each factory takes the MMU's
 * environment and a way to find domains, and returns a handler of the
 * shape in hcall.ts. Arguments are read through the caller's address space
 * (`CallCtx.mem`), so a bad pointer is -EFAULT for a guest and for dom0
 * alike; nothing a guest passes makes a handler throw.
 *
 * Batches stop at the first failing entry, which is reported in *pdone
 * (done so far) and the return value, as in Xen. We never preempt, so
 * MMU_UPDATE_PREEMPTED only appears if a guest sets it itself; it is then
 * honoured as Xen's continuation (done is read back from *pdone).
 */
import { GuestPageFault, type GuestMem } from '../public/cpu.js';
import { EACCES, EFAULT, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, ESRCH } from '../public/errno.js';
import { MAX_FRAME, PAGE_SIZE } from '../public/types.js';
import {
  __HYPERVISOR_memory_op, __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_update_va_mapping,
  __HYPERVISOR_update_va_mapping_otherdomain, DOMID_FIRST_RESERVED, DOMID_SELF, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE,
  MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL,
  MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR,
  MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
  MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNMARK_SUPER,
  MMUEXT_UNPIN_TABLE, UVMF_ALL, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_LOCAL, UVMF_TLB_FLUSH, mmu_update, mmuext_op,
} from '../public/xen.js';
import { M2P_INVALID, PageType } from './frametable.js';
import { guestAccess, ptrArg, u32Arg, type CallCtx, type HypercallHandler } from './hcall.js';
import { setBaseptr, setUserBaseptr, type DomainLookup, type DomainMemory, type MmEnv, type VcpuMmu } from './mm.js';
import { getPageType, isPtType, modEntry, ownedBy, pinTable, putPageType, unpinTable } from './mm-validate.js';
import { guestRangeOk, lookupL1 } from './mm-vamem.js';
import { makeMemoryOp } from './mm-memop.js';

/** Xen-internal flag in `count` marking a continued batch (not a public constant). */
const MMU_UPDATE_PREEMPTED = 0x8000_0000;
const REQ_SIZE = mmu_update.size;
const OP_SIZE = mmuext_op.size;
const OP_ARG1 = mmuext_op.offsetOf('arg1');
const OP_ARG2 = mmuext_op.offsetOf('arg2');
/** Largest LDT MMUEXT_SET_LDT accepts (entries). */
const MAX_LDT_ENTS = 8192;

/** A 64-bit guest address given as halves, as a 48-bit VA (undefined when not canonical). */
function vaFromHalves(lo: number, hi: number): number | undefined {
  const top = hi >>> 15;
  if (top !== 0 && top !== 0x1ffff) return undefined;
  return (hi & 0xffff) * 2 ** 32 + (lo >>> 0);
}

/** Xen's get_pg_owner: whose frames the caller names (DOMID_SELF or, if privileged, another). */
function pgOwnerOf(caller: DomainMemory, domid: number, find: DomainLookup): DomainMemory | undefined {
  if (domid === DOMID_SELF) return caller;
  // Naming yourself explicitly is refused, as Xen does; DOMID_IO/XEN have no frames here.
  if (domid === caller.domid || domid >= DOMID_FIRST_RESERVED) return undefined;
  return find(domid);
}

function isFault(e: unknown): boolean {
  return e instanceof GuestPageFault;
}

/** Write the batch progress; Xen ignores a bad pdone pointer. */
function reportDone(mem: GuestMem, pdone: number, done: number): void {
  if (pdone === 0) return;
  try {
    mem.setUint32(pdone, done >>> 0, true);
  } catch (e) {
    if (!isFault(e)) throw e;
  }
}

/** Start of a batch: the real count and the continuation's done so far. */
function batchStart(mem: GuestMem, count: number, pdone: number): { count: number; done: number } {
  if ((count & MMU_UPDATE_PREEMPTED) === 0) return { count, done: 0 };
  let done = 0;
  if (pdone !== 0) {
    try {
      done = mem.getUint32(pdone, true);
    } catch (e) {
      if (!isFault(e)) throw e;
    }
  }
  return { count: (count & ~MMU_UPDATE_PREEMPTED) >>> 0, done };
}

// ---------------------------------------------------------------------------
// mmu_update

/**
 * Checked 8-byte write at machine address (mfn, off) in a frame `pt` owns.
 * In a validated page table it is an entry update (Xen's mod_lN_entry,
 * L2+ only for the table owner's own frames); in any other frame an
 * ordinary write, allowed only where a writable mapping would be. Also the
 * entry point for a grant mapping given as a PTE address.
 */
export function writePte(
  env: MmEnv, pt: DomainMemory, pgOwner: number, mfn: number, off: number, lo: number, hi: number, preserveAd: boolean,
): number {
  const f = env.frames;
  if (!env.memory.isValid(mfn) || f.owner[mfn] !== pt.domid || (off & 7) !== 0 || off < 0 || off >= PAGE_SIZE) return -EINVAL;
  const type = f.type[mfn]!;
  if (f.typeCount[mfn] !== 0 && isPtType(type)) {
    if (type !== PageType.L1 && pgOwner !== pt.domid) return -EINVAL;
    return modEntry(env, pt, pgOwner, mfn, type, off >>> 3, lo, hi, preserveAd);
  }
  if (getPageType(env, mfn, PageType.Writable) !== 0) return -EINVAL;
  env.memory.writeU64Halves(mfn, off, lo, hi);
  putPageType(env, mfn);
  return 0;
}

function mmuUpdateOne(
  env: MmEnv, c: CallCtx, caller: DomainMemory, ptOwner: DomainMemory, pgOwner: DomainMemory,
  ptrLo: number, ptrHi: number, valLo: number, valHi: number,
): number {
  const cmd = ptrLo & 7;
  const mfn = ptrHi * 0x10_0000 + (ptrLo >>> 12);
  switch (cmd) {
    case MMU_NORMAL_PT_UPDATE:
    case MMU_PT_UPDATE_PRESERVE_AD:
    case MMU_PT_UPDATE_NO_TRANSLATE:
      if ((ptOwner !== caller || pgOwner !== caller) && !c.privileged) return -EPERM;
      return writePte(env, ptOwner, pgOwner.domid, mfn, ptrLo & 0xff8, valLo, valHi, cmd === MMU_PT_UPDATE_PRESERVE_AD);
    case MMU_MACHPHYS_UPDATE: {
      if (ptOwner !== caller || (pgOwner !== caller && !c.privileged)) return -EPERM;
      if (!ownedBy(env, mfn, pgOwner.domid)) return -EINVAL;
      // Top bit set is how Xen spells "no PFN" (VALID_M2P); anything else
      // must be a frame number we can hold exactly.
      let pfn: number;
      if ((valHi & 0x8000_0000) !== 0) pfn = M2P_INVALID;
      else {
        pfn = valHi * 2 ** 32 + (valLo >>> 0);
        if (pfn > MAX_FRAME) return -EINVAL;
      }
      pgOwner.setM2p(env, mfn, pfn);
      return 0;
    }
    default:
      return -ENOSYS;
  }
}

/**
 * mmu_update(reqs, count, pdone, foreigndom): foreigndom's low 16 bits name
 * whose frames L1 entries may map (pg owner); bits 16+ (domid + 1) whose
 * page tables are updated (pt owner). Both need privilege when not self.
 */
export function makeMmuUpdate(env: MmEnv, find: DomainLookup): HypercallHandler {
  return (c, a1, a2, a3, a4) => guestAccess(() => {
    const caller = find(c.domid);
    if (caller === undefined) return -ESRCH;
    const reqs = ptrArg(a1);
    const pdone = ptrArg(a3) ?? 0;
    const { count, done } = batchStart(c.mem, u32Arg(a2), pdone);
    if (reqs === undefined || !guestRangeOk(reqs, count * REQ_SIZE)) return -EFAULT;
    const fd = u32Arg(a4);
    let ptOwner = caller;
    if (fd >>> 16 !== 0) {
      const d = find((fd >>> 16) - 1);
      if (d === undefined) return -ESRCH;
      ptOwner = d;
    }
    const pgOwner = pgOwnerOf(caller, fd & 0xffff, find);
    let rc = 0;
    let i = 0;
    if (pgOwner === undefined) rc = -ESRCH;
    else {
      for (; i < count; i++) {
        const at = reqs + i * REQ_SIZE;
        let ptrLo: number, ptrHi: number, valLo: number, valHi: number;
        try {
          ptrLo = c.mem.getUint32(at, true);
          ptrHi = c.mem.getUint32(at + 4, true);
          valLo = c.mem.getUint32(at + 8, true);
          valHi = c.mem.getUint32(at + 12, true);
        } catch (e) {
          if (!isFault(e)) throw e;
          rc = -EFAULT;
          break;
        }
        rc = mmuUpdateOne(env, c, caller, ptOwner, pgOwner, ptrLo, ptrHi, valLo, valHi);
        if (rc !== 0) break;
      }
    }
    reportDone(c.mem, pdone, done + i);
    return rc;
  });
}

// ---------------------------------------------------------------------------
// TLB flush helpers

/**
 * vCPUs named by a guest bitmap (one bit per vCPU, 64-bit words), or
 * undefined when the bitmap cannot be read.
 */
function readVcpuMask(mem: GuestMem, dm: DomainMemory, va: number): VcpuMmu[] | undefined {
  const vcpus = dm.vcpus;
  const nr = vcpus.length === 0 ? 0 : vcpus[vcpus.length - 1]!.id + 1;
  const out: VcpuMmu[] = [];
  try {
    for (let word = 0; word * 64 < nr; word++) {
      for (let half = 0; half < 2; half++) {
        const bits = mem.getUint32(va + word * 8 + half * 4, true);
        for (let b = 0; b < 32; b++) {
          const id = word * 64 + half * 32 + b;
          if ((bits & (1 << b)) !== 0 && id < nr) out.push(dm.vcpu(id));
        }
      }
    }
  } catch (e) {
    if (!isFault(e)) throw e;
    return undefined;
  }
  return out;
}

function flushAll(dm: DomainMemory): void {
  for (const vm of dm.vcpus) vm.flushTlb();
}

// ---------------------------------------------------------------------------
// mmuext_op

function mmuextOne(
  env: MmEnv, mem: GuestMem, caller: DomainMemory, vm: VcpuMmu, pgOwner: DomainMemory,
  cmd: number, a1lo: number, a1hi: number, a2lo: number, a2hi: number,
): number {
  // A frame number (exact below 2^53; anything larger is no frame anyway).
  const arg1 = a1hi * 2 ** 32 + (a1lo >>> 0);
  const foreign = pgOwner !== caller;
  switch (cmd) {
    case MMUEXT_PIN_L1_TABLE:
    case MMUEXT_PIN_L2_TABLE:
    case MMUEXT_PIN_L3_TABLE:
    case MMUEXT_PIN_L4_TABLE:
      if (pgOwner.dying) return -EINVAL;
      return pinTable(env, pgOwner.domid, arg1, cmd - MMUEXT_PIN_L1_TABLE + 1);
    case MMUEXT_UNPIN_TABLE:
      return unpinTable(env, pgOwner.domid, arg1);
    case MMUEXT_NEW_BASEPTR:
      return foreign ? -EPERM : setBaseptr(env, vm, arg1);
    case MMUEXT_NEW_USER_BASEPTR:
      return foreign ? -EPERM : setUserBaseptr(env, vm, arg1);
    case MMUEXT_TLB_FLUSH_LOCAL:
    case MMUEXT_INVLPG_LOCAL:
      if (foreign) return -EPERM;
      vm.flushTlb();
      return 0;
    case MMUEXT_TLB_FLUSH_MULTI:
    case MMUEXT_INVLPG_MULTI: {
      if (foreign) return -EPERM;
      const maskVa = vaFromHalves(a2lo, a2hi);
      const targets = maskVa === undefined ? undefined : readVcpuMask(mem, caller, maskVa);
      if (targets === undefined) return -EINVAL;
      for (const t of targets) t.flushTlb();
      return 0;
    }
    case MMUEXT_TLB_FLUSH_ALL:
    case MMUEXT_INVLPG_ALL:
      if (foreign) return -EPERM;
      flushAll(caller);
      return 0;
    case MMUEXT_FLUSH_CACHE:
      // No domain here may flush caches (Xen: cache_flush_permitted).
      return foreign ? -EPERM : -EACCES;
    case MMUEXT_FLUSH_CACHE_GLOBAL:
      return foreign ? -EPERM : -EINVAL;
    case MMUEXT_SET_LDT: {
      if (foreign) return -EPERM;
      const ents = a2lo >>> 0;
      const ptr = ents !== 0 ? vaFromHalves(a1lo, a1hi) : 0;
      if (ptr === undefined || (ptr & (PAGE_SIZE - 1)) !== 0 || !guestRangeOk(ptr, 0) || ents > MAX_LDT_ENTS) return -EINVAL;
      vm.ldtBase = ptr;
      vm.ldtEnts = ents;
      return 0;
    }
    case MMUEXT_CLEAR_PAGE: {
      if (!ownedBy(env, arg1, pgOwner.domid) || getPageType(env, arg1, PageType.Writable) !== 0) return -EINVAL;
      env.memory.zeroFrame(arg1);
      putPageType(env, arg1);
      return 0;
    }
    case MMUEXT_COPY_PAGE: {
      const src = a2hi * 2 ** 32 + (a2lo >>> 0);
      if (!ownedBy(env, src, pgOwner.domid)) return -EINVAL;
      if (!ownedBy(env, arg1, pgOwner.domid) || getPageType(env, arg1, PageType.Writable) !== 0) return -EINVAL;
      env.memory.copy(arg1, 0, src, 0, PAGE_SIZE);
      putPageType(env, arg1);
      return 0;
    }
    case MMUEXT_MARK_SUPER:
    case MMUEXT_UNMARK_SUPER:
      return -EOPNOTSUPP;
    default:
      return -ENOSYS;
  }
}

/**
 * mmuext_op(ops, count, pdone, foreigndom): pin/unpin (of the foreign
 * domain's tables when privileged: restore pins the guest's), base
 * pointers, TLB flushes, LDT, page clear/copy.
 */
export function makeMmuextOp(env: MmEnv, find: DomainLookup): HypercallHandler {
  return (c, a1, a2, a3, a4) => guestAccess(() => {
    const caller = find(c.domid);
    if (caller === undefined) return -ESRCH;
    const ops = ptrArg(a1);
    const pdone = ptrArg(a3) ?? 0;
    const { count, done } = batchStart(c.mem, u32Arg(a2), pdone);
    if (ops === undefined || !guestRangeOk(ops, count * OP_SIZE)) return -EFAULT;
    const pgOwner = pgOwnerOf(caller, u32Arg(a4) & 0xffff, find);
    if (pgOwner === undefined) return -ESRCH;
    if (pgOwner !== caller && !c.privileged) return -EPERM;
    const vm = caller.vcpu(c.vcpuId);
    let rc = 0;
    let i = 0;
    for (; i < count; i++) {
      const at = ops + i * OP_SIZE;
      let cmd: number, a1lo: number, a1hi: number, a2lo: number, a2hi: number;
      try {
        cmd = c.mem.getUint32(at, true);
        a1lo = c.mem.getUint32(at + OP_ARG1, true);
        a1hi = c.mem.getUint32(at + OP_ARG1 + 4, true);
        a2lo = c.mem.getUint32(at + OP_ARG2, true);
        a2hi = c.mem.getUint32(at + OP_ARG2 + 4, true);
      } catch (e) {
        if (!isFault(e)) throw e;
        rc = -EFAULT;
        break;
      }
      rc = mmuextOne(env, c.mem, caller, vm, pgOwner, cmd, a1lo, a1hi, a2lo, a2hi);
      if (rc !== 0) break;
    }
    reportDone(c.mem, pdone, done + i);
    return rc;
  });
}

// ---------------------------------------------------------------------------
// update_va_mapping

/**
 * Set the L1 entry that maps `va` in `vm`'s current tables to (lo, hi):
 * the L4..L2 path must be present and the L1 a validated table of `dm`.
 * `pgOwner` is whose frames may be mapped. -EINVAL when there is no such
 * L1; otherwise the result of the entry update. Exported for the grant
 * table's host mappings.
 */
export function setVaMapping(env: MmEnv, dm: DomainMemory, vm: VcpuMmu, va: number, lo: number, hi: number, pgOwner: number): number {
  const loc = lookupL1(env.memory, vm.cr3Mfn, va);
  if (loc === undefined) return -EINVAL;
  const f = env.frames;
  const l1 = loc.l1Mfn;
  if (f.owner[l1] !== dm.domid || f.type[l1] !== PageType.L1 || f.typeCount[l1] === 0) return -EINVAL;
  return modEntry(env, dm, pgOwner, l1, 1, loc.index, lo, hi, false);
}

function updateVaMapping(env: MmEnv, c: CallCtx, dm: DomainMemory, pgOwner: DomainMemory, vaArg: bigint, val: bigint, flags: bigint): number {
  const vm = dm.vcpu(c.vcpuId);
  const va = ptrArg(vaArg);
  if (va === undefined) return -EINVAL;
  const v = BigInt.asUintN(64, val);
  const rc = setVaMapping(env, dm, vm, va, Number(v & 0xffff_ffffn), Number(v >> 32n), pgOwner.domid);
  if (rc !== 0) return rc;
  // Our TLBs are flushed on every change already; the flush request is
  // still checked, so a bad vCPU bitmap pointer fails as on Xen.
  const u = BigInt.asUintN(64, flags);
  const type = Number(u & BigInt(UVMF_FLUSHTYPE_MASK));
  if (type !== UVMF_TLB_FLUSH && type !== UVMF_INVLPG) return 0;
  const bmap = u & ~BigInt(UVMF_FLUSHTYPE_MASK);
  if (bmap === BigInt(UVMF_LOCAL)) vm.flushTlb();
  else if (bmap === BigInt(UVMF_ALL)) flushAll(dm);
  else {
    const maskVa = ptrArg(bmap);
    const targets = maskVa === undefined ? undefined : readVcpuMask(c.mem, dm, maskVa);
    if (targets === undefined) return -EFAULT;
    for (const t of targets) t.flushTlb();
  }
  return 0;
}

/** update_va_mapping(va, val, flags): one L1 entry by virtual address. */
export function makeUpdateVaMapping(env: MmEnv, find: DomainLookup): HypercallHandler {
  return (c, a1, a2, a3) => guestAccess(() => {
    const caller = find(c.domid);
    if (caller === undefined) return -ESRCH;
    return updateVaMapping(env, c, caller, caller, a1, a2, a3);
  });
}

/** update_va_mapping_otherdomain(va, val, flags, domid): map another domain's frame (privileged). */
export function makeUpdateVaMappingOtherdomain(env: MmEnv, find: DomainLookup): HypercallHandler {
  return (c, a1, a2, a3, a4) => guestAccess(() => {
    const caller = find(c.domid);
    if (caller === undefined) return -ESRCH;
    const pgOwner = pgOwnerOf(caller, u32Arg(a4) & 0xffff, find);
    if (pgOwner === undefined) return -ESRCH;
    if (pgOwner !== caller && !c.privileged) return -EPERM;
    return updateVaMapping(env, c, caller, pgOwner, a1, a2, a3);
  });
}

/**
 * Every MMU hypercall, keyed by hypercall number, for the core's dispatch
 * table: mmu_update, update_va_mapping(_otherdomain), mmuext_op, memory_op.
 */
export function mmHypercalls(env: MmEnv, find: DomainLookup): Map<number, HypercallHandler> {
  return new Map([
    [__HYPERVISOR_mmu_update, makeMmuUpdate(env, find)],
    [__HYPERVISOR_mmuext_op, makeMmuextOp(env, find)],
    [__HYPERVISOR_update_va_mapping, makeUpdateVaMapping(env, find)],
    [__HYPERVISOR_update_va_mapping_otherdomain, makeUpdateVaMappingOtherdomain(env, find)],
    [__HYPERVISOR_memory_op, makeMemoryOp(env, find)],
  ]);
}

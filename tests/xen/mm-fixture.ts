/*
 * A machine with the MMU and nothing else: machine memory, frame table and
 * hand-built guests (page tables written into owned frames the way a domain
 * builder does, then pinned and loaded into CR3). No core needed.
 */
import { _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../../hypervisor/public/arch-x86_64.js';
import { FrameTable } from '../../hypervisor/xen/frametable.js';
import { MachineMemory } from '../../hypervisor/xen/physmem.js';
import type { CallCtx } from '../../hypervisor/xen/hcall.js';
import { DomainMemory, createMmEnv, pinTable, setBaseptr, type MmEnv, type VcpuMmu } from '../../hypervisor/xen/mm.js';
import { GuestVaMem, HostArenaMem } from '../../hypervisor/xen/mm-vamem.js';
import type { GuestMem } from '../../hypervisor/public/cpu.js';

export const P = _PAGE_PRESENT;
export const RW = _PAGE_RW;
export const US = _PAGE_USER;
export const A = _PAGE_ACCESSED;
/** Flags of a kernel data mapping and of an upper-level entry. */
export const PRW = P | RW | US | A;
export const PRO = P | US | A;

/** Guest data lives at 4 MiB: L4[0] L3[0] L2[2]. */
export const KVA = 0x40_0000;
export const PAGE = 4096;

/** A PTE as a u64. */
export const pte = (mfn: number, flags: number): bigint => (BigInt(mfn) << 12n) | BigInt(flags);

export interface Machine {
  memory: MachineMemory;
  frames: FrameTable;
  env: MmEnv;
  domains: Map<number, DomainMemory>;
  find: (domid: number) => DomainMemory | undefined;
}

export function machine(mib = 8, seed = 7): Machine {
  const memory = new MachineMemory(mib * 1024 * 1024);
  const frames = new FrameTable(memory, seed);
  const env = createMmEnv(memory, frames);
  const domains = new Map<number, DomainMemory>();
  return { memory, frames, env, domains, find: (d) => domains.get(d) };
}

export interface Space {
  l4: number;
  /** Every page-table frame, L4 first. */
  tables: number[];
}

/** The index of `va` at a level (4 = L4 .. 1 = L1). */
export const slot = (va: number, level: number): number => Math.floor(va / 2 ** (12 + 9 * (level - 1))) % 512;

/**
 * Write page tables mapping `maps` into fresh frames of `dm` (not validated:
 * they are plain pages until pinned), as a domain builder does.
 */
export function buildSpace(m: Machine, dm: DomainMemory, maps: { va: number; mfn: number; flags: number }[]): Space {
  const alloc = (): number => {
    const got = dm.allocPages(m.env, 1);
    if (got === undefined) throw new Error('fixture: out of frames');
    return got[0]!;
  };
  const l4 = alloc();
  const tables = [l4];
  const child = (table: number, idx: number): number => {
    const e = m.memory.readU64(table, idx * 8);
    if ((e & 1n) !== 0n) return Number(e >> 12n);
    const t = alloc();
    tables.push(t);
    m.memory.writeU64(table, idx * 8, pte(t, PRW));
    return t;
  };
  for (const { va, mfn, flags } of maps) {
    const l1 = child(child(child(l4, slot(va, 4)), slot(va, 3)), slot(va, 2));
    m.memory.writeU64(l1, slot(va, 1) * 8, pte(mfn, flags));
  }
  return { l4, tables };
}

export interface Guest {
  dm: DomainMemory;
  vm: VcpuMmu;
  mem: GuestVaMem;
  /** Data frames, mapped RW at KVA + i * PAGE, PFN i. */
  data: number[];
  space: Space;
}

/** A running guest: `nData` data pages mapped RW at KVA, L4 pinned and in CR3. */
export function guest(m: Machine, domid: number, nData = 8, maxPages = 1024): Guest {
  const dm = new DomainMemory(domid, maxPages);
  m.domains.set(domid, dm);
  const data = dm.allocPages(m.env, nData)!;
  data.forEach((mfn, i) => dm.setM2p(m.env, mfn, i));
  const space = buildSpace(m, dm, data.map((mfn, i) => ({ va: KVA + i * PAGE, mfn, flags: PRW })));
  const rc = pinTable(m.env, domid, space.l4, 4);
  if (rc !== 0) throw new Error(`fixture: pin L4 failed ${rc}`);
  const vm = dm.vcpu(0);
  const rc2 = setBaseptr(m.env, vm, space.l4);
  if (rc2 !== 0) throw new Error(`fixture: baseptr failed ${rc2}`);
  return { dm, vm, mem: new GuestVaMem(m.env, vm), data, space };
}

/** An idle privileged dom0 with a host arena for hypercall arguments. */
export function dom0(m: Machine): { dm: DomainMemory; arena: HostArenaMem } {
  const dm = new DomainMemory(0, 0);
  m.domains.set(0, dm);
  return { dm, arena: new HostArenaMem(64 * 1024) };
}

export const ctx = (domid: number, mem: GuestMem, privileged = false): CallCtx => ({ domid, vcpuId: 0, privileged, mem });

/** The L1 frame and slot that map `va` (reads the tables directly). */
export function l1Of(m: Machine, l4: number, va: number): { l1: number; index: number } {
  let t = l4;
  for (let level = 4; level > 1; level--) t = Number(m.memory.readU64(t, slot(va, level) * 8) >> 12n);
  return { l1: t, index: slot(va, 1) };
}

/** Machine address of the PTE mapping `va`, for mmu_update. */
export function pteMaddr(m: Machine, l4: number, va: number): bigint {
  const { l1, index } = l1Of(m, l4, va);
  return BigInt(l1) * 4096n + BigInt(index * 8);
}

/** Sum of every frame's counts: zero when nothing holds anything. */
export function heldRefs(m: Machine): number {
  let n = 0;
  for (let i = 0; i < m.frames.nrFrames; i++) n += m.frames.refCount[i]! + m.frames.typeCount[i]! + m.frames.pinned[i]!;
  return n;
}

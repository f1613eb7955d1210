// A small machine for the grant table tests: real machine memory and frame
// table, grant tables for dom0 (privileged backend) and guests 1 and 2, and
// a fake core recording what the grant code asks of it.
import { MachineMemory } from '../../hypervisor/xen/physmem.js';
import { FrameTable } from '../../hypervisor/xen/frametable.js';
import { GrantTables, type GnttabCaller, type GnttabEnv, type GnttabTableOptions } from '../../hypervisor/xen/gnttab.js';
import { GTF_permit_access, GTF_readonly } from '../../hypervisor/public/grant_table.js';
import { GNTST_okay } from '../../hypervisor/public/grant_table.js';

export interface GtFixture {
  memory: MachineMemory;
  frames: FrameTable;
  gt: GrantTables;
  /** Frames handed to env.releaseFrameIfUnused. */
  released: number[];
  /** Writable type references currently held, per frame. */
  writable: Map<number, number>;
  /** Frames env.getPageWritable refuses (as if they were page tables). */
  refuseWritable: Set<number>;
  hostMaps: string[];
  caller(domid: number): GnttabCaller;
  /** A fresh frame owned by `domid`. */
  page(domid: number): number;
  /** What a granting guest does: write entry `ref` of its table. */
  grant(granter: number, ref: number, to: number, mfn: number, readonly?: boolean): void;
  flags(domid: number, ref: number): number;
  addTable(domid: number, opts?: GnttabTableOptions): void;
}

export function gtFixture(withHooks = true): GtFixture {
  const memory = new MachineMemory(512 * 4096);
  const frames = new FrameTable(memory, 11);
  const released: number[] = [];
  const writable = new Map<number, number>();
  const refuseWritable = new Set<number>();
  const hostMaps: string[] = [];
  const env: GnttabEnv = withHooks
    ? {
      releaseFrameIfUnused: (mfn) => { released.push(mfn); },
      getPageWritable: (mfn) => {
        if (refuseWritable.has(mfn)) return false;
        writable.set(mfn, (writable.get(mfn) ?? 0) + 1);
        return true;
      },
      putPageWritable: (mfn) => {
        const n = (writable.get(mfn) ?? 0) - 1;
        if (n < 0) throw new Error(`writable reference of mfn ${mfn} dropped below zero`);
        if (n === 0) writable.delete(mfn);
        else writable.set(mfn, n);
      },
      createHostMapping: (d, _v, addr, mfn) => { hostMaps.push(`+d${d}@${addr.toString(16)}=${mfn}`); return GNTST_okay; },
      destroyHostMapping: (d, _v, addr, mfn) => { hostMaps.push(`-d${d}@${addr.toString(16)}=${mfn}`); return GNTST_okay; },
    }
    : { releaseFrameIfUnused: (mfn) => { released.push(mfn); } };
  const gt = new GrantTables(frames, env);
  const f: GtFixture = {
    memory, frames, gt, released, writable, refuseWritable, hostMaps,
    caller: (domid) => ({ domid, vcpuId: 0, privileged: domid === 0 }),
    page: (domid) => frames.alloc(domid)!,
    grant(granter, ref, to, mfn, readonly = false) {
      const rc = gt.seedEntry(granter, ref, { flags: GTF_permit_access | (readonly ? GTF_readonly : 0), domid: to, frame: mfn });
      if (rc !== 0) throw new Error(`grant d${granter} ref ${ref}: ${rc}`);
    },
    flags: (domid, ref) => gt.readEntry(domid, ref)?.flags ?? -1,
    addTable(domid, opts) {
      const rc = gt.createTable(domid, opts);
      if (rc !== 0) throw new Error(`createTable d${domid}: ${rc}`);
    },
  };
  f.addTable(0);
  f.addTable(1);
  f.addTable(2);
  return f;
}

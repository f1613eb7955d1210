/*
 * Helpers for tests/porting/skip-resume-steps.test.ts: putting a restored
 * guest in the state of a kernel that skipped one resume step, without
 * changing shipped guest code.
 *
 *  - imageMem: a saved image's guest memory as the kernel sees it through
 *    its direct map (KERNBASE + pfn * PAGE_SIZE), on a FakeCpu, so the
 *    kernel's own accessors (device_lookup, lwp lists, struct views) find
 *    and edit its state; `commit` writes the pages back into the image.
 *  - dom0MapGrant: GNTTABOP_map_grant_ref issued by dom0 through the
 *    hypercall gate, as a backend maps a frontend's page: the GNTST_*
 *    status, the mapping undone again when it worked.
 *  - forgetWatches: the new xenstored's record of a domain connection's
 *    watches, emptied, which is where a guest that never sent XS_WATCH
 *    after a restore leaves it.
 */
import { __HYPERVISOR_grant_table_op } from '../../hypervisor/public/xen.js';
import {
  GNTMAP_device_map, GNTMAP_readonly, GNTST_okay, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
  gnttab_map_grant_ref, gnttab_unmap_grant_ref,
} from '../../hypervisor/public/grant_table.js';
import type { Machine } from '../../hypervisor/xen/machine.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { Watch, XsState } from '../../hypervisor/tools/xenstored/state.js';
import { KERNBASE, PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { FakeCpu, FlatMem } from '../guest/harness.js';
import type { EditableImage } from '../save/image-edit.js';

export interface ImageMem {
  /** A GuestCpu over the image's memory (direct map only; no page tables, no hypercalls that matter). */
  readonly cpu: FakeCpu;
  /** Write every page back into the image (after edits through `cpu.mem`). */
  commit(): void;
}

export function imageMem(img: EditableImage): ImageMem {
  const bytes = new Uint8Array(img.maxPfn * PAGE_SIZE);
  for (const p of img.pages.values()) if (p.data !== undefined && p.pfn < img.maxPfn) bytes.set(p.data, p.pfn * PAGE_SIZE);
  const cpu = new FakeCpu(new FlatMem(KERNBASE, bytes));
  return {
    cpu,
    commit(): void {
      for (const [pfn, p] of img.pages) {
        if (p.data === undefined || pfn >= img.maxPfn) continue;
        img.pages.set(pfn, { ...p, data: bytes.slice(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE) });
      }
    },
  };
}

/**
 * dom0 maps grant `ref` of `domid` (device mapping, read-only, as blkback
 * maps a write's pages) with the real hypercall; a mapping that works is
 * unmapped at once. The GNTST_* status.
 */
export function dom0MapGrant(m: Machine, domid: number, ref: number): number {
  const mem = m.xc.h.arena;
  mem.reset();
  const op = gnttab_map_grant_ref.view(mem, mem.alloc(gnttab_map_grant_ref.size));
  op.set('dom', domid);
  op.set('ref', ref);
  op.set('flags', GNTMAP_device_map | GNTMAP_readonly);
  const rc = m.xc.h.call(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, op.base, 1);
  if (rc !== 0) throw new Error(`grant_table_op(map) itself failed: ${rc}`);
  const status = op.get('status');
  if (status === GNTST_okay) {
    const un = gnttab_unmap_grant_ref.view(mem, mem.alloc(gnttab_unmap_grant_ref.size));
    un.set('handle', op.get('handle'));
    un.set('dev_bus_addr', op.get('dev_bus_addr'));
    if (m.xc.h.call(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, un.base, 1) !== 0 || un.get('status') !== GNTST_okay) {
      throw new Error(`dom0 could not unmap d${domid} ref ${ref}: ${un.get('status')}`);
    }
  }
  return status;
}

/** The watches xenstored holds for `domid`'s ring connection. */
export function watchesOf(h: MachineHost, domid: number): readonly Watch[] {
  const s = h.xenstored.state;
  const conn = s.domains.get(domid)?.conn;
  return conn === undefined ? [] : (s.conns.get(conn)?.watches ?? []);
}

/**
 * Empty xenstored's record of `domid`'s watches, as if the guest had never
 * sent XS_WATCH on this connection. xenstored keeps its state as one
 * immutable value in a private field; this replaces it with the same value
 * less those watches (nothing else changes, no message is sent to anyone).
 */
export function forgetWatches(h: MachineHost, domid: number): readonly Watch[] {
  const s = h.xenstored.state;
  const connId = s.domains.get(domid)?.conn;
  const conn = connId === undefined ? undefined : s.conns.get(connId);
  if (connId === undefined || conn === undefined) throw new Error(`d${domid} has no xenstore connection`);
  const next: XsState = { ...s, conns: new Map(s.conns).set(connId, { ...conn, watches: [] }) };
  (h.xenstored as unknown as { current: XsState }).current = next;
  if (h.xenstored.state !== next) throw new Error('xenstored keeps its state elsewhere now: update forgetWatches');
  return conn.watches;
}

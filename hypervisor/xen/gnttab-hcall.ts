/*
 * __HYPERVISOR_grant_table_op(cmd, uop, count): decode each op struct of
 * the batch from the caller's memory, run it, write its OUT fields back.
 * Per-op failures are GNTST_* statuses in the structs and the hypercall
 * returns 0; the hypercall itself fails only for a bad command or count
 * (-EINVAL/-ENOSYS) or a fault on the argument array (-EFAULT, after the
 * ops before the fault took effect, as on Xen).
 */
import type { StructLayout, StructView, Fields } from '../public/layout.js';
import { u64ToSafeNumber } from '../public/layout.js';
import {
  GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_setup_table, GNTTABOP_copy,
  GNTTABOP_query_size, GNTTABOP_set_version, GNTTABOP_get_version, GNTTABOP_transfer, GNTTABOP_cache_flush,
  GNTCOPY_source_gref, GNTCOPY_dest_gref, GNTST_okay, GNTST_bad_virt_addr,
  gnttab_map_grant_ref, gnttab_unmap_grant_ref, gnttab_setup_table, gnttab_copy, gnttab_copy_ptr,
  gnttab_query_size, gnttab_set_version, gnttab_get_version,
} from '../public/grant_table.js';
import { EINVAL, ENOSYS, EOPNOTSUPP } from '../public/errno.js';
import { GuestPageFault } from '../public/cpu.js';
import { EFAULT_RC, guestAccess, ptrArg, u32Arg, type CallCtx, type HypercallHandler } from './hcall.js';
import { GRANT_TABLE_V1, type GrantTables } from './gnttab.js';
import type { GrantCopyPtr } from './gnttab-copy.js';

/*
 * Xen keeps continuation state in the bits of `cmd` above the command
 * (GNTTABOP_CONTINUATION_ARG_SHIFT in common/grant_table.c, not a public
 * header); a guest must leave them zero except for cache_flush.
 */
const GNTTABOP_CONTINUATION_ARG_SHIFT = 12;
const GNTTABOP_CMD_MASK = (1 << GNTTABOP_CONTINUATION_ARG_SHIFT) - 1;

/** The only grant table version emulated. */
const GRANT_TABLE_VERSION = GRANT_TABLE_V1;

/** Run one grant_table_op batch with its op array at `va` of the caller's memory. */
export function grantTableOp(gt: GrantTables, c: CallCtx, cmd: number, va: number, count: number): number {
  // copy_from_guest of one element: it must be readable as a whole first.
  const elem = <F extends Fields>(l: StructLayout<F>, i: number): StructView<F> => {
    const at = va + i * l.size;
    c.mem.readBytes(at, l.size);
    return l.view(c.mem, at);
  };
  switch (cmd) {
    case GNTTABOP_map_grant_ref:
      for (let i = 0; i < count; i++) {
        const v = elem(gnttab_map_grant_ref, i);
        const r = gt.mapGrantRef(c, { dom: v.get('dom'), ref: v.get('ref'), flags: v.get('flags'), hostAddr: v.get('host_addr') });
        v.set('status', r.status);
        if (r.status === GNTST_okay) {
          v.set('handle', r.handle);
          v.set('dev_bus_addr', r.devBusAddr);
        }
      }
      return 0;
    case GNTTABOP_unmap_grant_ref:
      for (let i = 0; i < count; i++) {
        const v = elem(gnttab_unmap_grant_ref, i);
        v.set('status', gt.unmapGrantRef(c, { handle: v.get('handle'), hostAddr: v.get('host_addr'), devBusAddr: v.get('dev_bus_addr') }));
      }
      return 0;
    case GNTTABOP_setup_table: {
      if (count !== 1) return -EINVAL;
      const v = elem(gnttab_setup_table, 0);
      const list = ptrArg(v.get('frame_list'));
      if (list === undefined) return EFAULT_RC;
      const r = gt.setupTable(c, v.get('dom'), v.get('nr_frames'));
      let status = r.status;
      for (let i = 0; i < r.frames.length && status === GNTST_okay; i++) {
        status = writeFrame(c, list + i * 8, r.frames[i]!);
      }
      v.set('status', status);
      return 0;
    }
    case GNTTABOP_query_size: {
      if (count !== 1) return -EINVAL;
      const v = elem(gnttab_query_size, 0);
      const r = gt.querySize(c, v.get('dom'));
      v.set('nr_frames', r.nrFrames);
      v.set('max_nr_frames', r.maxNrFrames);
      v.set('status', r.status);
      return 0;
    }
    case GNTTABOP_copy:
      for (let i = 0; i < count; i++) {
        const v = elem(gnttab_copy, i);
        const flags = v.get('flags');
        v.set('status', gt.copy(c, {
          source: copyPtr(v.sub('source'), (flags & GNTCOPY_source_gref) !== 0),
          dest: copyPtr(v.sub('dest'), (flags & GNTCOPY_dest_gref) !== 0),
          len: v.get('len'),
          flags,
        }));
      }
      return 0;
    case GNTTABOP_set_version: {
      const v = elem(gnttab_set_version, 0);
      const want = v.get('version');
      // Only v1 exists here: asking for v2 behaves as before set_version existed.
      const rc = want === GRANT_TABLE_VERSION ? 0 : want === 2 ? -ENOSYS : -EINVAL;
      v.set('version', GRANT_TABLE_VERSION);
      return rc;
    }
    case GNTTABOP_get_version: {
      const v = elem(gnttab_get_version, 0);
      const version = gt.getVersion(c, v.get('dom'));
      if (version < 0) return version;
      v.set('version', version);
      return 0;
    }
    case GNTTABOP_transfer:
      // Page flipping is not emulated; Xen answers this when transfers are disabled.
      return -EOPNOTSUPP;
    default:
      return -ENOSYS;
  }
}

/** setup_table's frame_list entry: a fault there is a status, not -EFAULT. */
function writeFrame(c: CallCtx, va: number, mfn: number): number {
  try {
    c.mem.setBigUint64(va, BigInt(mfn), true);
    return GNTST_okay;
  } catch (e) {
    if (e instanceof GuestPageFault || e instanceof RangeError) return GNTST_bad_virt_addr;
    throw e;
  }
}

function copyPtr(v: ReturnType<typeof gnttab_copy_ptr.view>, gref: boolean): GrantCopyPtr {
  const u = v.sub('u');
  return {
    u: gref ? u.get('ref') : u64ToSafeNumber(u.get('gmfn')) ?? -1,
    domid: v.get('domid'),
    offset: v.get('offset'),
  };
}

/** Handler for __HYPERVISOR_grant_table_op(unsigned int cmd, void *uop, unsigned int count). */
export function makeGrantTableOp(gt: GrantTables): HypercallHandler {
  return (c, a1, a2, a3) => {
    const raw = u32Arg(a1);
    const count = u32Arg(a3);
    if (count > 0x7fff_ffff) return -EINVAL;
    const cmd = raw & GNTTABOP_CMD_MASK;
    if (cmd !== GNTTABOP_cache_flush && raw >>> GNTTABOP_CONTINUATION_ARG_SHIFT !== 0) return -EINVAL;
    if (!gt.hasTable(c.domid)) return -ENOSYS;
    const va = ptrArg(a2);
    if (va === undefined) return EFAULT_RC;
    return guestAccess(() => grantTableOp(gt, c, cmd, va, count));
  };
}

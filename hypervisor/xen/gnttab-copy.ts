/*
 * GNTTABOP_copy: copy bytes between two pages, each named either by a grant
 * reference of a domain that granted it to the caller (GNTCOPY_*_gref) or
 * by the frame number of one of the caller's own pages (only with
 * DOMID_SELF, as Xen: nobody copies to a foreign frame by number, not even
 * dom0). The grant is pinned for the copy only: GTF_reading/GTF_writing are
 * set while it runs and cleared after, exactly as a map followed by an
 * unmap would leave them. The bytes go through MachineMemory.copy, the
 * write path, so log-dirty mode sees the destination page.
 *
 * Checks run in Xen's order: domains, source, destination, then the byte
 * range; the first failure is the op's status.
 */
import type { FrameTable } from './frametable.js';
import { PAGE_SIZE } from '../public/types.js';
import { DOMID_SELF } from '../public/xen.js';
import {
  GNTCOPY_source_gref, GNTCOPY_dest_gref, GNTST_okay, GNTST_general_error, GNTST_bad_domain,
  GNTST_bad_gntref, GNTST_bad_copy_arg, GNTST_permission_denied,
} from '../public/grant_table.js';
import { GNTPIN_MAX, checkGrantedFrame, isPinned, isWritePinned, type GrantTable } from './gnttab-table.js';

/** One side of a copy (struct gnttab_copy_ptr). */
export interface GrantCopyPtr {
  /**
   * The union: a grant reference (with the side's *_gref flag) or the frame
   * number of the caller's own page; -1 stands for a frame number that does
   * not fit in a JS number and is never valid.
   */
  u: number;
  domid: number;
  offset: number;
}

/** struct gnttab_copy, IN fields. */
export interface GrantCopyOp {
  source: GrantCopyPtr;
  dest: GrantCopyPtr;
  len: number;
  /** GNTCOPY_source_gref | GNTCOPY_dest_gref */
  flags: number;
}

/** What grantCopy needs from GrantTables. */
export interface GrantCopyEnv {
  readonly frames: FrameTable;
  /** The table of a domain; DOMID_SELF already means the caller. */
  table(domid: number): GrantTable | undefined;
  getWritable(mfn: number, owner: number): boolean;
  putWritable(mfn: number): void;
}

interface CopyBuf {
  readonly table: GrantTable;
  /** The grant ref, when the side was named by one. */
  readonly ref: number | undefined;
  readonly mfn: number;
  readonly readonly: boolean;
  writableTaken: boolean;
}

export function grantCopy(env: GrantCopyEnv, caller: { domid: number }, op: GrantCopyOp): number {
  if (op.len === 0) return GNTST_okay;
  const srcGref = (op.flags & GNTCOPY_source_gref) !== 0;
  const dstGref = (op.flags & GNTCOPY_dest_gref) !== 0;

  if (op.source.domid !== DOMID_SELF && !srcGref) return GNTST_permission_denied;
  const srcTable = env.table(op.source.domid);
  if (srcTable === undefined) return GNTST_bad_domain;
  if (op.dest.domid !== DOMID_SELF && !dstGref) return GNTST_permission_denied;
  const dstTable = env.table(op.dest.domid);
  if (dstTable === undefined) return GNTST_bad_domain;

  const src = claim(env, caller.domid, op.source, srcTable, srcGref, true);
  if (typeof src === 'number') return src;
  const dst = claim(env, caller.domid, op.dest, dstTable, dstGref, false);
  if (typeof dst === 'number') {
    release(env, src);
    return dst;
  }
  let rc: number = GNTST_okay;
  if (!inPage(op.source.offset, op.len) || !inPage(op.dest.offset, op.len)) rc = GNTST_bad_copy_arg;
  else env.frames.memory.copy(dst.mfn, op.dest.offset, src.mfn, op.source.offset, op.len);
  release(env, dst);
  release(env, src);
  return rc;
}

function inPage(offset: number, len: number): boolean {
  return Number.isInteger(offset) && Number.isInteger(len) && offset >= 0 && len >= 0 && offset + len <= PAGE_SIZE;
}

/** Resolve one side to a frame and take what a copy needs on it. */
function claim(env: GrantCopyEnv, caller: number, ptr: GrantCopyPtr, t: GrantTable, gref: boolean, readonly: boolean): CopyBuf | number {
  let buf: CopyBuf;
  if (gref) {
    const got = acquireForCopy(env, t, ptr.u, caller, readonly);
    if (typeof got === 'number') return got;
    buf = { table: t, ref: ptr.u, mfn: got.mfn, readonly, writableTaken: false };
  } else {
    const st = checkGrantedFrame(env.frames, ptr.u, t.domid);
    if (st !== GNTST_okay) return st;
    buf = { table: t, ref: undefined, mfn: ptr.u, readonly, writableTaken: false };
  }
  if (!readonly) {
    if (!env.getWritable(buf.mfn, t.domid)) {
      release(env, buf);
      return GNTST_general_error;
    }
    buf.writableTaken = true;
  }
  return buf;
}

function release(env: GrantCopyEnv, buf: CopyBuf): void {
  if (buf.writableTaken) env.putWritable(buf.mfn);
  if (buf.ref === undefined) return;
  const t = buf.table;
  const act = t.act(buf.ref);
  if (buf.readonly) act.hostRead--;
  else act.hostWrite--;
  t.reduceStatus(buf.ref, act, buf.readonly);
  t.dropIfIdle(buf.ref);
}

/** Xen's acquire_grant_for_copy (v1, no transitive grants). */
function acquireForCopy(env: GrantCopyEnv, t: GrantTable, ref: number, caller: number, readonly: boolean): { mfn: number } | number {
  if (!t.validRef(ref)) return GNTST_bad_gntref;
  const act = t.act(ref);
  const pinned = isPinned(act);
  if (pinned && (act.domid !== caller || (readonly ? act.hostRead : act.hostWrite) >= GNTPIN_MAX)) {
    return GNTST_general_error;
  }
  if (!pinned || (!readonly && !isWritePinned(act))) {
    const st = t.setStatus(ref, act, readonly, caller);
    if (st !== GNTST_okay) {
      t.dropIfIdle(ref);
      return st;
    }
    if (!pinned) {
      const frame = t.entryFrame(ref);
      const fst = checkGrantedFrame(env.frames, frame, t.domid);
      if (fst !== GNTST_okay) {
        t.reduceStatus(ref, act, readonly);
        t.dropIfIdle(ref);
        return fst;
      }
      act.domid = caller;
      act.mfn = frame;
    }
  } else if (env.frames.owner[act.mfn] !== t.domid) {
    return GNTST_bad_domain;
  }
  if (readonly) act.hostRead++;
  else act.hostWrite++;
  return { mfn: act.mfn };
}

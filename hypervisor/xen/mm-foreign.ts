/*
 * What the privileged toolstack (dom0, host code) needs from the MMU to
 * save and restore a domain: direct access to the domain's frames by MFN,
 * and the page type of each (XEN_DOMCTL_getpageframeinfo3).
 *
 * On Xen, dom0 maps a guest's frames into its own page tables (privcmd,
 * mmu_update with a foreign owner) and the same checks apply: the frame
 * must belong to the named domain, and a writable mapping of a page table
 * is refused, since writing one directly would bypass validation. dom0 has
 * no page tables here, so this module applies those checks and hands out
 * the frame itself: reads at memory speed (a view, no copy), writes through
 * machine memory's one write path (so log-dirty sees them). No reference is
 * held between calls; each access rechecks.
 */
import type { ByteMem } from '../public/layout.js';
import { EBUSY, EINVAL, EPERM } from '../public/errno.js';
import {
  XEN_DOMCTL_PFINFO_LPINTAB, XEN_DOMCTL_PFINFO_LTAB_SHIFT, XEN_DOMCTL_PFINFO_NOTAB,
  XEN_DOMCTL_PFINFO_XTAB,
} from '../public/domctl.js';
import { PAGE_SIZE } from '../public/types.js';
import type { DomainMemory, MmEnv } from './mm.js';
import { isPtType, ownedBy } from './mm-validate.js';

/** One frame of a domain, as the toolstack may touch it. */
export interface ForeignFrame {
  readonly mfn: number;
  /** The frame's bytes without copying; do not keep it past the current operation. */
  peek(): Uint8Array;
  /** Copy out `len` bytes at `off`. */
  read(off: number, len: number): Uint8Array;
  /**
   * Write `data` at `off` through the machine's write path. 0, or -EBUSY
   * if the frame is now a page table, -EINVAL if the domain no longer
   * owns it or the range is outside the frame.
   */
  write(off: number, data: Uint8Array): number;
  /** Layout-view access (reads only; writes go through `write`). */
  readonly mem: ByteMem;
}

/**
 * Access frame `mfn` of domain `domid` on behalf of a caller. -EPERM for
 * an unprivileged caller, -EINVAL when the domain does not own the frame,
 * -EBUSY when write access is asked for a validated page table.
 */
export function foreignFrame(env: MmEnv, callerPrivileged: boolean, domid: number, mfn: number, writable = false): ForeignFrame | number {
  if (!callerPrivileged) return -EPERM;
  if (!ownedBy(env, mfn, domid)) return -EINVAL;
  if (writable && isBusyForWrite(env, mfn)) return -EBUSY;
  const m = env.memory;
  const frameMem = m.frameMem(mfn);
  return {
    mfn,
    peek: () => m.peekFrame(mfn),
    read: (off, len) => m.readBytes(mfn, off, len),
    write: (off, data) => {
      if (!ownedBy(env, mfn, domid) || !(off >= 0 && off + data.length <= PAGE_SIZE)) return -EINVAL;
      if (isBusyForWrite(env, mfn)) return -EBUSY;
      m.writeBytes(mfn, off, data);
      return 0;
    },
    mem: readOnly(frameMem),
  };
}

function isBusyForWrite(env: MmEnv, mfn: number): boolean {
  return env.frames.typeCount[mfn] !== 0 && isPtType(env.frames.type[mfn]!);
}

/** A ByteMem whose writes throw: guards a view from writing behind the checks. */
function readOnly(mem: ByteMem): ByteMem {
  const refuse = (): never => {
    throw new Error('foreign frame view is read-only: use ForeignFrame.write');
  };
  return {
    getUint8: (o) => mem.getUint8(o),
    getInt8: (o) => mem.getInt8(o),
    getUint16: (o, le) => mem.getUint16(o, le),
    getInt16: (o, le) => mem.getInt16(o, le),
    getUint32: (o, le) => mem.getUint32(o, le),
    getInt32: (o, le) => mem.getInt32(o, le),
    getBigUint64: (o, le) => mem.getBigUint64(o, le),
    getBigInt64: (o, le) => mem.getBigInt64(o, le),
    readBytes: (o, len) => mem.readBytes(o, len),
    setUint8: refuse, setInt8: refuse, setUint16: refuse, setInt16: refuse,
    setUint32: refuse, setInt32: refuse, setBigUint64: refuse, setBigInt64: refuse, writeBytes: refuse,
  };
}

/**
 * XEN_DOMCTL_getpageframeinfo3: for each MFN, its type as the migration
 * stream tags pages: NOTAB for data, L1TAB..L4TAB for a validated page
 * table (| LPINTAB when pinned), XTAB for a frame the domain does not own.
 */
export function getPageFrameInfo(env: MmEnv, dm: DomainMemory | number, mfns: ArrayLike<number>): Uint32Array {
  const domid = typeof dm === 'number' ? dm : dm.domid;
  const out = new Uint32Array(mfns.length);
  const f = env.frames;
  for (let i = 0; i < mfns.length; i++) {
    const mfn = mfns[i]!;
    if (!ownedBy(env, mfn, domid)) {
      out[i] = XEN_DOMCTL_PFINFO_XTAB;
      continue;
    }
    const t = f.type[mfn]!;
    let info = f.typeCount[mfn] !== 0 && isPtType(t) ? (t << XEN_DOMCTL_PFINFO_LTAB_SHIFT) >>> 0 : XEN_DOMCTL_PFINFO_NOTAB;
    if (f.pinned[mfn] !== 0) info = (info | XEN_DOMCTL_PFINFO_LPINTAB) >>> 0;
    out[i] = info;
  }
  return out;
}


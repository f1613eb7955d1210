/*
 * The machine-independent disk layer (NetBSD's dksubr + bufq): what every
 * disk driver shares between `strategy` and its hardware. A driver embeds
 * a `struct dk_softc` in its softc, gives it a `diskstart` routine, and
 * calls dk_fragdone() as the device answers; bufs go in by dk_strategy()
 * (or dk_io(), which also puts the calling thread to sleep until done).
 *
 *   struct dk_frag {                  // one device request, offered to diskstart
 *       uint64_t df_sector;           // first DEV_BSIZE sector
 *       uint32_t df_flags;            // the buf's B_READ / B_WRITE / B_FLUSH
 *       uint32_t df_nseg;             // 0 for a flush, else 1..DK_MAXSEGS
 *       uint32_t df_offset;           // byte offset of this piece in the buf
 *       uint32_t df_bytes;
 *       struct dk_seg {
 *           void   *ds_va;            // the data page (page-aligned kernel VA)
 *           uint8_t ds_first, ds_last;// sectors used in the page, inclusive
 *       } df_seg[DK_MAXSEGS];
 *   };
 *
 *   struct dk_softc {
 *       struct tailq_entry dk_bufq;      // waiting bufs, in arrival order (FIFO)
 *       struct tailq_entry dk_inflight;  // started bufs, in start order
 *       device_t dk_dev;
 *       int    (*dk_diskstart)(struct dk_softc *, struct buf *, struct dk_frag *);
 *       uint64_t dk_nsectors;            // disk size in DEV_BSIZE blocks
 *       uint32_t dk_secsize;             // the device's sector size (bytes)
 *       uint32_t dk_flags;               // DKF_*
 *       uint32_t dk_nqueued, dk_ninflight, dk_maxinflight;
 *       uint32_t dk_seq;                 // b_seq of the next buf
 *       uint64_t dk_nreads, dk_nwrites, dk_nflushes, dk_nerrors;
 *       uint64_t dk_bytesread, dk_byteswritten;
 *       struct dk_frag dk_frag;          // the piece being offered right now
 *   };
 *
 * Requests: a buf is cut into fragments of at most DK_MAXSEGS pages
 * (4 KiB pages, 512-byte sectors, Xen's 11-segment blkif request), each
 * offered to the driver by `diskstart(cpu, dksc, bp, frag)`, which answers
 *   0       taken: the driver will call dk_fragdone(bp, error) once for it,
 *           later (never from inside diskstart);
 *   EAGAIN  no room now: offered again at the next dk_start (dk_fragdone
 *           runs one; a driver that frees room otherwise calls dk_start);
 *   errno   refused: the buf fails with it (EOPNOTSUPP, EROFS, ENXIO...).
 * The buf completes once every fragment is answered; the first error wins
 * and its fragments not yet offered are abandoned.
 *
 * Ordering (ARCHITECTURE §6.1, the replay hazard): a buf starts only when
 * it conflicts with no started buf and with no earlier waiting one. Two
 * bufs conflict when their block ranges overlap and either writes; a flush
 * conflicts with everything before it (it starts when all earlier bufs
 * are done), but what follows may join it in flight, since it changes no
 * data. So no two requests in flight overlap where one writes, and a
 * driver replaying its in-flight requests after a restore, in any order,
 * gets what the first run got. Bufs that do not conflict overtake a
 * blocked one, as disksort would; conflicting ones keep arrival order.
 *
 * Holding (suspend): dk_hold stops starting bufs (they queue), dk_release
 * starts again. dk_fail_all ends everything with an error (the device is
 * gone) and refuses what comes later.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../hypervisor/public/cpu.js';
import { struct, record, array, u8, u32, u64 } from '../hypervisor/public/layout.js';
import { PAGE_SIZE } from '../arch/xen/include/vmparam.js';
import { TAILQ_INIT, TAILQ_FIRST, TAILQ_NEXT, TAILQ_INSERT_TAIL, TAILQ_REMOVE } from '../sys/sys/queue.js';
import { tailq_entry } from '../sys/sys/queue.js';
import { EAGAIN, EINVAL, ENOMEM, ENXIO } from '../sys/sys/errno.js';
import { curlwp } from '../sys/sys/kernel.js';
import { lwp } from '../sys/sys/lwp.js';
import { vptr, vptr_set, vu64, vu64_set } from '../sys/lib/libkern/libkern.js';
import { ksymtab, kcall, ksymresolve, type KSym } from '../sys/kern/kern_ksyms.js';
import { tsleep, preempt } from '../sys/kern/kern_synch.js';
import { panic } from '../sys/kern/subr_prf.js';
import {
  buf, B_ACTQ, DEV_BSIZE, B_READ, B_WRITE, B_FLUSH, B_OPMASK, BO_QUEUED, BO_INFLIGHT, BO_ALLISSUED,
  buf_writes, getiobuf, biodone,
} from './buf.js';

/** Host-side trace (DEBUG=guest:xbd): the disk layer is the block side. */
const dbg = createDebug('guest:xbd');

/** Pages one device request can name: blkif's BLKIF_MAX_SEGMENTS_PER_REQUEST. */
export const DK_MAXSEGS = 11;
/** Sectors (DEV_BSIZE) in a page. */
export const DK_SECTORS_PER_PAGE = PAGE_SIZE / DEV_BSIZE;

/** NetBSD's EROFS (sys/sys/errno.ts does not list it yet). */
export const EROFS = 30;

export const dk_seg = struct('struct dk_seg', {
  ds_va: u64,
  ds_first: u8,
  ds_last: u8,
});

export const dk_frag = struct('struct dk_frag', {
  df_sector: u64,
  df_flags: u32,
  df_nseg: u32,
  df_offset: u32,
  df_bytes: u32,
  df_seg: array(record(dk_seg), DK_MAXSEGS),
});

export const dk_softc = struct('struct dk_softc', {
  dk_bufq: record(tailq_entry),
  dk_inflight: record(tailq_entry),
  dk_dev: u64,
  dk_diskstart: u64,
  dk_nsectors: u64,
  dk_secsize: u32,
  dk_flags: u32,
  dk_nqueued: u32,
  dk_ninflight: u32,
  dk_maxinflight: u32,
  dk_seq: u32,
  dk_nreads: u64,
  dk_nwrites: u64,
  dk_nflushes: u64,
  dk_nerrors: u64,
  dk_bytesread: u64,
  dk_byteswritten: u64,
  dk_frag: record(dk_frag),
});

/* dk_flags */
/** dk_attach ran: the disk has a size. */
export const DKF_ATTACHED = 0x0001;
/** Writes fail with EROFS. */
export const DKF_READONLY = 0x0002;
/** Held (suspend): bufs queue but do not start. */
export const DKF_HELD = 0x0004;
/** The device is gone: every buf fails with ENXIO. */
export const DKF_DEAD = 0x0008;
/** dk_start is running (a nested call only asks it to look again). */
export const DKF_STARTING = 0x0010;
/** Something changed while dk_start ran: look again. */
export const DKF_RESTART = 0x0020;

const DK_BUFQ = dk_softc.offsetOf('dk_bufq');
const DK_INFLIGHT = dk_softc.offsetOf('dk_inflight');
const DK_FRAG = dk_softc.offsetOf('dk_frag');

export type DkView = ReturnType<typeof dk_softc.view>;

function dk_view(cpu: GuestCpu, dksc: number): DkView {
  return dk_softc.view(cpu.mem, dksc);
}

function dk_setflag(v: DkView, f: number, on: boolean): void {
  v.set('dk_flags', on ? v.get('dk_flags') | f : v.get('dk_flags') & ~f);
}

function dk_count(v: DkView, name: 'dk_nreads' | 'dk_nwrites' | 'dk_nflushes' | 'dk_nerrors' | 'dk_bytesread' | 'dk_byteswritten', n: number): void {
  vu64_set(v, name, vu64(v, name) + n);
}

/**
 * Prepare an embedded dk_softc (the softc is zeroed by autoconf): empty
 * queues, no size yet. `diskstart` is the driver's symbol.
 */
export function dk_init(cpu: GuestCpu, dksc: number, dev: number, diskstart: KSym): void {
  cpu.mem.fill(dksc, dk_softc.size, 0);
  TAILQ_INIT(cpu.mem, dksc + DK_BUFQ);
  TAILQ_INIT(cpu.mem, dksc + DK_INFLIGHT);
  const v = dk_view(cpu, dksc);
  vptr_set(v, 'dk_dev', dev);
  vptr_set(v, 'dk_diskstart', ksymresolve(cpu, diskstart));
  v.set('dk_secsize', DEV_BSIZE);
}

/**
 * The disk's geometry is known (NetBSD's dk_attach + disk_attach); bufs
 * that queued before it are checked against it now. Starting them is the
 * caller's (dk_release or dk_start).
 */
export function dk_attach(cpu: GuestCpu, dksc: number, nsectors: number, secsize: number, readonly: boolean): void {
  const v = dk_view(cpu, dksc);
  vu64_set(v, 'dk_nsectors', nsectors);
  v.set('dk_secsize', secsize);
  dk_setflag(v, DKF_READONLY, readonly);
  dk_setflag(v, DKF_DEAD, false);
  dk_setflag(v, DKF_ATTACHED, true);
  const q = dksc + DK_BUFQ;
  for (let l = TAILQ_FIRST(cpu.mem, q); l !== 0; ) {
    const next = TAILQ_NEXT(cpu.mem, q, l);
    const error = dk_check(cpu, dksc, l - B_ACTQ);
    if (error !== 0) {
      TAILQ_REMOVE(cpu.mem, l);
      v.set('dk_nqueued', v.get('dk_nqueued') - 1);
      dk_fail_now(cpu, dksc, l - B_ACTQ, error);
    }
    l = next;
  }
}

/** Byte range [start, end) of a buf on the disk, for the overlap rule. */
function dk_span(cpu: GuestCpu, bp: number): { start: number; end: number } {
  const v = buf.view(cpu.mem, bp);
  const start = vu64(v, 'b_blkno');
  return { start, end: start + Math.floor(v.get('b_bcount') / DEV_BSIZE) };
}

/**
 * May `later` not start while `earlier` is in flight (`earlierStarted`) or
 * still waiting ahead of it?
 */
export function dk_conflict(cpu: GuestCpu, earlier: number, later: number, earlierStarted: boolean): boolean {
  const eop = buf.view(cpu.mem, earlier).get('b_flags') & B_OPMASK;
  const lop = buf.view(cpu.mem, later).get('b_flags') & B_OPMASK;
  if (lop === B_FLUSH) return true;
  if (eop === B_FLUSH) return !earlierStarted;
  if (!buf_writes(cpu, earlier) && !buf_writes(cpu, later)) return false;
  const a = dk_span(cpu, earlier);
  const b = dk_span(cpu, later);
  return a.start < b.end && b.start < a.end;
}

/** Finish a buf that never started (validation, dead disk): off the queue, done. */
function dk_fail_now(cpu: GuestCpu, dksc: number, bp: number, error: number): void {
  const v = dk_view(cpu, dksc);
  dk_count(v, 'dk_nerrors', 1);
  biodone(cpu, bp, error);
}

/** Why `bp` cannot go to this disk (0: it can). Range checks wait for the size. */
function dk_check(cpu: GuestCpu, dksc: number, bp: number): number {
  const flags = dk_view(cpu, dksc).get('dk_flags');
  const b = buf.view(cpu.mem, bp);
  const op = b.get('b_flags') & B_OPMASK;
  const bcount = b.get('b_bcount');
  if (op !== B_READ && op !== B_WRITE && op !== B_FLUSH) return EINVAL;
  if (op === B_FLUSH) return 0;
  if (bcount === 0 || bcount % DEV_BSIZE !== 0 || vptr(b, 'b_data') % DEV_BSIZE !== 0) return EINVAL;
  if ((flags & DKF_ATTACHED) === 0) return 0;
  if (op === B_WRITE && flags & DKF_READONLY) return EROFS;
  return dk_span(cpu, bp).end > vu64(dk_view(cpu, dksc), 'dk_nsectors') ? EINVAL : 0;
}

/**
 * Queue a buf and start what can start (NetBSD's dk_strategy). Bad
 * requests finish at once with EINVAL, writes to a read-only disk with
 * EROFS, anything on a dead disk with ENXIO. Before the disk's size is
 * known (dk_attach) bufs wait in the queue and are checked then.
 */
export function dk_strategy(cpu: GuestCpu, dksc: number, bp: number): void {
  const v = dk_view(cpu, dksc);
  const b = buf.view(cpu.mem, bp);
  b.set('b_oflags', 0);
  b.set('b_error', 0);
  b.set('b_issued', 0);
  b.set('b_npending', 0);
  b.set('b_seq', v.get('dk_seq'));
  v.set('dk_seq', (v.get('dk_seq') + 1) >>> 0);
  if (v.get('dk_flags') & DKF_DEAD) return dk_fail_now(cpu, dksc, bp, ENXIO);
  const error = dk_check(cpu, dksc, bp);
  if (error !== 0) return dk_fail_now(cpu, dksc, bp, error);
  TAILQ_INSERT_TAIL(cpu.mem, dksc + DK_BUFQ, bp + B_ACTQ);
  b.set('b_oflags', BO_QUEUED);
  v.set('dk_nqueued', v.get('dk_nqueued') + 1);
  if (dbg.enabled) {
    const op = b.get('b_flags') & B_OPMASK;
    dbg('dk %s buf #%d blk %d+%d', op === B_READ ? 'read' : op === B_WRITE ? 'write' : 'flush', b.get('b_seq'), vu64(b, 'b_blkno'), b.get('b_bcount') / DEV_BSIZE);
  }
  dk_start(cpu, dksc);
}

/**
 * Fill the softc's dk_frag with the next piece of `bp` (from b_issued):
 * up to DK_MAXSEGS pages. Returns the fragment's address.
 */
export function dk_frag_build(cpu: GuestCpu, dksc: number, bp: number): number {
  const frag = dksc + DK_FRAG;
  cpu.mem.fill(frag, dk_frag.size, 0);
  const f = dk_frag.view(cpu.mem, frag);
  const b = buf.view(cpu.mem, bp);
  const op = b.get('b_flags') & B_OPMASK;
  const off = b.get('b_issued');
  f.set('df_flags', op);
  f.set('df_offset', off);
  if (op === B_FLUSH) return frag;
  const bcount = b.get('b_bcount');
  f.set('df_sector', BigInt(vu64(b, 'b_blkno') + off / DEV_BSIZE));
  let va = vptr(b, 'b_data') + off;
  let left = bcount - off;
  let nseg = 0;
  let bytes = 0;
  while (left > 0 && nseg < DK_MAXSEGS) {
    const page = Math.floor(va / PAGE_SIZE) * PAGE_SIZE;
    const n = Math.min(left, page + PAGE_SIZE - va);
    const first = (va - page) / DEV_BSIZE;
    const s = f.sub('df_seg', nseg);
    vptr_set(s, 'ds_va', page);
    s.set('ds_first', first);
    s.set('ds_last', first + n / DEV_BSIZE - 1);
    nseg++;
    bytes += n;
    va += n;
    left -= n;
  }
  f.set('df_nseg', nseg);
  f.set('df_bytes', bytes);
  return frag;
}

/** Has every fragment of `bp` been handed out? */
function dk_allissued(cpu: GuestCpu, bp: number): boolean {
  return (buf.view(cpu.mem, bp).get('b_oflags') & BO_ALLISSUED) !== 0;
}

/**
 * Offer `bp`'s remaining fragments to the driver. True when all were
 * taken (or the buf failed), false when the driver is out of room.
 */
function dk_issue(cpu: GuestCpu, dksc: number, bp: number): boolean {
  const v = dk_view(cpu, dksc);
  const b = buf.view(cpu.mem, bp);
  while (!dk_allissued(cpu, bp)) {
    const frag = dk_frag_build(cpu, dksc, bp);
    const fv = dk_frag.view(cpu.mem, frag);
    const error = kcall(cpu, vptr(v, 'dk_diskstart'), dksc, bp, frag);
    if (error === EAGAIN) return false;
    if (error !== 0) {
      if (b.get('b_error') === 0) b.set('b_error', error);
      b.set('b_oflags', b.get('b_oflags') | BO_ALLISSUED);
      if (b.get('b_npending') === 0) dk_done(cpu, dksc, bp);
      return true;
    }
    b.set('b_npending', b.get('b_npending') + 1);
    const issued = b.get('b_issued') + fv.get('df_bytes');
    b.set('b_issued', issued);
    if ((b.get('b_flags') & B_OPMASK) === B_FLUSH || issued >= b.get('b_bcount')) b.set('b_oflags', b.get('b_oflags') | BO_ALLISSUED);
  }
  return true;
}

/** Move a waiting buf to the in-flight list. */
function dk_begin(cpu: GuestCpu, dksc: number, bp: number): void {
  const v = dk_view(cpu, dksc);
  const b = buf.view(cpu.mem, bp);
  TAILQ_REMOVE(cpu.mem, bp + B_ACTQ);
  TAILQ_INSERT_TAIL(cpu.mem, dksc + DK_INFLIGHT, bp + B_ACTQ);
  b.set('b_oflags', (b.get('b_oflags') & ~BO_QUEUED) | BO_INFLIGHT);
  v.set('dk_nqueued', v.get('dk_nqueued') - 1);
  const n = v.get('dk_ninflight') + 1;
  v.set('dk_ninflight', n);
  if (n > v.get('dk_maxinflight')) v.set('dk_maxinflight', n);
}

/** May the waiting buf `bp` start now (the ordering rule)? */
function dk_may_start(cpu: GuestCpu, dksc: number, bp: number): boolean {
  const mem = cpu.mem;
  const inflight = dksc + DK_INFLIGHT;
  for (let l = TAILQ_FIRST(mem, inflight); l !== 0; l = TAILQ_NEXT(mem, inflight, l)) {
    if (dk_conflict(cpu, l - B_ACTQ, bp, true)) return false;
  }
  const q = dksc + DK_BUFQ;
  for (let l = TAILQ_FIRST(mem, q); l !== 0 && l !== bp + B_ACTQ; l = TAILQ_NEXT(mem, q, l)) {
    if (dk_conflict(cpu, l - B_ACTQ, bp, false)) return false;
  }
  return true;
}

/** One pass: finish offering started bufs, then start waiting ones. False when the driver is full. */
function dk_start_pass(cpu: GuestCpu, dksc: number): boolean {
  const mem = cpu.mem;
  const inflight = dksc + DK_INFLIGHT;
  for (let l = TAILQ_FIRST(mem, inflight); l !== 0; ) {
    const next = TAILQ_NEXT(mem, inflight, l);
    if (!dk_allissued(cpu, l - B_ACTQ) && !dk_issue(cpu, dksc, l - B_ACTQ)) return false;
    l = next;
  }
  const q = dksc + DK_BUFQ;
  for (let l = TAILQ_FIRST(mem, q); l !== 0; ) {
    const bp = l - B_ACTQ;
    if (!dk_may_start(cpu, dksc, bp)) {
      l = TAILQ_NEXT(mem, q, l);
      continue;
    }
    dk_begin(cpu, dksc, bp);
    if (!dk_issue(cpu, dksc, bp)) return false;
    // bp left the queue (and may be done): walk it again from the start.
    l = TAILQ_FIRST(mem, q);
  }
  return true;
}

/**
 * Start whatever the ordering rule and the driver allow (NetBSD's
 * dk_start). Safe to call at any time; a call made while it runs (from a
 * completion inside diskstart, say) makes it look once more.
 */
export function dk_start(cpu: GuestCpu, dksc: number): void {
  const v = dk_view(cpu, dksc);
  const flags = v.get('dk_flags');
  if (flags & (DKF_HELD | DKF_DEAD) || (flags & DKF_ATTACHED) === 0) return;
  if (flags & DKF_STARTING) {
    dk_setflag(v, DKF_RESTART, true);
    return;
  }
  dk_setflag(v, DKF_STARTING, true);
  for (let guard = 0; ; guard++) {
    if (guard > 1_000_000) panic(cpu, 'dk_start: no progress');
    dk_setflag(v, DKF_RESTART, false);
    if (!dk_start_pass(cpu, dksc)) break;
    if ((v.get('dk_flags') & DKF_RESTART) === 0 || v.get('dk_flags') & (DKF_HELD | DKF_DEAD)) break;
  }
  dk_setflag(v, DKF_STARTING | DKF_RESTART, false);
}

/** A started buf is over: off the in-flight list, counted, handed back. */
function dk_done(cpu: GuestCpu, dksc: number, bp: number): void {
  const v = dk_view(cpu, dksc);
  const b = buf.view(cpu.mem, bp);
  TAILQ_REMOVE(cpu.mem, bp + B_ACTQ);
  v.set('dk_ninflight', v.get('dk_ninflight') - 1);
  const error = b.get('b_error');
  const op = b.get('b_flags') & B_OPMASK;
  if (error !== 0) dk_count(v, 'dk_nerrors', 1);
  else if (op === B_READ) {
    dk_count(v, 'dk_nreads', 1);
    dk_count(v, 'dk_bytesread', b.get('b_bcount'));
  } else if (op === B_WRITE) {
    dk_count(v, 'dk_nwrites', 1);
    dk_count(v, 'dk_byteswritten', b.get('b_bcount'));
  } else dk_count(v, 'dk_nflushes', 1);
  if (dbg.enabled) dbg('dk done buf #%d error %d', b.get('b_seq'), error);
  biodone(cpu, bp, error);
}

/**
 * The driver finished one fragment of `bp` (interrupt context): when it
 * was the last, the buf completes; then more work may start.
 */
export function dk_fragdone(cpu: GuestCpu, dksc: number, bp: number, error: number): void {
  const b = buf.view(cpu.mem, bp);
  const pending = b.get('b_npending');
  if (pending === 0 || (b.get('b_oflags') & BO_INFLIGHT) === 0) panic(cpu, 'dk_fragdone: buf %p has no fragment in flight', bp);
  b.set('b_npending', pending - 1);
  if (error !== 0) {
    if (b.get('b_error') === 0) b.set('b_error', error);
    b.set('b_oflags', b.get('b_oflags') | BO_ALLISSUED);
  }
  if (pending - 1 === 0 && dk_allissued(cpu, bp)) dk_done(cpu, dksc, bp);
  dk_start(cpu, dksc);
}

/** Stop starting bufs (suspend); they keep queueing. */
export function dk_hold(cpu: GuestCpu, dksc: number): void {
  dk_setflag(dk_view(cpu, dksc), DKF_HELD, true);
}

/** Start bufs again after dk_hold. */
export function dk_release(cpu: GuestCpu, dksc: number): void {
  dk_setflag(dk_view(cpu, dksc), DKF_HELD, false);
  dk_start(cpu, dksc);
}

/**
 * The device is gone: finish every started buf (the driver has dropped
 * their fragments) and every waiting one with `error`, and refuse later
 * ones with ENXIO. Returns the bufs failed.
 */
export function dk_fail_all(cpu: GuestCpu, dksc: number, error: number): number {
  const v = dk_view(cpu, dksc);
  dk_setflag(v, DKF_DEAD, true);
  let n = 0;
  for (const head of [dksc + DK_INFLIGHT, dksc + DK_BUFQ]) {
    for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_FIRST(cpu.mem, head)) {
      const bp = l - B_ACTQ;
      const b = buf.view(cpu.mem, bp);
      TAILQ_REMOVE(cpu.mem, l);
      if (head === dksc + DK_INFLIGHT) v.set('dk_ninflight', v.get('dk_ninflight') - 1);
      else v.set('dk_nqueued', v.get('dk_nqueued') - 1);
      b.set('b_npending', 0);
      dk_count(v, 'dk_nerrors', 1);
      biodone(cpu, bp, error);
      n++;
    }
  }
  return n;
}

/**
 * Read, write or flush from a thread, continuation style: the calling lwp
 * sleeps and continues at `cont(cpu, arg, error)` with the I/O's error
 * (0 on success). `flags` is B_READ, B_WRITE or B_FLUSH; `nblks` DEV_BSIZE
 * blocks from `blkno` to or from `data`. The calling step must return
 * right after.
 */
export function dk_io(cpu: GuestCpu, dksc: number, flags: number, blkno: number, nblks: number, data: number, cont: KSym): void {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, 'dk_io: not called from an lwp');
  const bp = getiobuf(cpu, flags, blkno, nblks, data);
  if (bp === 0) {
    preempt(cpu, cont);
    lwp.view(cpu.mem, l).set('l_sleeperr', ENOMEM);
    return;
  }
  vptr_set(buf.view(cpu.mem, bp), 'b_lwp', l);
  // Asleep before the I/O starts, so a completion that comes at once
  // (a refused request) wakes it like any other.
  tsleep(cpu, bp, 0, cont, 'biowait');
  dk_strategy(cpu, dksc, bp);
}

/** What the disk layer holds, for tests and ddb-like dumps. */
export interface DkStats {
  readonly nqueued: number;
  readonly ninflight: number;
  readonly maxinflight: number;
  readonly nreads: number;
  readonly nwrites: number;
  readonly nflushes: number;
  readonly nerrors: number;
  readonly bytesread: number;
  readonly byteswritten: number;
  readonly flags: number;
}

export function dk_stats(cpu: GuestCpu, dksc: number): DkStats {
  const v = dk_view(cpu, dksc);
  return {
    nqueued: v.get('dk_nqueued'), ninflight: v.get('dk_ninflight'), maxinflight: v.get('dk_maxinflight'),
    nreads: vu64(v, 'dk_nreads'), nwrites: vu64(v, 'dk_nwrites'), nflushes: vu64(v, 'dk_nflushes'),
    nerrors: vu64(v, 'dk_nerrors'), bytesread: vu64(v, 'dk_bytesread'), byteswritten: vu64(v, 'dk_byteswritten'),
    flags: v.get('dk_flags'),
  };
}

/** The started bufs, in start order (a JS array for this entry only). */
export function dk_inflight_list(cpu: GuestCpu, dksc: number): number[] {
  const out: number[] = [];
  const head = dksc + DK_INFLIGHT;
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) out.push(l - B_ACTQ);
  return out;
}

/** The waiting bufs, in arrival order. */
export function dk_queued_list(cpu: GuestCpu, dksc: number): number[] {
  const out: number[] = [];
  const head = dksc + DK_BUFQ;
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) out.push(l - B_ACTQ);
  return out;
}

export const dksubr_ksyms = ksymtab({
  dk_view, dk_setflag, dk_count, dk_init, dk_attach, dk_span, dk_conflict, dk_fail_now, dk_check, dk_strategy, dk_frag_build,
  dk_allissued, dk_issue, dk_begin, dk_may_start, dk_start_pass, dk_start, dk_done, dk_fragdone, dk_hold, dk_release,
  dk_fail_all, dk_io, dk_stats, dk_inflight_list, dk_queued_list,
});

/*
 * Block I/O buffers (<sys/buf.h>, the part a disk driver sees): one
 * transfer between a range of 512-byte blocks and kernel memory, or a
 * cache flush. A buf lives in guest memory, like everything it points at,
 * so an I/O in flight survives a save/restore with the rest of the kernel.
 *
 *   struct buf {
 *       struct tailq_entry b_actq;   // its disk's queue or in-flight list
 *       uint64_t b_blkno;            // first DEV_BSIZE block (unused by a flush)
 *       void    *b_data;             // kernel VA of the data, DEV_BSIZE-aligned
 *       uint32_t b_bcount;           // bytes, a multiple of DEV_BSIZE (0 for a flush)
 *       uint32_t b_resid;            // bytes not transferred, set at completion
 *       uint32_t b_flags;            // B_READ | B_WRITE | B_FLUSH (one of them), B_*
 *       uint32_t b_oflags;           // BO_*: where the disk layer has it
 *       int32_t  b_error;            // 0 or an errno, set at completion
 *       uint32_t b_seq;              // arrival order at its disk (traces, tests)
 *       uint32_t b_issued;           // bytes handed to the driver so far
 *       uint32_t b_npending;         // fragments the driver holds
 *       void   (*b_iodone)(struct buf *);  // completion in interrupt context, or NULL
 *       struct lwp *b_lwp;           // thread asleep on this buf (biowait), or NULL
 *       void    *b_private;          // the owner's
 *   };
 *
 * Completion (biodone) either calls `b_iodone(cpu, bp)` in interrupt
 * context, or wakes the thread in `b_lwp` with the I/O's error as the
 * result of its sleep and frees the buf (dk_io below). A buf with neither
 * is just marked BO_DONE for its owner to look at.
 */
import type { GuestCpu } from '../hypervisor/public/cpu.js';
import { struct, record, u32, i32, u64 } from '../hypervisor/public/layout.js';
import { tailq_entry } from '../sys/sys/queue.js';
import { lwp, LSRUN } from '../sys/sys/lwp.js';
import { vptr, vptr_set, vu64, vu64_set } from '../sys/lib/libkern/libkern.js';
import { ksymtab, kcall } from '../sys/kern/kern_ksyms.js';
import { kmem_zalloc, kmem_free } from '../sys/kern/subr_kmem.js';
import { wakeup } from '../sys/kern/kern_synch.js';

export const buf = struct('struct buf', {
  b_actq: record(tailq_entry),
  b_blkno: u64,
  b_data: u64,
  b_bcount: u32,
  b_resid: u32,
  b_flags: u32,
  b_oflags: u32,
  b_error: i32,
  b_seq: u32,
  b_issued: u32,
  b_npending: u32,
  b_iodone: u64,
  b_lwp: u64,
  b_private: u64,
});

export type BufView = ReturnType<typeof buf.view>;

/** Offset of the list link: a link address minus this is the buf. */
export const B_ACTQ = buf.offsetOf('b_actq');

/** The unit of b_blkno and of every transfer (NetBSD's DEV_BSIZE). */
export const DEV_BSIZE = 512;
export const DEV_BSHIFT = 9;

/* b_flags: the operation (exactly one) and modifiers. */
/** Read from the disk into b_data. */
export const B_READ = 0x0000_0001;
/** Write b_data to the disk. */
export const B_WRITE = 0x0000_0002;
/** Make every write completed before it durable (no data). */
export const B_FLUSH = 0x0000_0004;
export const B_OPMASK = B_READ | B_WRITE | B_FLUSH;

/* b_oflags: owned by the disk layer. */
/** Finished: b_error and b_resid are final. */
export const BO_DONE = 0x0001;
/** On its disk's queue, waiting to start. */
export const BO_QUEUED = 0x0002;
/** Started: on its disk's in-flight list. */
export const BO_INFLIGHT = 0x0004;
/** Every fragment has been handed to the driver (or the rest was abandoned). */
export const BO_ALLISSUED = 0x0008;

/** The operation bits of a buf. */
export function buf_op(cpu: GuestCpu, bp: number): number {
  return buf.view(cpu.mem, bp).get('b_flags') & B_OPMASK;
}

/** Does this buf change the disk? */
export function buf_writes(cpu: GuestCpu, bp: number): boolean {
  return (buf_op(cpu, bp) & B_WRITE) !== 0;
}

/** First block and number of blocks of a transfer (0 blocks for a flush). */
export function buf_range(cpu: GuestCpu, bp: number): { blkno: number; nblks: number } {
  const v = buf.view(cpu.mem, bp);
  return { blkno: vu64(v, 'b_blkno'), nblks: Math.floor(v.get('b_bcount') / DEV_BSIZE) };
}

/**
 * A zeroed buf for one transfer (getiobuf): `flags` B_READ/B_WRITE/B_FLUSH,
 * `nblks` blocks from `blkno` to or from `data`. 0 when memory is short.
 */
export function getiobuf(cpu: GuestCpu, flags: number, blkno: number, nblks: number, data: number): number {
  const bp = kmem_zalloc(cpu, buf.size);
  if (bp === 0) return 0;
  const v = buf.view(cpu.mem, bp);
  v.set('b_flags', flags);
  vu64_set(v, 'b_blkno', blkno);
  vptr_set(v, 'b_data', data);
  v.set('b_bcount', nblks * DEV_BSIZE);
  return bp;
}

/** Free a buf from getiobuf (it must be on no list). */
export function putiobuf(cpu: GuestCpu, bp: number): void {
  kmem_free(cpu, bp, buf.size);
}

/**
 * The transfer is over (biodone): record the outcome and tell the owner.
 * Interrupt context; the disk layer has already taken the buf off its lists.
 */
export function biodone(cpu: GuestCpu, bp: number, error: number): void {
  const v = buf.view(cpu.mem, bp);
  v.set('b_error', error);
  v.set('b_resid', error === 0 ? 0 : v.get('b_bcount'));
  v.set('b_oflags', (v.get('b_oflags') & ~(BO_QUEUED | BO_INFLIGHT)) | BO_DONE);
  const iodone = vptr(v, 'b_iodone');
  if (iodone !== 0) {
    kcall(cpu, iodone, bp);
    return;
  }
  const l = vptr(v, 'b_lwp');
  if (l === 0) return;
  // biowait: the sleep on bp ends with the I/O's error as its result. wakeup
  // makes the thread runnable with result 0; the scheduler hands l_sleeperr
  // to the continuation, so setting it afterwards passes the error along.
  if (wakeup(cpu, bp) > 0) {
    const lv = lwp.view(cpu.mem, l);
    if (lv.get('l_stat') === LSRUN) lv.set('l_sleeperr', error);
  }
  putiobuf(cpu, bp);
}

export const buf_ksyms = ksymtab({ buf_op, buf_writes, buf_range, getiobuf, putiobuf, biodone });

/*
 * The `blk` workload: write sequence-numbered, checksummed blocks over the
 * disk (xbd0) in a cycle, read each one back some writes later and check
 * it, and flush now and then. What a restore must not break: the disk
 * driver replays the requests in flight at the save, and blocks written
 * before the save still verify after it.
 *
 *   blk_unit=U      the disk: xbd<U> (default 0)
 *   blk_sectors=S   sectors (512 bytes) per block (default 8: 4 KiB)
 *   blk_blocks=N    blocks in the cycle (default 0: as many as fit)
 *   blk_batch=B     blocks per request (default 4)
 *   blk_lag=L       a block is read back L blocks after it was written
 *                   (default 256; at most half the cycle; 0: at once)
 *   blk_flush=F     a flush after every F write requests (default 16; 0: never)
 *   blk_ticks=T     ticks between two steps (default 1)
 *   blk_seed=X      the payload's seed (default 1)
 *   blk_wait=W      seconds to wait for the disk to connect (default 60)
 *
 * Block i of the cycle sits at sector i*S; its format (header with magic,
 * sequence number, sector, seed, CRC-32 of the payload; payload from a
 * generator seeded by (seed, seq, sector)) is in wl_blk_block.ts. The
 * sequence number of the latest good write of every block is kept in a
 * table in guest memory, so what the disk should hold is a function of
 * guest memory alone: after a restore the verifier simply carries on.
 *
 * One step, every T ticks, one request at a time: write B blocks at the
 * write cursor (sequence numbers seq+1 .. seq+B); on success record them
 * in the table; every F writes, a flush; then read back the B blocks L
 * behind the write cursor and check each one the table knows. A block
 * that does not check is counted in `errors` and reported (the first
 * few); so is a failed request (its blocks are then forgotten: nobody
 * knows what landed). A read-only disk fails the workload at once
 * (status "failed: read-only disk"); so does a disk that never connects.
 * A suspend parks the thread between two steps (the request in flight, if
 * any, is the driver's to replay).
 *
 * Counters: writes (blocks written), verified (blocks read back good),
 * errors, flushes, cycles (passes of the write cursor over the disk).
 *
 *   struct blk_wl {
 *       uint64_t bw_wbuf;          // B blocks being written (uvm_km_alloc)
 *       uint64_t bw_rbuf;          // B blocks read back
 *       uint64_t bw_seqs;          // uint64_t[N]: latest good write of each block (0: none)
 *       uint64_t bw_seq;           // latest sequence number given out
 *       uint64_t bw_wseq;          // first sequence number of the write in flight
 *       uint64_t bw_sectors;       // the disk's size
 *       uint32_t bw_unit, bw_nblocks, bw_bsize (bytes), bw_batch, bw_lag;
 *       uint32_t bw_flush_every, bw_unflushed, bw_seed, bw_ticks;
 *       uint32_t bw_wcursor;       // first block of the next (or in-flight) write
 *       uint32_t bw_vcursor;       // first block of the read in flight
 *       uint32_t bw_waited;        // ticks spent waiting for the disk
 *       uint32_t bw_reported;      // errors printed
 *       uint32_t bw_flags;         // BWF_*
 *       int32_t  bw_c[5];          // counter indices
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, i32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kpause } from '../kern/kern_synch.js';
import { printf } from '../kern/subr_prf.js';
import { uvm_km_alloc } from '../uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../uvm/uvm.js';
import { u64_get, u64_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { HZ } from '../sys/param.js';
import { ENXIO, EOPNOTSUPP } from '../sys/errno.js';
import { EROFS } from '../../dev/dksubr.js';
import { xbd_read, xbd_write, xbd_flush, xbd_info } from '../../arch/xen/xen/xbd_io.js';
import { XBD_STATE_CONNECTED } from '../../arch/xen/xen/xbd_var.js';
import { xen_suspending, xen_suspend_park } from '../../arch/xen/xen/xen_suspend.js';
import { wl_from_init, wl_counter, wl_add, wl_status, wl_fail, wl_param, wl_private, wl_private_alloc } from './workload.js';
import { blk_fill, blk_verify, BLK_SECTOR } from './wl_blk_block.js';

/** Most blocks in a cycle (the table is 8 bytes a block). */
export const BLK_MAX_BLOCKS = 1 << 18;
/** Most bytes in one request. */
export const BLK_MAX_REQUEST = 1 << 20;
const BLK_REPORT_MAX = 8;

/* bw_flags */
/** The disk has no flush (EOPNOTSUPP): said once, not tried again. */
const BWF_NOFLUSH = 0x1;

const C_WRITES = 0;
const C_VERIFIED = 1;
const C_ERRORS = 2;
const C_FLUSHES = 3;
const C_CYCLES = 4;
const COUNTERS = Object.freeze(['writes', 'verified', 'errors', 'flushes', 'cycles'] as const);

export const blk_wl = struct('struct blk_wl', {
  bw_wbuf: u64,
  bw_rbuf: u64,
  bw_seqs: u64,
  bw_seq: u64,
  bw_wseq: u64,
  bw_sectors: u64,
  bw_unit: u32,
  bw_nblocks: u32,
  bw_bsize: u32,
  bw_batch: u32,
  bw_lag: u32,
  bw_flush_every: u32,
  bw_unflushed: u32,
  bw_seed: u32,
  bw_ticks: u32,
  bw_wcursor: u32,
  bw_vcursor: u32,
  bw_waited: u32,
  bw_reported: u32,
  bw_flags: u32,
  bw_c: array(i32, COUNTERS.length),
});

function bw_view(cpu: GuestCpu, wl: number) {
  return blk_wl.view(cpu.mem, wl_private(cpu, wl));
}

function blk_count(cpu: GuestCpu, wl: number, c: number, n = 1): void {
  wl_add(cpu, wl, bw_view(cpu, wl).getAt('bw_c', c), n);
}

/** The table entry of block i: its latest good write (0: none known). */
function blk_seq_of(cpu: GuestCpu, wl: number, i: number): number {
  return u64_get(cpu.mem, vu64(bw_view(cpu, wl), 'bw_seqs') + i * 8);
}

function blk_seq_set(cpu: GuestCpu, wl: number, i: number, seq: number): void {
  u64_set(cpu.mem, vu64(bw_view(cpu, wl), 'bw_seqs') + i * 8, seq);
}

/** Sector of block i. */
function blk_sector(cpu: GuestCpu, wl: number, i: number): number {
  return (i * bw_view(cpu, wl).get('bw_bsize')) / BLK_SECTOR;
}

/** Count an error; print it if not too many were. */
function blk_error(cpu: GuestCpu, wl: number, what: string): void {
  const v = bw_view(cpu, wl);
  blk_count(cpu, wl, C_ERRORS);
  const n = v.get('bw_reported');
  if (n < BLK_REPORT_MAX) printf(cpu, 'blk: %s\n', what);
  else if (n === BLK_REPORT_MAX) printf(cpu, 'blk: more errors; not reporting them\n');
  v.set('bw_reported', n + 1);
}

/** First step: parameters and counters, then wait for the disk. */
export function workload_blk(cpu: GuestCpu, wl: number, _error: number): void {
  if (wl_from_init(cpu, wl)) return;
  if (wl_private_alloc(cpu, wl, blk_wl.size) === 0) {
    wl_fail(cpu, wl, 'no memory for its state');
    return;
  }
  const v = bw_view(cpu, wl);
  COUNTERS.forEach((name, i) => v.setAt('bw_c', i, wl_counter(cpu, wl, name)));
  v.set('bw_unit', wl_param(cpu, 'blk_unit', 0, 0, 255));
  v.set('bw_seed', wl_param(cpu, 'blk_seed', 1, 0, 0xffff_ffff) >>> 0);
  v.set('bw_ticks', wl_param(cpu, 'blk_ticks', 1, 1, 60 * HZ));
  v.set('bw_flush_every', wl_param(cpu, 'blk_flush', 16, 0, 1_000_000));
  wl_status(cpu, wl, `waiting for xbd${v.get('bw_unit')}`);
  kpause(cpu, 'blkwait', 1, 'blk_wait');
}

/** Once a tick until the disk is connected. */
export function blk_wait(cpu: GuestCpu, wl: number, _error: number): void {
  const v = bw_view(cpu, wl);
  const unit = v.get('bw_unit');
  const info = xbd_info(cpu, unit);
  if (info?.state === XBD_STATE_CONNECTED) {
    blk_setup(cpu, wl);
    return;
  }
  const waited = v.get('bw_waited') + 1;
  v.set('bw_waited', waited);
  if (waited > wl_param(cpu, 'blk_wait', 60, 1, 86400) * HZ) {
    wl_fail(cpu, wl, info === undefined ? `no disk xbd${unit}` : `xbd${unit} never connected`);
    return;
  }
  kpause(cpu, 'blkwait', 1, 'blk_wait');
}

/** The disk is there: size the cycle, allocate, start. */
function blk_setup(cpu: GuestCpu, wl: number): void {
  const v = bw_view(cpu, wl);
  const unit = v.get('bw_unit');
  const info = xbd_info(cpu, unit);
  if (info === undefined) {
    wl_fail(cpu, wl, `no disk xbd${unit}`);
    return;
  }
  if (info.readonly) {
    wl_fail(cpu, wl, 'read-only disk');
    return;
  }
  const sectors = wl_param(cpu, 'blk_sectors', 8, 1, 128);
  const bsize = sectors * BLK_SECTOR;
  const batch = Math.min(wl_param(cpu, 'blk_batch', 4, 1, 256), Math.floor(BLK_MAX_REQUEST / bsize));
  const fit = Math.min(Math.floor(info.sectors / sectors), BLK_MAX_BLOCKS);
  const want = wl_param(cpu, 'blk_blocks', 0, 0, BLK_MAX_BLOCKS);
  // Whole requests only: every block is written, and read back, in the same batch each cycle.
  const nblocks = Math.floor((want === 0 ? fit : Math.min(want, fit)) / batch) * batch;
  if (nblocks === 0) {
    wl_fail(cpu, wl, `disk too small (${info.sectors} sectors)`);
    return;
  }
  const lag = Math.min(Math.floor(wl_param(cpu, 'blk_lag', 256, 0, BLK_MAX_BLOCKS) / batch), Math.floor(nblocks / batch / 2)) * batch;
  const wbuf = uvm_km_alloc(cpu, batch * bsize, UVM_KMF_ZERO);
  const rbuf = uvm_km_alloc(cpu, batch * bsize, UVM_KMF_ZERO);
  const seqs = uvm_km_alloc(cpu, nblocks * 8, UVM_KMF_ZERO);
  if (wbuf === 0 || rbuf === 0 || seqs === 0) {
    wl_fail(cpu, wl, 'no memory for its buffers');
    return;
  }
  vu64_set(v, 'bw_wbuf', wbuf);
  vu64_set(v, 'bw_rbuf', rbuf);
  vu64_set(v, 'bw_seqs', seqs);
  vu64_set(v, 'bw_sectors', info.sectors);
  v.set('bw_bsize', bsize);
  v.set('bw_batch', batch);
  v.set('bw_nblocks', nblocks);
  v.set('bw_lag', lag);
  printf(cpu, 'blk: xbd%u, %lu sectors%s: %u blocks of %u bytes, %u a request, read back %u blocks later, flush every %u, seed %u\n',
    unit, info.sectors, info.flush ? '' : ' (no flush)', nblocks, bsize, batch, lag, v.get('bw_flush_every'), v.get('bw_seed'));
  wl_status(cpu, wl, 'running');
  blk_write_next(cpu, wl, 0);
}

/** Write the next batch at the write cursor (after a suspend, if one is under way). */
export function blk_write_next(cpu: GuestCpu, wl: number, _error: number): void {
  if (xen_suspending(cpu)) {
    xen_suspend_park(cpu, 'blk_write_next');
    return;
  }
  const v = bw_view(cpu, wl);
  const bsize = v.get('bw_bsize');
  const batch = v.get('bw_batch');
  const first = v.get('bw_wcursor');
  const seq = vu64(v, 'bw_seq') + 1;
  const seed = v.get('bw_seed');
  const bytes = new Uint8Array(batch * bsize);
  for (let k = 0; k < batch; k++) blk_fill(bytes, k * bsize, bsize, seed, seq + k, blk_sector(cpu, wl, first + k));
  const wbuf = vu64(v, 'bw_wbuf');
  cpu.mem.writeBytes(wbuf, bytes);
  vu64_set(v, 'bw_wseq', seq);
  vu64_set(v, 'bw_seq', seq + batch - 1);
  xbd_write(cpu, v.get('bw_unit'), blk_sector(cpu, wl, first), (batch * bsize) / BLK_SECTOR, wbuf, 'blk_written');
}

/** The write is done: record it, flush if it is time, then read back. */
export function blk_written(cpu: GuestCpu, wl: number, error: number): void {
  const v = bw_view(cpu, wl);
  const batch = v.get('bw_batch');
  const first = v.get('bw_wcursor');
  const seq = vu64(v, 'bw_wseq');
  if (error === EROFS || error === ENXIO) {
    wl_fail(cpu, wl, error === EROFS ? 'read-only disk' : `xbd${v.get('bw_unit')} is gone`);
    return;
  }
  for (let k = 0; k < batch; k++) blk_seq_set(cpu, wl, first + k, error === 0 ? seq + k : 0);
  if (error === 0) blk_count(cpu, wl, C_WRITES, batch);
  else blk_error(cpu, wl, `write of blocks ${first}..${first + batch - 1} (sector ${blk_sector(cpu, wl, first)}) failed: error ${error}`);
  let next = first + batch;
  if (next >= v.get('bw_nblocks')) {
    next = 0;
    blk_count(cpu, wl, C_CYCLES);
  }
  v.set('bw_wcursor', next);
  const unflushed = v.get('bw_unflushed') + 1;
  v.set('bw_unflushed', unflushed);
  const every = v.get('bw_flush_every');
  if (every > 0 && unflushed >= every && (v.get('bw_flags') & BWF_NOFLUSH) === 0) {
    xbd_flush(cpu, v.get('bw_unit'), 'blk_flushed');
    return;
  }
  blk_verify_next(cpu, wl, 0);
}

export function blk_flushed(cpu: GuestCpu, wl: number, error: number): void {
  const v = bw_view(cpu, wl);
  v.set('bw_unflushed', 0);
  if (error === EOPNOTSUPP) {
    printf(cpu, 'blk: xbd%u cannot flush; writes are not made durable\n', v.get('bw_unit'));
    v.set('bw_flags', v.get('bw_flags') | BWF_NOFLUSH);
  } else if (error !== 0) {
    blk_error(cpu, wl, `flush failed: error ${error}`);
  } else {
    blk_count(cpu, wl, C_FLUSHES);
  }
  blk_verify_next(cpu, wl, 0);
}

/** Read back the batch `bw_lag` blocks behind the write cursor, if anything is known of it. */
export function blk_verify_next(cpu: GuestCpu, wl: number, _error: number): void {
  const v = bw_view(cpu, wl);
  const n = v.get('bw_nblocks');
  const batch = v.get('bw_batch');
  const first = (v.get('bw_wcursor') + n - batch - v.get('bw_lag')) % n;
  let known = false;
  for (let k = 0; k < batch && !known; k++) known = blk_seq_of(cpu, wl, first + k) !== 0;
  if (!known) {
    kpause(cpu, 'blk', v.get('bw_ticks'), 'blk_write_next');
    return;
  }
  v.set('bw_vcursor', first);
  xbd_read(cpu, v.get('bw_unit'), blk_sector(cpu, wl, first), (batch * v.get('bw_bsize')) / BLK_SECTOR, vu64(v, 'bw_rbuf'), 'blk_readback');
}

/** Check what was read back against the table. */
export function blk_readback(cpu: GuestCpu, wl: number, error: number): void {
  const v = bw_view(cpu, wl);
  const batch = v.get('bw_batch');
  const bsize = v.get('bw_bsize');
  const first = v.get('bw_vcursor');
  if (error === ENXIO) {
    wl_fail(cpu, wl, `xbd${v.get('bw_unit')} is gone`);
    return;
  }
  if (error !== 0) {
    blk_error(cpu, wl, `read of blocks ${first}..${first + batch - 1} (sector ${blk_sector(cpu, wl, first)}) failed: error ${error}`);
  } else {
    const bytes = cpu.mem.readBytes(vu64(v, 'bw_rbuf'), batch * bsize);
    const seed = v.get('bw_seed');
    let good = 0;
    for (let k = 0; k < batch; k++) {
      const i = first + k;
      const seq = blk_seq_of(cpu, wl, i);
      if (seq === 0) continue;
      const why = blk_verify(bytes, k * bsize, bsize, seed, seq, blk_sector(cpu, wl, i));
      if (why === '') {
        good++;
        continue;
      }
      blk_error(cpu, wl, `block ${i} (sector ${blk_sector(cpu, wl, i)}), write ${seq}: ${why}`);
      // Counted once: what is there now is unknown until it is written again.
      blk_seq_set(cpu, wl, i, 0);
    }
    blk_count(cpu, wl, C_VERIFIED, good);
  }
  kpause(cpu, 'blk', v.get('bw_ticks'), 'blk_write_next');
}

export const wl_blk_ksyms = ksymtab({
  bw_view, blk_count, blk_seq_of, blk_seq_set, blk_sector, blk_error, workload_blk, blk_wait, blk_setup, blk_write_next,
  blk_written, blk_flushed, blk_verify_next, blk_readback,
});

/*
 * xbd: what workloads call (continuation style, from an lwp), and what
 * tests and diagnostics look at. The driver is xbd_xenbus.ts.
 *
 *   xbd_read / xbd_write (cpu, unit, blkno, nblks, va, cont)
 *   xbd_flush (cpu, unit, cont)
 *
 * `blkno` and `nblks` count 512-byte blocks; `va` is a kernel address,
 * 512-byte aligned (any length and page offset: the disk layer cuts the
 * transfer into blkif requests). The thread continues at
 * cont(cpu, arg, error) with error 0, EIO (the backend failed it or the
 * device was disconnected), EROFS (read-only disk), EOPNOTSUPP (flush
 * without feature-flush-cache), EINVAL (out of range, misaligned) or
 * ENXIO (no such disk). Bufs issued before the disk is connected wait.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { ENXIO } from '../../../sys/sys/errno.js';
import { lwp } from '../../../sys/sys/lwp.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { ksymtab, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { device_private, device_lookup } from '../../../sys/kern/subr_autoconf.js';
import { preempt } from '../../../sys/kern/kern_synch.js';
import { vu64 } from '../../../sys/lib/libkern/libkern.js';
import { dk_io, dk_strategy, dk_stats } from '../../../dev/dksubr.js';
import { B_READ, B_WRITE, B_FLUSH } from '../../../dev/buf.js';
import { xbd_view } from './xbd_ring.js';
import { SC_DKSC, XBDF_READONLY, XBDF_FLUSH } from './xbd_var.js';

/** The softc of xbd<unit>, or 0. */
export function xbd_softc_of(cpu: GuestCpu, unit: number): number {
  const dev = device_lookup(cpu, 'xbd', unit);
  return dev === 0 ? 0 : device_private(cpu, dev);
}

/** No such disk: continue at `cont` with ENXIO. */
function xbd_nodev(cpu: GuestCpu, cont: KSym): void {
  preempt(cpu, cont);
  lwp.view(cpu.mem, curlwp(cpu)).set('l_sleeperr', ENXIO);
}

/** Read `nblks` 512-byte blocks from `blkno` into `va`; continue at cont(cpu, arg, error). */
export function xbd_read(cpu: GuestCpu, unit: number, blkno: number, nblks: number, va: number, cont: KSym): void {
  const sc = xbd_softc_of(cpu, unit);
  if (sc === 0) return xbd_nodev(cpu, cont);
  dk_io(cpu, sc + SC_DKSC, B_READ, blkno, nblks, va, cont);
}

/** Write `nblks` 512-byte blocks from `va` at `blkno`; continue at cont(cpu, arg, error). */
export function xbd_write(cpu: GuestCpu, unit: number, blkno: number, nblks: number, va: number, cont: KSym): void {
  const sc = xbd_softc_of(cpu, unit);
  if (sc === 0) return xbd_nodev(cpu, cont);
  dk_io(cpu, sc + SC_DKSC, B_WRITE, blkno, nblks, va, cont);
}

/** Make every write completed so far durable; continue at cont(cpu, arg, error) (EOPNOTSUPP without feature-flush-cache). */
export function xbd_flush(cpu: GuestCpu, unit: number, cont: KSym): void {
  const sc = xbd_softc_of(cpu, unit);
  if (sc === 0) return xbd_nodev(cpu, cont);
  dk_io(cpu, sc + SC_DKSC, B_FLUSH, 0, 0, 0, cont);
}

/** Queue a buf of one's own (getiobuf; b_iodone or polling) on xbd<unit>. False: no such disk. */
export function xbd_strategy(cpu: GuestCpu, unit: number, bp: number): boolean {
  const sc = xbd_softc_of(cpu, unit);
  if (sc === 0) return false;
  dk_strategy(cpu, sc + SC_DKSC, bp);
  return true;
}

export interface XbdInfo {
  readonly state: number;
  readonly sectors: number;
  readonly readonly: boolean;
  readonly flush: boolean;
  readonly evtchn: number;
  readonly ringRef: number;
  readonly generation: number;
  readonly inflight: number;
  readonly requests: number;
  readonly responses: number;
  readonly replayed: number;
  readonly failmsg: string;
}

/** What xbd<unit> is up to (tests, diagnostics); undefined when there is no such disk. */
export function xbd_info(cpu: GuestCpu, unit: number): XbdInfo | undefined {
  const sc = xbd_softc_of(cpu, unit);
  if (sc === 0) return undefined;
  const v = xbd_view(cpu, sc);
  return {
    state: v.get('sc_state'), sectors: vu64(v, 'sc_sectors'), readonly: (v.get('sc_flags') & XBDF_READONLY) !== 0,
    flush: (v.get('sc_flags') & XBDF_FLUSH) !== 0, evtchn: v.get('sc_evtchn'), ringRef: v.get('sc_ring_gntref'),
    generation: v.get('sc_generation'), inflight: v.get('sc_nshadow'), requests: vu64(v, 'sc_nreq'),
    responses: vu64(v, 'sc_nrsp'), replayed: vu64(v, 'sc_nreplayed'), failmsg: v.getString('sc_failmsg'),
  };
}

/** The disk layer's counters of xbd<unit>. */
export function xbd_dkstats(cpu: GuestCpu, unit: number): ReturnType<typeof dk_stats> | undefined {
  const sc = xbd_softc_of(cpu, unit);
  return sc === 0 ? undefined : dk_stats(cpu, sc + SC_DKSC);
}

export const xbd_io_ksyms = ksymtab({
  xbd_softc_of, xbd_nodev, xbd_read, xbd_write, xbd_flush, xbd_strategy, xbd_info, xbd_dkstats,
});

/*
 * Guest workloads for the xbd machine tests: kernel text linked into a
 * netbsd image and run by init from `workload=<name>`. They keep their
 * state in the init lwp's frame and report on the console; the host test
 * reads the console and the disk image file.
 *
 * Every workload first makes sure the block side is configured (the xbd
 * table line, and xenbus0 if the kernel configuration does not attach it
 * yet), says "xbdtest: ready", then waits for xbd0 to be connected: the
 * host adds the disk after "ready", and xenbus's device/ watch finds it.
 *
 * Disk contents the host writes before the guest starts: byte `off` of the
 * image is P0(off) (xbdt_p0 here, p0 in the fixture).
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { blkif_sring } from '../../hypervisor/public/io/blkif.js';
import { ksymtab, ksymaddr, kcall, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { lwp_frame } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { config_cfdata_attach, device_lookup } from '../../sys/kern/subr_autoconf.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { cfdata } from '../../sys/sys/device.js';
import { kg_addr } from '../../sys/sys/kernel.js';
import { TAILQ_FIRST, TAILQ_NEXT } from '../../sys/sys/queue.js';
import { ptr_get, ptr_set, vptr, vptr_set } from '../../sys/lib/libkern/libkern.js';
import { hypervisor_attach_child } from '../../arch/xen/xen/hypervisor.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { XEN_KSYMTABS } from '../../arch/xen/conf/files.xen.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { XENBUS_KSYMTABS, XENBUS_CFDATA } from '../../arch/xen/xenbus/xenbus.js';
import { xenbus_softc_of } from '../../arch/xen/xenbus/xenbus_var.js';
import { XBD_KSYMTABS, XBD_CFDATA, xbd_xenbus_suspend, xbd_xenbus_resume, xbd_xenbus_reconnect } from '../../arch/xen/xen/xbd_xenbus.js';
import { xbd_read, xbd_write, xbd_flush, xbd_info, xbd_strategy, xbd_softc_of } from '../../arch/xen/xen/xbd_io.js';
import { xbd_view } from '../../arch/xen/xen/xbd_ring.js';
import { XBD_STATE_CONNECTED, XBD_STATE_NAMES } from '../../arch/xen/xen/xbd_var.js';
import { buf, getiobuf, putiobuf, B_READ, B_WRITE, BO_DONE } from '../../dev/buf.js';

/** Disk contents before the guest writes: a function of the byte offset. */
export function p0(off: number): number {
  return (Math.floor(off / 512) * 31 + (off % 512) * 7 + 1) & 0xff;
}

/** The pattern xbdrw writes: byte j of its 64 KiB. */
export function rwPattern(j: number): number {
  return (j * 13 + 5) & 0xff;
}

export const RW_BLKNO = 8;
export const RW_NBLKS = 128;
export const REPLAY_B = Object.freeze({ blkno: 4, nblks: 8, byte: 0xbb });
export const REPLAY_D = Object.freeze({ blkno: 30, nblks: 4, byte: 0xdd });

/* The init lwp's frame, as these workloads use it. */
const F_NEXT = 0; // u64: continuation once xbd0 is connected
const F_TRIES = 8; // u32
const F_BUF = 16; // u64: data pages
const F_BUF2 = 24; // u64: read-back pages
const F_BP = 32; // u64[4]: bufs of the replay workload
const F_MODE = 64; // u32: xbdreplay: 1 = resume as a cancelled suspend
const WAIT_TRIES = 5000;

const fr = (cpu: GuestCpu, off: number): number => lwp_frame(cpu) + off;

function xbdt_has_cfdata(cpu: GuestCpu, name: string): boolean {
  const head = kg_addr('kg_cfdata');
  const off = cfdata.offsetOf('cf_list');
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) {
    if (cfdata.view(cpu.mem, l - off).getString('cf_name') === name) return true;
  }
  return false;
}

/** Compare `len` bytes at `va` with `want(j)`: -1, or the first differing offset. */
function xbdt_mismatch(cpu: GuestCpu, va: number, len: number, want: (j: number) => number): number {
  const got = cpu.mem.readBytes(va, len);
  for (let j = 0; j < len; j++) if (got[j] !== want(j)) return j;
  return -1;
}

/** The xbd table line, xenbus0 if need be; then "ready" and wait for xbd0 before going on at `next`. */
function xbdt_start(cpu: GuestCpu, next: string): void {
  if (!xbdt_has_cfdata(cpu, 'xbd')) config_cfdata_attach(cpu, XBD_CFDATA);
  if (xenbus_softc_of(cpu) === 0) {
    if (!xbdt_has_cfdata(cpu, 'xenbus')) config_cfdata_attach(cpu, XENBUS_CFDATA);
    const hv = device_lookup(cpu, 'hypervisor', 0);
    if (hv !== 0) hypervisor_attach_child(cpu, hv, 'xenbus');
  }
  printf(cpu, 'xbdtest: ready\n');
  ptr_set(cpu.mem, fr(cpu, F_NEXT), ksymaddr(cpu, next));
  cpu.mem.setUint32(fr(cpu, F_TRIES), 0, true);
  kpause(cpu, 'xbdwait', 1, 'xbdt_poll');
}

export const xbdWorkloads = ksymtab({
  xbdt_has_cfdata,
  xbdt_start,
  xbdt_mismatch,
  xbdt_p0: p0,
  xbdt_rwpattern: rwPattern,

  xbdt_poll(cpu: GuestCpu, arg: number): void {
    const info = xbd_info(cpu, 0);
    if (info?.state === XBD_STATE_CONNECTED) {
      printf(cpu, 'xbdtest: xbd0 connected, %lu sectors%s%s\n', info.sectors, info.readonly ? ', read-only' : '', info.flush ? ', flush' : '');
      kcall(cpu, ptr_get(cpu.mem, fr(cpu, F_NEXT)), arg, 0);
      return;
    }
    const n = cpu.mem.getUint32(fr(cpu, F_TRIES), true) + 1;
    cpu.mem.setUint32(fr(cpu, F_TRIES), n, true);
    if (n > WAIT_TRIES) {
      printf(cpu, 'xbdtest: no disk (xbd0 %s)\n', info === undefined ? 'not attached' : XBD_STATE_NAMES[info.state] ?? '?');
      return;
    }
    kpause(cpu, 'xbdwait', 1, 'xbdt_poll');
  },

  /* xbdrw: 64 KiB from mid-page (two requests), flush, read back, compare. */
  workload_xbdrw(cpu: GuestCpu): void {
    const buf1 = uvm_km_alloc(cpu, 17 * 4096, UVM_KMF_ZERO);
    const buf2 = uvm_km_alloc(cpu, 17 * 4096, UVM_KMF_ZERO);
    ptr_set(cpu.mem, fr(cpu, F_BUF), buf1);
    ptr_set(cpu.mem, fr(cpu, F_BUF2), buf2);
    const data = new Uint8Array(RW_NBLKS * 512);
    for (let j = 0; j < data.length; j++) data[j] = rwPattern(j);
    cpu.mem.writeBytes(buf1 + 512, data);
    xbdt_start(cpu, 'xbdrw_go');
  },
  xbdrw_go(cpu: GuestCpu): void {
    xbd_write(cpu, 0, RW_BLKNO, RW_NBLKS, ptr_get(cpu.mem, fr(cpu, F_BUF)) + 512, 'xbdrw_written');
  },
  xbdrw_written(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdrw: write %d\n', error);
    xbd_flush(cpu, 0, 'xbdrw_flushed');
  },
  xbdrw_flushed(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdrw: flush %d\n', error);
    xbd_read(cpu, 0, RW_BLKNO, RW_NBLKS, ptr_get(cpu.mem, fr(cpu, F_BUF2)) + 1024, 'xbdrw_read');
  },
  xbdrw_read(cpu: GuestCpu, _arg: number, error: number): void {
    const bad = xbdt_mismatch(cpu, ptr_get(cpu.mem, fr(cpu, F_BUF2)) + 1024, RW_NBLKS * 512, rwPattern);
    printf(cpu, 'xbdrw: read %d, %s\n', error, bad < 0 ? 'data matches' : `mismatch at byte ${bad}`);
    xbd_read(cpu, 0, 0, 8, ptr_get(cpu.mem, fr(cpu, F_BUF2)), 'xbdrw_read0');
  },
  xbdrw_read0(cpu: GuestCpu, _arg: number, error: number): void {
    const bad = xbdt_mismatch(cpu, ptr_get(cpu.mem, fr(cpu, F_BUF2)), 8 * 512, p0);
    printf(cpu, 'xbdrw: untouched blocks read %d, %s\n', error, bad < 0 ? 'as the host wrote them' : `mismatch at byte ${bad}`);
    const info = xbd_info(cpu, 0);
    printf(cpu, 'xbdrw: done, %lu requests, %lu responses\n', info?.requests ?? 0, info?.responses ?? 0);
  },

  /* xbdro: a read-only disk refuses writes (EROFS); reads and flushes go. */
  xbdro_go(cpu: GuestCpu): void {
    ptr_set(cpu.mem, fr(cpu, F_BUF), uvm_km_alloc(cpu, 4096, UVM_KMF_ZERO));
    xbd_write(cpu, 0, 0, 1, ptr_get(cpu.mem, fr(cpu, F_BUF)), 'xbdro_written');
  },
  xbdro_written(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdro: write %d\n', error);
    xbd_read(cpu, 0, 0, 1, ptr_get(cpu.mem, fr(cpu, F_BUF)), 'xbdro_read');
  },
  xbdro_read(cpu: GuestCpu, _arg: number, error: number): void {
    const bad = xbdt_mismatch(cpu, ptr_get(cpu.mem, fr(cpu, F_BUF)), 512, p0);
    printf(cpu, 'xbdro: read %d, %s\n', error, bad < 0 ? 'data matches' : 'mismatch');
    xbd_flush(cpu, 0, 'xbdro_flushed');
  },
  xbdro_flushed(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdro: flush %d\n', error);
  },

  /* xbdhostile: a read the host answers with garbage; then the device is gone, the kernel is not. */
  xbdhostile_go(cpu: GuestCpu): void {
    ptr_set(cpu.mem, fr(cpu, F_BUF), uvm_km_alloc(cpu, 4096, UVM_KMF_ZERO));
    printf(cpu, 'xbdhostile: reading\n');
    xbd_read(cpu, 0, 0, 1, ptr_get(cpu.mem, fr(cpu, F_BUF)), 'xbdhostile_read');
  },
  xbdhostile_read(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdhostile: read %d\n', error);
    xbd_read(cpu, 0, 0, 1, ptr_get(cpu.mem, fr(cpu, F_BUF)), 'xbdhostile_again');
  },
  xbdhostile_again(cpu: GuestCpu, _arg: number, error: number): void {
    printf(cpu, 'xbdhostile: again %d\n', error);
    kpause(cpu, 'xbdhostile', 10, 'xbdhostile_alive');
  },
  xbdhostile_alive(cpu: GuestCpu): void {
    printf(cpu, 'xbdhostile: kernel still running, xbd0 %s\n', XBD_STATE_NAMES[xbd_info(cpu, 0)?.state ?? 0] ?? '?');
  },

  /*
   * xbdreplay, ARCHITECTURE §6.1's case: read A (blocks 0..7), write B
   * (4..11: overlaps A, waits for it), read C (8..15: overlaps B, waits
   * behind it), write D (30..33: overlaps nothing); then at once suspend
   * the driver. The backend does A and D while the port is masked:
   * answered, not consumed. Resume (as after a restore): new ring, A and D
   * replayed, then B, then C. A must read what was there before B, C what
   * B wrote (and the old data past it): the original order's result.
   */
  xbdreplay_go(cpu: GuestCpu): void {
    const pages = uvm_km_alloc(cpu, 4 * 4096, UVM_KMF_ZERO);
    ptr_set(cpu.mem, fr(cpu, F_BUF), pages);
    cpu.mem.fill(pages + 4096, REPLAY_B.nblks * 512, REPLAY_B.byte);
    cpu.mem.fill(pages + 3 * 4096, REPLAY_D.nblks * 512, REPLAY_D.byte);
    const reqs: readonly [number, number, number][] = [
      [B_READ, 0, 8], [B_WRITE, REPLAY_B.blkno, REPLAY_B.nblks], [B_READ, 8, 8], [B_WRITE, REPLAY_D.blkno, REPLAY_D.nblks],
    ];
    reqs.forEach(([flags, blkno, n], i) => {
      const bp = getiobuf(cpu, flags, blkno, n, pages + i * 4096);
      vptr_set(buf.view(cpu.mem, bp), 'b_iodone', ksymaddr(cpu, 'xbdreplay_iodone'));
      ptr_set(cpu.mem, fr(cpu, F_BP + 8 * i), bp);
      xbd_strategy(cpu, 0, bp);
    });
    xbd_xenbus_suspend(cpu, device_lookup(cpu, 'xbd', 0));
    printf(cpu, 'xbdreplay: suspended with %d request(s) in flight\n', xbd_info(cpu, 0)?.inflight ?? -1);
    kpause(cpu, 'xbdreplay', 5, 'xbdreplay_resume');
  },
  xbdreplay_iodone(cpu: GuestCpu, bp: number): void {
    const v = buf.view(cpu.mem, bp);
    printf(cpu, 'xbdreplay: buf at block %lu done, error %d\n', Number(v.get('b_blkno')), v.get('b_error'));
  },
  xbdreplay_resume(cpu: GuestCpu): void {
    const sc = xbd_softc_of(cpu, 0);
    const v = xbd_view(cpu, sc);
    const ring = vptr(v, 'sc_ring');
    const answered = (blkif_sring.view(cpu.mem, ring).get('rsp_prod') - v.get('sc_rsp_cons')) >>> 0;
    printf(cpu, 'xbdreplay: %d answered by the backend, not consumed\n', answered);
    const mode = cpu.mem.getUint32(fr(cpu, F_MODE), true);
    // The pmf hook sees the same grant generation and takes the cancelled path;
    // a restore is simulated by calling what it would call in a new domain.
    if (mode === 1) xbd_xenbus_resume(cpu, device_lookup(cpu, 'xbd', 0));
    else xbd_xenbus_reconnect(cpu, device_lookup(cpu, 'xbd', 0));
    kpause(cpu, 'xbdreplay', 1, 'xbdreplay_wait');
  },
  xbdreplay_wait(cpu: GuestCpu): void {
    for (let i = 0; i < 4; i++) {
      const bp = ptr_get(cpu.mem, fr(cpu, F_BP + 8 * i));
      if ((buf.view(cpu.mem, bp).get('b_oflags') & BO_DONE) === 0) {
        kpause(cpu, 'xbdreplay', 1, 'xbdreplay_wait');
        return;
      }
    }
    const pages = ptr_get(cpu.mem, fr(cpu, F_BUF));
    const a = xbdt_mismatch(cpu, pages, 8 * 512, p0);
    // C = blocks 8..15: 8..11 written by B, 12..15 as before.
    const c = xbdt_mismatch(cpu, pages + 2 * 4096, 8 * 512, (j) => (j < 4 * 512 ? REPLAY_B.byte : p0(8 * 512 + j)));
    const errors = [0, 1, 2, 3].map((i) => buf.view(cpu.mem, ptr_get(cpu.mem, fr(cpu, F_BP + 8 * i))).get('b_error'));
    printf(cpu, 'xbdreplay: A %s, C %s, errors %s, replayed %lu\n', a < 0 ? 'reads the old data' : `differs at ${a}`,
      c < 0 ? 'reads what B wrote' : `differs at ${c}`, errors.join(','), xbd_info(cpu, 0)?.replayed ?? 0);
    for (let i = 0; i < 4; i++) putiobuf(cpu, ptr_get(cpu.mem, fr(cpu, F_BP + 8 * i)));
  },
});

/* More entry points: init runs workload_<name>(cpu, 0, 0). */
export const xbdEntries = ksymtab({
  workload_xbdro(cpu: GuestCpu): void {
    xbdt_start(cpu, 'xbdro_go');
  },
  workload_xbdhostile(cpu: GuestCpu): void {
    xbdt_start(cpu, 'xbdhostile_go');
  },
  workload_xbdreplay(cpu: GuestCpu): void {
    xbdt_start(cpu, 'xbdreplay_go');
  },
  workload_xbdcancel(cpu: GuestCpu): void {
    cpu.mem.setUint32(fr(cpu, F_MODE), 1, true);
    xbdt_start(cpu, 'xbdreplay_go');
  },
});

/** A netbsd image with the block side (linked here if the configuration does not yet) and these workloads. */
export function xbdImage(): LinkedKernelImage {
  const have = (tabs: readonly KSymTab[]): boolean => tabs.every((t) => XEN_KSYMTABS.includes(t));
  return defineNetbsdImage([
    ...(have(XENBUS_KSYMTABS) ? [] : XENBUS_KSYMTABS),
    ...(have(XBD_KSYMTABS) ? [] : XBD_KSYMTABS),
    xbdWorkloads, xbdEntries,
  ], 'netbsd-xbd');
}

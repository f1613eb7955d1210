/*
 * A RAM disk driver for testing the disk layer (dev/dksubr) over the guest
 * harness, no hypervisor: its diskstart takes fragments into a table in
 * guest memory and the test decides when each one "happens" (the data
 * moves between the RAM disk and the pages at that moment) and when it is
 * answered. So a test can hold requests in flight, finish them in any
 * order, or run one on the device without telling the kernel (the replay
 * hazard: done by the backend, not yet seen by the frontend).
 *
 *   struct tdisk_softc {
 *       struct dk_softc sc_dk;
 *       uint32_t sc_cap;          // fragments the "device" accepts at once
 *       uint32_t sc_nheld;
 *       int32_t  sc_refuse;       // errno diskstart answers (0: take it)
 *       uint32_t sc_seq;          // issue order of the next fragment
 *       void    *sc_disk;         // the RAM disk, TD_SECTORS * 512 bytes
 *       struct tdisk_slot {
 *           uint64_t ts_bp;       // 0: free
 *           uint32_t ts_seq;
 *           uint32_t ts_ran;      // executed on the device this many times
 *           struct dk_frag ts_frag;
 *       } sc_slot[TD_SLOTS];
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, record, array, u32, i32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { kmem_zalloc } from '../../sys/kern/subr_kmem.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { ptr_get, vptr, vptr_set } from '../../sys/lib/libkern/libkern.js';
import { EAGAIN } from '../../sys/sys/errno.js';
import { dk_softc, dk_frag, dk_init, dk_attach, dk_fragdone } from '../../dev/dksubr.js';
import { B_READ, B_WRITE, DEV_BSIZE } from '../../dev/buf.js';
import { Harness } from '../guest/harness.js';
import { buf_ksyms } from '../../dev/buf.js';
import { dksubr_ksyms } from '../../dev/dksubr.js';

export const TD_SECTORS = 256;
export const TD_SLOTS = 48;

export const tdisk_slot = struct('struct tdisk_slot', {
  ts_bp: u64,
  ts_seq: u32,
  ts_ran: u32,
  ts_frag: record(dk_frag),
});

export const tdisk_softc = struct('struct tdisk_softc', {
  sc_dk: record(dk_softc),
  sc_cap: u32,
  sc_nheld: u32,
  sc_refuse: i32,
  sc_seq: u32,
  sc_disk: u64,
  sc_slot: array(record(tdisk_slot), TD_SLOTS),
});

const DK = tdisk_softc.offsetOf('sc_dk');

function slotAddr(sc: number, i: number): number {
  return sc + tdisk_softc.offsetOf('sc_slot') + i * tdisk_slot.size;
}

export const tdisk_ksyms = ksymtab({
  tdisk_diskstart(cpu: GuestCpu, dksc: number, bp: number, frag: number): number {
    const sc = dksc - DK;
    const v = tdisk_softc.view(cpu.mem, sc);
    if (v.get('sc_refuse') !== 0) return v.get('sc_refuse');
    if (v.get('sc_nheld') >= v.get('sc_cap')) return EAGAIN;
    for (let i = 0; i < TD_SLOTS; i++) {
      const s = slotAddr(sc, i);
      if (ptr_get(cpu.mem, s) !== 0) continue;
      const sv = tdisk_slot.view(cpu.mem, s);
      vptr_set(sv, 'ts_bp', bp);
      sv.set('ts_seq', v.get('sc_seq'));
      sv.set('ts_ran', 0);
      cpu.mem.copyWithin(sv.addr('ts_frag'), frag, dk_frag.size);
      v.set('sc_seq', v.get('sc_seq') + 1);
      v.set('sc_nheld', v.get('sc_nheld') + 1);
      return 0;
    }
    return EAGAIN;
  },
});

/** The RAM disk driver plus the layer under test, on the harness. */
export class TDisk {
  readonly sc: number;
  constructor(readonly h: Harness, opts: { cap?: number; readonly?: boolean; sectors?: number; attach?: boolean } = {}) {
    const cpu = h.cpu;
    this.sc = kmem_zalloc(cpu, tdisk_softc.size);
    if (this.sc === 0) throw new Error('tdisk: no memory for the softc');
    const v = tdisk_softc.view(cpu.mem, this.sc);
    v.set('sc_cap', opts.cap ?? TD_SLOTS);
    const disk = uvm_km_alloc(cpu, TD_SECTORS * DEV_BSIZE);
    if (disk === 0) throw new Error('tdisk: no memory for the disk');
    vptr_set(v, 'sc_disk', disk);
    dk_init(cpu, this.dksc, 0, 'tdisk_diskstart');
    if (opts.attach !== false) dk_attach(cpu, this.dksc, opts.sectors ?? TD_SECTORS, DEV_BSIZE, opts.readonly ?? false);
  }

  static boot(extra: Parameters<typeof Harness.boot>[0] = {}): Harness {
    return Harness.boot({ ...extra, extra: [buf_ksyms, dksubr_ksyms, tdisk_ksyms, ...(extra.extra ?? [])] });
  }

  get dksc(): number {
    return this.sc + DK;
  }

  private get v() {
    return tdisk_softc.view(this.h.cpu.mem, this.sc);
  }

  set cap(n: number) {
    this.v.set('sc_cap', n);
  }

  set refuse(errno: number) {
    this.v.set('sc_refuse', errno);
  }

  get disk(): number {
    return vptr(this.v, 'sc_disk');
  }

  /** Held fragments in issue order: slot, buf, sector, flags, segments. */
  held(): { slot: number; bp: number; seq: number; sector: number; flags: number; bytes: number; offset: number; segs: { va: number; first: number; last: number }[] }[] {
    const mem = this.h.cpu.mem;
    const out = [];
    for (let i = 0; i < TD_SLOTS; i++) {
      const sv = tdisk_slot.view(mem, slotAddr(this.sc, i));
      const bp = vptr(sv, 'ts_bp');
      if (bp === 0) continue;
      const f = sv.sub('ts_frag');
      const segs = [];
      for (let k = 0; k < f.get('df_nseg'); k++) {
        const s = f.sub('df_seg', k);
        segs.push({ va: vptr(s, 'ds_va'), first: s.get('ds_first'), last: s.get('ds_last') });
      }
      out.push({
        slot: i, bp, seq: sv.get('ts_seq'), sector: Number(f.get('df_sector')), flags: f.get('df_flags'),
        bytes: f.get('df_bytes'), offset: f.get('df_offset'), segs,
      });
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The device performs the fragment in `slot` (moves its data), without answering. */
  run(slot: number): void {
    const mem = this.h.fake.mem;
    const sv = tdisk_slot.view(mem, slotAddr(this.sc, slot));
    if (vptr(sv, 'ts_bp') === 0) throw new Error(`tdisk: slot ${slot} is empty`);
    const f = sv.sub('ts_frag');
    const op = f.get('df_flags');
    let sector = Number(f.get('df_sector'));
    for (let k = 0; k < f.get('df_nseg'); k++) {
      const s = f.sub('df_seg', k);
      const first = s.get('ds_first');
      const n = s.get('ds_last') - first + 1;
      const pageVa = vptr(s, 'ds_va') + first * DEV_BSIZE;
      const diskVa = this.disk + sector * DEV_BSIZE;
      if (op === B_WRITE) mem.copyWithin(diskVa, pageVa, n * DEV_BSIZE);
      else if (op === B_READ) mem.copyWithin(pageVa, diskVa, n * DEV_BSIZE);
      sector += n;
    }
    sv.set('ts_ran', sv.get('ts_ran') + 1);
  }

  /** Answer the fragment in `slot` (running it first unless it already ran). */
  complete(slot: number, error = 0): void {
    const cpu = this.h.cpu;
    const sv = tdisk_slot.view(cpu.mem, slotAddr(this.sc, slot));
    const bp = vptr(sv, 'ts_bp');
    if (bp === 0) throw new Error(`tdisk: slot ${slot} is empty`);
    if (error === 0 && sv.get('ts_ran') === 0) this.run(slot);
    vptr_set(sv, 'ts_bp', 0);
    this.v.set('sc_nheld', this.v.get('sc_nheld') - 1);
    dk_fragdone(cpu, this.dksc, bp, error);
  }

  /** Answer the oldest held fragment. */
  completeOldest(error = 0): void {
    const first = this.held()[0];
    if (first === undefined) throw new Error('tdisk: nothing held');
    this.complete(first.slot, error);
  }

  /** Answer everything held, oldest first, until nothing is left. */
  drain(): number {
    let n = 0;
    for (let f = this.held()[0]; f !== undefined; f = this.held()[0]) {
      this.complete(f.slot);
      n++;
    }
    return n;
  }

  /** Sector contents of the RAM disk. */
  readDisk(sector: number, n = 1): Uint8Array {
    return this.h.fake.mem.readBytes(this.disk + sector * DEV_BSIZE, n * DEV_BSIZE);
  }
}

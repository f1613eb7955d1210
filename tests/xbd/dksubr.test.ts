/*
 * The disk layer (dev/dksubr, dev/buf) over the guest harness and a RAM
 * disk driver: request building, the ordering rule of ARCHITECTURE §6.1,
 * completion to the waiting thread, holding and failing.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create } from '../../sys/kern/kern_lwp.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { ptr_get, ptr_set } from '../../sys/lib/libkern/libkern.js';
import { EINVAL, EIO, ENXIO, EOPNOTSUPP } from '../../sys/sys/errno.js';
import { buf, getiobuf, B_READ, B_WRITE, B_FLUSH, BO_DONE, DEV_BSIZE } from '../../dev/buf.js';
import { dk_strategy, dk_io, dk_hold, dk_release, dk_fail_all, dk_stats, dk_inflight_list, dk_queued_list, dk_attach, dk_start, EROFS } from '../../dev/dksubr.js';
import { Harness, tlog, tlogRead, xorshift } from '../guest/harness.js';
import { TDisk } from './dk-fixture.js';

/** Queue a buf of `nblks` blocks at `blkno` on `va`; returns it. */
function io(d: TDisk, flags: number, blkno: number, nblks: number, va: number): number {
  const bp = getiobuf(d.h.cpu, flags, blkno, nblks, va);
  dk_strategy(d.h.cpu, d.dksc, bp);
  return bp;
}

const done = (d: TDisk, bp: number): boolean => (buf.view(d.h.cpu.mem, bp).get('b_oflags') & BO_DONE) !== 0;
const errorOf = (d: TDisk, bp: number): number => buf.view(d.h.cpu.mem, bp).get('b_error');
const inflightBlocks = (d: TDisk): number[] => dk_inflight_list(d.h.cpu, d.dksc).map((bp) => Number(buf.view(d.h.cpu.mem, bp).get('b_blkno')));

function fill(h: Harness, va: number, len: number, byte: number): void {
  h.fake.mem.fill(va, len, byte);
}

test('a page-misaligned 64 KiB buf is cut into requests of at most 11 pages, 512-byte sectors', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const pages = uvm_km_alloc(h.cpu, 20 * 4096);
  const va = pages + 3 * DEV_BSIZE;
  io(d, B_WRITE, 10, 128, va);
  const held = d.held();
  t.is(held.length, 2, 'two fragments for 64 KiB starting mid-page');
  const [a, b] = held;
  t.is(a?.sector, 10);
  t.is(a?.segs.length, 11);
  t.deepEqual(a?.segs[0], { va: pages, first: 3, last: 7 }, 'first segment starts at sector 3 of its page');
  t.deepEqual(a?.segs[10], { va: pages + 10 * 4096, first: 0, last: 7 });
  t.is(a?.bytes, 5 * 512 + 10 * 4096);
  t.is(b?.offset, a?.bytes);
  t.is(b?.sector, 10 + (a?.bytes ?? 0) / 512);
  t.is(b?.segs.length, 6);
  t.deepEqual(b?.segs[5], { va: pages + 16 * 4096, first: 0, last: 2 }, 'last segment ends at sector 2 of its page');
  t.is((a?.bytes ?? 0) + (b?.bytes ?? 0), 128 * 512);
});

test('the buf completes when its last fragment does; the data lands on the disk', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 16 * 4096);
  fill(h, va, 64 * 1024, 0xab);
  const bp = io(d, B_WRITE, 0, 128, va);
  d.completeOldest();
  t.false(done(d, bp), 'one fragment left');
  d.completeOldest();
  t.true(done(d, bp));
  t.is(errorOf(d, bp), 0);
  t.deepEqual(d.readDisk(0, 128), new Uint8Array(128 * 512).fill(0xab));
  t.like(dk_stats(h.cpu, d.dksc), { nwrites: 1, byteswritten: 65536, ninflight: 0 });
});

test('an overlapping read waits for an earlier write; a disjoint one does not', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 4 * 4096);
  io(d, B_WRITE, 0, 8, va);
  const r1 = io(d, B_READ, 4, 8, va + 4096);
  io(d, B_READ, 20, 4, va + 8192);
  t.deepEqual(inflightBlocks(d), [0, 20], 'the write and the disjoint read are in flight');
  t.deepEqual(dk_queued_list(h.cpu, d.dksc), [r1], 'the overlapping read waits');
  d.completeOldest();
  t.deepEqual(inflightBlocks(d), [20, 4], 'the read started once the write completed');
});

test('reads never conflict with reads; writes conflict with any overlap', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 4 * 4096);
  io(d, B_READ, 0, 8, va);
  io(d, B_READ, 0, 8, va + 4096);
  t.is(dk_stats(h.cpu, d.dksc).ninflight, 2);
  io(d, B_WRITE, 7, 1, va + 8192);
  t.is(dk_stats(h.cpu, d.dksc).nqueued, 1, 'a write overlapping a read in flight waits');
  io(d, B_WRITE, 8, 1, va + 8192);
  t.deepEqual(inflightBlocks(d), [0, 0, 8], 'adjacent is not overlapping');
});

test('a later buf never overtakes a waiting one it conflicts with', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 4 * 4096);
  io(d, B_WRITE, 0, 8, va); // W1 in flight
  io(d, B_WRITE, 4, 8, va); // W2 waits for W1
  io(d, B_READ, 10, 2, va + 4096); // R3: clear of W1, but overlaps waiting W2
  io(d, B_READ, 30, 2, va + 8192); // R4: clear of everything
  t.deepEqual(inflightBlocks(d), [0, 30]);
  d.completeOldest(); // W1
  t.deepEqual(inflightBlocks(d), [30, 4], 'W2 started; R3 still behind it');
  d.completeOldest(); // R4
  d.completeOldest(); // W2
  t.deepEqual(inflightBlocks(d), [10]);
});

test('a flush starts once everything before it is done; later bufs may join it in flight', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 4 * 4096);
  io(d, B_WRITE, 0, 8, va);
  const f = io(d, B_FLUSH, 0, 0, 0);
  io(d, B_WRITE, 50, 8, va);
  t.deepEqual(inflightBlocks(d), [0], 'nothing passes a waiting flush');
  d.completeOldest();
  t.is(d.held()[0]?.flags, B_FLUSH);
  t.is(d.held()[0]?.segs.length, 0, 'a flush carries no segments');
  t.deepEqual(inflightBlocks(d), [0, 50], 'the flush (blkno 0) and the later write are in flight together');
  d.completeOldest();
  t.true(done(d, f));
  t.like(dk_stats(h.cpu, d.dksc), { nflushes: 1 });
});

test('a full driver (EAGAIN) keeps bufs queued, and a partly offered buf resumes where it stopped', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h, { cap: 1 });
  const va = uvm_km_alloc(h.cpu, 32 * 4096);
  const big = io(d, B_READ, 0, 200, va); // 100 KiB: three fragments
  const small = io(d, B_READ, 220, 2, va + 30 * 4096);
  t.is(d.held().length, 1);
  t.deepEqual(dk_queued_list(h.cpu, d.dksc), [small]);
  d.completeOldest();
  t.is(d.held()[0]?.bp, big, 'the rest of the started buf goes first');
  t.is(d.held()[0]?.offset, 11 * 4096);
  d.completeOldest();
  d.completeOldest();
  t.true(done(d, big));
  t.is(d.held()[0]?.bp, small);
});

test('bad requests fail at once: EINVAL for misaligned, empty or out-of-range, EROFS for writes to a read-only disk', (t) => {
  const h = TDisk.boot();
  const va = uvm_km_alloc(h.cpu, 4096);
  const d = new TDisk(h, { sectors: 100 });
  t.is(errorOf(d, io(d, B_READ, 99, 2, va)), EINVAL, 'past the end');
  t.is(errorOf(d, io(d, B_READ, 0, 0, va)), EINVAL, 'empty');
  t.is(errorOf(d, io(d, B_READ, 0, 1, va + 100)), EINVAL, 'data not sector aligned');
  t.is(errorOf(d, io(d, B_READ | B_WRITE, 0, 1, va)), EINVAL, 'two operations');
  const ro = new TDisk(h, { readonly: true });
  const w = io(ro, B_WRITE, 0, 1, va);
  t.true(done(ro, w));
  t.is(errorOf(ro, w), EROFS);
  t.is(ro.held().length, 0, 'nothing reached the driver');
  t.is(errorOf(ro, io(ro, B_READ, 0, 1, va)), 0, 'reads still go');
});

test('bufs queued before the disk has a size wait for dk_attach, which checks them then', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h, { attach: false });
  const va = uvm_km_alloc(h.cpu, 4096);
  const ok = io(d, B_READ, 10, 2, va);
  const past = io(d, B_READ, 99, 2, va);
  const w = io(d, B_WRITE, 0, 1, va);
  t.is(d.held().length, 0, 'nothing starts without a size');
  t.is(dk_stats(h.cpu, d.dksc).nqueued, 3);
  dk_attach(h.cpu, d.dksc, 100, DEV_BSIZE, true);
  t.is(errorOf(d, past), EINVAL, 'past the end, now that the end is known');
  t.is(errorOf(d, w), EROFS, 'a write, now that the disk is known to be read-only');
  t.false(done(d, ok));
  dk_start(h.cpu, d.dksc);
  t.deepEqual(d.held().map((f) => f.sector), [10]);
});

test('a refused fragment fails its buf with the driver\'s errno', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  d.refuse = EOPNOTSUPP;
  const f = io(d, B_FLUSH, 0, 0, 0);
  t.true(done(d, f));
  t.is(errorOf(d, f), EOPNOTSUPP);
  t.is(dk_stats(h.cpu, d.dksc).ninflight, 0);
});

test('the first fragment error wins and the rest of the buf is abandoned', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h, { cap: 1 });
  const va = uvm_km_alloc(h.cpu, 32 * 4096);
  const bp = io(d, B_READ, 0, 200, va);
  d.completeOldest(EIO);
  t.true(done(d, bp));
  t.is(errorOf(d, bp), EIO);
  t.is(buf.view(h.cpu.mem, bp).get('b_resid'), 200 * 512);
  t.is(d.held().length, 0, 'no further fragment was offered');
});

/* Threads doing I/O through dk_io; results go to the test log. */
const iothreads = ksymtab({
  t_io_write(cpu: GuestCpu, arg: number): void {
    const dksc = ptr_get(cpu.mem, arg);
    dk_io(cpu, dksc, B_WRITE, 5, 2, arg + 4096, 't_io_written');
  },
  t_io_written(cpu: GuestCpu, arg: number, error: number): void {
    tlog(cpu, `w${error} `);
    const dksc = ptr_get(cpu.mem, arg);
    dk_io(cpu, dksc, B_READ, 5, 2, arg + 8192, 't_io_read');
  },
  t_io_read(cpu: GuestCpu, arg: number, error: number): void {
    tlog(cpu, `r${error}:${cpu.mem.getUint8(arg + 8192).toString(16)}${cpu.mem.getUint8(arg + 8192 + 1023).toString(16)} `);
  },
});

function ioThread(h: Harness, d: TDisk): number {
  const arg = uvm_km_alloc(h.cpu, 3 * 4096);
  ptr_set(h.fake.mem, arg, d.dksc);
  fill(h, arg + 4096, 1024, 0x5a);
  lwp_create(h.cpu, 'iot', 't_io_write', arg);
  return arg;
}

test('dk_io: the thread sleeps until its I/O completes and continues with the error', (t) => {
  const h = TDisk.boot({ extra: [iothreads] });
  const d = new TDisk(h);
  ioThread(h, d);
  h.run(10);
  t.is(tlogRead(h), '', 'asleep while the write is in flight');
  t.is(d.held().length, 1);
  d.completeOldest();
  h.fake.blocked = false;
  h.run(10);
  t.is(tlogRead(h), 'w0 ');
  d.completeOldest();
  h.fake.blocked = false;
  h.run(10);
  t.is(tlogRead(h), 'w0 r0:5a5a ', 'the read returned what the write stored');
});

test('dk_io: a failure reaches the continuation as its error (EIO, EROFS at once)', (t) => {
  const h = TDisk.boot({ extra: [iothreads] });
  const d = new TDisk(h);
  ioThread(h, d);
  h.run(10);
  d.completeOldest(EIO);
  h.fake.blocked = false;
  h.run(10);
  t.regex(tlogRead(h), /^w5 /);
  const ro = new TDisk(h, { readonly: true });
  ioThread(h, ro);
  h.fake.blocked = false;
  h.run(10);
  t.regex(tlogRead(h), new RegExp(`w${EROFS} `), 'EROFS without a trip to the driver');
});

test('held bufs queue and start on release; a dead disk fails them all and refuses more', (t) => {
  const h = TDisk.boot();
  const d = new TDisk(h);
  const va = uvm_km_alloc(h.cpu, 4 * 4096);
  const a = io(d, B_READ, 0, 1, va);
  dk_hold(h.cpu, d.dksc);
  const b = io(d, B_READ, 10, 1, va);
  t.is(d.held().length, 1, 'nothing starts while held');
  dk_release(h.cpu, d.dksc);
  t.is(d.held().length, 2);
  dk_hold(h.cpu, d.dksc);
  const c = io(d, B_READ, 20, 1, va);
  t.is(dk_fail_all(h.cpu, d.dksc, EIO), 3);
  t.deepEqual([a, b, c].map((bp) => errorOf(d, bp)), [EIO, EIO, EIO]);
  t.is(errorOf(d, io(d, B_READ, 0, 1, va)), ENXIO);
});

/*
 * The §6.1 property: random reads and writes on a few blocks, finished in
 * random order, some run on the "device" and then run again (a replay
 * after restore), give every read the same bytes as running the bufs one
 * by one in arrival order.
 */
test('any completion order, with replays, reads what the arrival order reads', (t) => {
  let replays = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = xorshift(seed);
    const h = TDisk.boot();
    const d = new TDisk(h);
    const model = new Uint8Array(16 * 512);
    const nbufs = 40;
    const data = uvm_km_alloc(h.cpu, nbufs * 4096);
    const expect: { bp: number; va: number; bytes: Uint8Array }[] = [];
    for (let i = 0; i < nbufs; i++) {
      const blk = rnd() % 12;
      const n = 1 + (rnd() % 4);
      const va = data + i * 4096;
      if (rnd() % 2 === 0) {
        fill(h, va, n * 512, i + 1);
        model.fill(i + 1, blk * 512, (blk + n) * 512);
        io(d, B_WRITE, blk, n, va);
      } else {
        expect.push({ bp: io(d, B_READ, blk, n, va), va, bytes: model.slice(blk * 512, (blk + n) * 512) });
      }
      // Now and then the device does some of what it holds, in any order,
      // sometimes running a request without answering it, and later again.
      while (rnd() % 3 === 0 && d.held().length > 0) {
        const held = d.held();
        const f = held[rnd() % held.length]!;
        if (rnd() % 2 === 0) {
          d.run(f.slot);
          replays++;
        }
        d.complete(f.slot);
      }
    }
    while (d.held().length > 0) {
      const held = d.held();
      d.complete(held[rnd() % held.length]!.slot);
    }
    for (const e of expect) {
      t.true(done(d, e.bp));
      t.deepEqual(h.fake.mem.readBytes(e.va, e.bytes.length), e.bytes, `seed ${seed}: read buf #${buf.view(h.cpu.mem, e.bp).get('b_seq')}`);
    }
  }
  t.true(replays > 20, `requests were run twice (${replays} times)`);
});

test('the disk layer carries on identically after its memory is copied to a fresh machine', (t) => {
  const h = TDisk.boot({ extra: [iothreads] });
  const d = new TDisk(h);
  ioThread(h, d);
  h.run(10);
  const snap = h.snapshot();
  const h2 = Harness.restore(h.image, snap);
  const d2 = Object.assign(Object.create(TDisk.prototype) as TDisk, { h: h2, sc: d.sc });
  for (const [hh, dd] of [[h, d], [h2, d2]] as const) {
    dd.completeOldest();
    hh.fake.blocked = false;
    hh.run(10);
    dd.completeOldest();
    hh.fake.blocked = false;
    hh.run(10);
  }
  t.is(tlogRead(h2), tlogRead(h));
  t.is(tlogRead(h2), 'w0 r0:5a5a ');
  t.deepEqual(h2.fake.mem.bytes, h.fake.mem.bytes);
});

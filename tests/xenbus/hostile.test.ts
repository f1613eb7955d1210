/*
 * A broken or hostile xenstored, on the harness: the test writes into the
 * store page what a bad peer would. Impossible indices and oversize
 * messages make xenbus report once, fail what waits, and stop touching the
 * page, without looping or crashing the kernel; replies nobody asked for
 * are counted and dropped; a reply of the wrong type fails only its request.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { xenstore_domain_interface, xsd_sockmsg, XS_READ, XS_WRITE, XS_WATCH_EVENT } from '../../hypervisor/public/io/xs_wire.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf, panicstr } from '../../sys/kern/subr_prf.js';
import { kmem_stats } from '../../sys/kern/subr_kmem.js';
import { xs_read, xs_write, xs_result, XS_EIO } from '../../arch/xen/xenbus/xenbus_xs.js';
import { xenbus_softc, xs_request, XBF_DEAD, XS_NREQ } from '../../arch/xen/xenbus/xenbus_var.js';
import { ptr_get } from '../../sys/lib/libkern/libkern.js';
import { world, bootDone, settle, DOMPATH, type XbWorld } from './fixture.js';

const syms = ksymtab({
  h_read(cpu: GuestCpu, n: number): void {
    xs_read(cpu, 0, 'data/h', 'h_read_1');
    void n;
  },
  h_read_1(cpu: GuestCpu, n: number): void {
    const r = xs_result(cpu);
    printf(cpu, 'R%d err=%d value=[%s]\n', n, r.error, r.value);
  },
  h_write(cpu: GuestCpu, n: number): void {
    xs_write(cpu, 0, 'data/after', 'x', 'h_write_1');
    void n;
  },
  h_write_1(cpu: GuestCpu, n: number): void {
    printf(cpu, 'W%d err=%d\n', n, xs_result(cpu).error);
  },
  /* A thread with nothing to do with xenbus: it must keep running. */
  h_ticker(cpu: GuestCpu, n: number): void {
    printf(cpu, 'tick%d ', n);
    if (n < 1000) {
      kpause(cpu, 'ticker', 10, 'h_ticker_next');
    }
  },
  h_ticker_next(cpu: GuestCpu, n: number): void {
    printf(cpu, 'tock ');
    kpause(cpu, 'ticker', 10, 'h_ticker_next');
    void n;
  },
});

async function booted(): Promise<XbWorld> {
  const w = await world({ extra: [syms] });
  if (!w.run(30000, () => bootDone(w))) throw new Error('no boot');
  await w.dom0.write(`${DOMPATH}/data/h`, 'fine');
  return w;
}

function header(type: number, reqId: number, len: number): Uint8Array {
  const b = new Uint8Array(16);
  const h = xsd_sockmsg.view(new DataView(b.buffer), 0);
  h.set('type', type);
  h.set('req_id', reqId);
  h.set('tx_id', 0);
  h.set('len', len);
  return b;
}

/** The id of the one request waiting for its reply. */
function inflightId(w: XbWorld): number {
  const sc = xenbus_softc.view(w.h.cpu.mem, w.sc);
  for (let slot = 0; slot < XS_NREQ; slot++) {
    const rq = ptr_get(w.h.cpu.mem, sc.addr('sc_table') + 8 * slot);
    if (rq !== 0) return xs_request.view(w.h.cpu.mem, rq).get('rq_req_id');
  }
  throw new Error('no request in flight');
}

const text = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const dead = (w: XbWorld): boolean => (xenbus_softc.view(w.h.cpu.mem, w.sc).get('sc_flags') & XBF_DEAD) !== 0;
const view = (w: XbWorld) => xenstore_domain_interface.view(w.h.cpu.mem, w.intf);

test('a reply producer index more than a ring ahead: reported once, the waiting lwp gets EIO, xenbus stays off', async (t) => {
  const w = await booted();
  lwp_create(w.h.cpu, 'ticker', 'h_ticker', 0);
  w.deaf = true;
  lwp_create(w.h.cpu, 'reader', 'h_read', 1);
  w.run(200);
  t.false(w.console().includes('R1'), 'the read is waiting');
  const v = view(w);
  v.set('rsp_prod', (v.get('rsp_cons') + 5000) >>> 0);
  w.raiseEvent();
  t.true(w.run(5000, () => w.console().includes('R1 ')));
  t.regex(w.console(), new RegExp(`R1 err=${XS_EIO} value=\\[\\]`));
  t.is(w.console().match(/xenstore ring broken/g)?.length, 1);
  t.regex(w.console(), /xenbus: xenstore ring broken: reply ring indices out of range; xenbus disabled/);
  t.true(dead(w));
  // Later requests fail at once, and the page is left alone.
  const reqProd = v.get('req_prod');
  lwp_create(w.h.cpu, 'writer', 'h_write', 2);
  t.true(w.run(5000, () => w.console().includes('W2 ')));
  t.regex(w.console(), new RegExp(`W2 err=${XS_EIO}`));
  t.is(v.get('req_prod'), reqProd, 'nothing more written to the ring');
  // More events from the broken peer change nothing.
  for (let i = 0; i < 5; i++) w.raiseEvent();
  w.run(500);
  t.is(w.console().match(/xenstore ring broken/g)?.length, 1);
  // The rest of the kernel is fine.
  const ticks = (w.console().match(/tock/g) ?? []).length;
  w.run(3000);
  t.true((w.console().match(/tock/g) ?? []).length > ticks, 'other threads keep running');
  t.is(panicstr(w.h.cpu), undefined);
  t.is(w.fake.shutdownReason, undefined);
});

test('a header announcing 5000 bytes: reported, xenbus off, the payload never read', async (t) => {
  const w = await booted();
  w.deaf = true;
  lwp_create(w.h.cpu, 'reader', 'h_read', 1);
  w.run(200);
  const before = view(w).get('rsp_cons');
  w.inject(header(XS_READ, 0, 5000));
  t.true(w.run(5000, () => w.console().includes('R1 ')));
  t.regex(w.console(), /xenstore ring broken: message of 5000 bytes \(type 2\) exceeds 4096/);
  t.regex(w.console(), new RegExp(`R1 err=${XS_EIO}`));
  t.is(view(w).get('rsp_cons'), (before + 16) >>> 0, 'only the header was consumed');
  t.true(dead(w));
  t.is(panicstr(w.h.cpu), undefined);
});

test('a request consumer index past our producer: reported when we next write', async (t) => {
  const w = await booted();
  const v = view(w);
  v.set('req_cons', (v.get('req_prod') + 3000) >>> 0);
  lwp_create(w.h.cpu, 'writer', 'h_write', 1);
  t.true(w.run(5000, () => w.console().includes('W1 ')));
  t.regex(w.console(), /xenstore ring broken: request ring indices out of range/);
  t.regex(w.console(), new RegExp(`W1 err=${XS_EIO}`));
});

test('replies nobody asked for (unknown, stale or forged ids) are counted and dropped; the real one still lands', async (t) => {
  const w = await booted();
  w.deaf = true;
  lwp_create(w.h.cpu, 'reader', 'h_read', 1);
  w.run(200);
  const sc = xenbus_softc.view(w.h.cpu.mem, w.sc);
  // The read sits in some slot with some id; forge replies around it.
  const realId = inflightId(w);
  const forged = [realId + 32, realId ^ 1, 0, 0xffff_ffff];
  for (const id of forged) w.inject(Uint8Array.from([...header(XS_READ, id >>> 0, 4), ...text('evil')]));
  w.run(500);
  t.is(sc.get('sc_nbadreply'), forged.length);
  t.false(w.console().includes('R1 '), 'the read still waits for its own reply');
  w.inject(Uint8Array.from([...header(XS_READ, realId, 4), ...text('real')]));
  t.true(w.run(5000, () => w.console().includes('R1 ')));
  t.regex(w.console(), /R1 err=0 value=\[real\]/);
  t.false(dead(w), 'stray replies are not fatal');
});

test('a reply of the wrong type fails its request with EIO and nothing else', async (t) => {
  const w = await booted();
  w.deaf = true;
  lwp_create(w.h.cpu, 'reader', 'h_read', 1);
  w.run(200);
  w.inject(Uint8Array.from([...header(XS_WRITE, inflightId(w), 3), ...text('OK\0')]));
  t.true(w.run(5000, () => w.console().includes('R1 ')));
  t.regex(w.console(), new RegExp(`R1 err=${XS_EIO}`));
  t.false(dead(w));
  w.deaf = false;
  w.ring().kick();
  lwp_create(w.h.cpu, 'reader', 'h_read', 2);
  t.true(w.run(5000, () => w.console().includes('R2 ')));
  t.regex(w.console(), /R2 err=0 value=\[fine\]/);
});

test('a flood of watch events with unknown tokens costs nothing and leaks nothing', async (t) => {
  const w = await booted();
  w.deaf = true;
  const inuse = (): number => kmem_stats(w.h.cpu).inuse.reduce((a, b) => a + b, 0);
  const before = inuse();
  for (let i = 0; i < 300; i++) {
    const body = text(`data/x${i}\0${i % 3 === 0 ? '999' : i % 3 === 1 ? 'garbage' : ''}\0`);
    w.inject(Uint8Array.from([...header(XS_WATCH_EVENT, 0, body.length), ...body]));
    w.run(20);
  }
  w.run(500);
  t.is(inuse(), before, 'every event buffer was freed');
  t.is(xenbus_softc.view(w.h.cpu.mem, w.sc).get('sc_njobs'), 0);
  t.false(dead(w));
  await settle();
});

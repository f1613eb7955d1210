/*
 * xenbus against the real xenstored, on the harness (tests/xenbus/fixture.ts):
 * attach and the boot sequence, requests from lwps in continuation style,
 * several outstanding at once, errors mapped to NetBSD errno, watches
 * firing in the guest (callbacks that sleep), unwatch, transactions that
 * conflict with a host writer and retry.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab, kcall } from '../../sys/kern/kern_ksyms.js';
import { lwp_create, lwp_frame } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import {
  xs_read, xs_write, xs_directory, xs_mkdir, xs_rm, xs_result, xs_result_tx, xs_strings, xs_transaction_start,
  xs_transaction_end, XS_ENOENT, XS_EACCES, XS_EAGAIN,
} from '../../arch/xen/xenbus/xenbus_xs.js';
import { xenbus_watch_path, xenbus_unwatch, xenwatch_path, xenwatch_scratch } from '../../arch/xen/xenbus/xenbus_watch.js';
import { xenbus_publish } from '../../arch/xen/xenbus/xenbus_dev.js';
import { xenbus_softc } from '../../arch/xen/xenbus/xenbus_var.js';
import { xenstore_domain_interface } from '../../hypervisor/public/io/xs_wire.js';
import { world, bootDone, sleepingOn, DOMPATH, settle, type XbWorld } from './fixture.js';

const f32 = (cpu: GuestCpu, i: number): number => cpu.mem.getUint32(lwp_frame(cpu) + 4 * i, true);
const f32set = (cpu: GuestCpu, i: number, v: number): void => cpu.mem.setUint32(lwp_frame(cpu) + 4 * i, v, true);

const syms = ksymtab({
  /* write data/rw, read it back, read a missing node, write where we may not */
  t_rw(cpu: GuestCpu): void {
    xs_write(cpu, 0, 'data/rw', 'hello, store', 't_rw_1');
  },
  t_rw_1(cpu: GuestCpu): void {
    printf(cpu, 'T write=%d\n', xs_result(cpu).error);
    xs_read(cpu, 0, 'data/rw', 't_rw_2');
  },
  t_rw_2(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'T read=%d [%s]\n', r.error, r.value);
    xs_read(cpu, 0, 'data/missing', 't_rw_3');
  },
  t_rw_3(cpu: GuestCpu): void {
    printf(cpu, 'T missing=%d\n', xs_result(cpu).error);
    xs_write(cpu, 0, '/local/domain/0/forbidden', 'x', 't_rw_4');
  },
  t_rw_4(cpu: GuestCpu): void {
    printf(cpu, 'T forbidden=%d\n', xs_result(cpu).error);
    xs_mkdir(cpu, 0, 'data/dir/a', 't_rw_5');
  },
  t_rw_5(cpu: GuestCpu): void {
    printf(cpu, 'T mkdir=%d\n', xs_result(cpu).error);
    xs_directory(cpu, 0, 'data', 't_rw_6');
  },
  t_rw_6(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'T dir=%d [%s]\n', r.error, xs_strings(r.value).sort().join(','));
    xs_rm(cpu, 0, 'data/dir', 't_rw_7');
  },
  t_rw_7(cpu: GuestCpu): void {
    printf(cpu, 'T rm=%d\n', xs_result(cpu).error);
  },

  /* many lwps, one read each, all outstanding together */
  t_many(cpu: GuestCpu, n: number): void {
    xs_read(cpu, 0, `data/m${n}`, 't_many_1');
  },
  t_many_1(cpu: GuestCpu, n: number): void {
    const r = xs_result(cpu);
    printf(cpu, 'M%d=%s ', n, r.error === 0 ? r.value : `E${r.error}`);
  },

  /* register a watch on data/w; the callback reads the node (it sleeps) and prints */
  t_watch(cpu: GuestCpu): void {
    xenbus_watch_path(cpu, 'data/w', 't_watch_cb', 77, lwp_frame(cpu), 't_watch_1');
  },
  t_watch_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'W registered=%d id=%d cookie=%d\n', r.error, f32(cpu, 0), r.cookie);
  },
  t_watch_cb(cpu: GuestCpu, arg: number): void {
    const path = xenwatch_path(cpu);
    // Keep the path across the sleep in the thread's scratch.
    const s = xenwatch_scratch(cpu);
    for (let i = 0; i < path.length; i++) cpu.mem.setUint8(s + i, path.charCodeAt(i));
    cpu.mem.setUint8(s + path.length, 0);
    xs_read(cpu, 0, path, 't_watch_cb_1');
    void arg;
  },
  t_watch_cb_1(cpu: GuestCpu, arg: number): void {
    const r = xs_result(cpu);
    printf(cpu, 'W fired arg=%d path=%s value=%s\n', arg, xenwatch_scratch(cpu), r.error === 0 ? r.value : `E${r.error}`);
  },
  t_unwatch(cpu: GuestCpu, id: number): void {
    printf(cpu, 'W unwatch=%d\n', xenbus_unwatch(cpu, id));
  },

  /* read-modify-write of data/counter in a transaction, with a pause the host writes into */
  t_tx(cpu: GuestCpu): void {
    xs_transaction_start(cpu, 't_tx_1');
  },
  t_tx_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    const tx = xs_result_tx(r);
    f32set(cpu, 0, tx);
    printf(cpu, 'X start=%d tx=%s\n', r.error, tx === 0 ? 'none' : 'ok');
    xs_read(cpu, tx, 'data/counter', 't_tx_2');
  },
  t_tx_2(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    f32set(cpu, 1, Number(r.value));
    const tries = f32(cpu, 2);
    // First try: give the host time to write meanwhile.
    if (tries === 0) kpause(cpu, 'txwait', 5, 't_tx_3');
    else kcall(cpu, 't_tx_3', 0, 0);
  },
  t_tx_3(cpu: GuestCpu): void {
    xs_write(cpu, f32(cpu, 0), 'data/counter', String(f32(cpu, 1) + 1), 't_tx_4');
  },
  t_tx_4(cpu: GuestCpu): void {
    xs_result(cpu);
    xs_transaction_end(cpu, f32(cpu, 0), true, 't_tx_5');
  },
  t_tx_5(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'X end=%d\n', r.error);
    if (r.error === XS_EAGAIN) {
      f32set(cpu, 2, f32(cpu, 2) + 1);
      xs_transaction_start(cpu, 't_tx_1');
    }
  },

  /* a value bigger than the ring (xenstored's node quota is 2048), both ways */
  t_big(cpu: GuestCpu): void {
    let v = '';
    for (let i = 0; v.length < 2000; i++) v += `${i},`;
    xs_write(cpu, 0, 'data/big', v.slice(0, 2000), 't_big_1');
  },
  t_big_1(cpu: GuestCpu): void {
    printf(cpu, 'B write=%d\n', xs_result(cpu).error);
    xs_read(cpu, 0, 'data/big', 't_big_2');
  },
  t_big_2(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'B read=%d len=%d tail=%s\n', r.error, r.value.length, r.value.slice(-12));
  },

  t_publish(cpu: GuestCpu): void {
    printf(cpu, 'P %d %d\n', xenbus_publish(cpu, 'workload/state', 'running'), xenbus_publish(cpu, '../escape', 'x'));
  },
});

function thread(w: XbWorld, name: string, arg = 0): void {
  lwp_create(w.h.cpu, name, name, arg);
}

const booted = (w: XbWorld) => (): boolean => bootDone(w);

test('xenbus0 attaches, advertises the shutdown features and publishes data/boot', async (t) => {
  const w = await world({ extra: [syms] });
  t.true(w.run(20000, booted(w)), 'boot sequence finished');
  await settle();
  t.regex(w.console(), /xenbus0 at hypervisor0: Xen Virtual Bus Interface/);
  for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) t.is(await w.dom0.read(`${DOMPATH}/control/${f}`), '1', f);
  t.is(await w.dom0.read(`${DOMPATH}/data/boot`), 'complete');
  t.is(await w.dom0.read(`${DOMPATH}/data/kernel`), 'NetBSD/xen');
  t.is(await w.dom0.read(`${DOMPATH}/data/kernel-version`), w.h.image.versionHash, 'the hash of the running text');
});

test('an lwp writes and reads its own nodes; errors come back as NetBSD errno', async (t) => {
  const w = await world({ extra: [syms] });
  w.run(20000, booted(w));
  thread(w, 't_rw');
  t.true(w.run(20000, () => w.console().includes('T rm=')));
  const c = w.console();
  t.regex(c, /T write=0\n/);
  t.regex(c, /T read=0 \[hello, store\]\n/);
  t.regex(c, new RegExp(`T missing=${XS_ENOENT}\\n`));
  t.regex(c, new RegExp(`T forbidden=${XS_EACCES}\\n`));
  t.regex(c, /T mkdir=0\n/);
  t.regex(c, /T dir=0 \[boot,dir,kernel,kernel-version,rw\]\n/);
  t.regex(c, /T rm=0\n/);
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/data/rw`), 'hello, store');
});

test('forty lwps with a request each: all outstanding at once, each gets its own reply', async (t) => {
  const w = await world({ extra: [syms] });
  w.run(20000, booted(w));
  for (let i = 0; i < 40; i++) await w.dom0.write(`${DOMPATH}/data/m${i}`, `v${i * 7}`);
  w.deaf = true; // xenstored sits on the requests until every lwp has sent one
  for (let i = 0; i < 40; i++) thread(w, 't_many', i);
  w.run(2000);
  const v = xenbus_softc.view(w.h.cpu.mem, w.sc);
  t.is(v.get('sc_nsent') + v.get('sc_nqueued'), 40, 'forty requests in flight');
  t.is(v.get('sc_nsent'), 32, 'the table is full; the rest wait for a slot');
  w.deaf = false;
  w.ring().kick();
  t.true(w.run(20000, () => (w.console().match(/M\d+=/g) ?? []).length === 40));
  for (let i = 0; i < 40; i++) t.regex(w.console(), new RegExp(`M${i}=v${i * 7} `));
  t.is(v.get('sc_nsent') + v.get('sc_nqueued'), 0);
});

test('a watch fires in the guest at once and on every write; its callback may sleep; unwatch stops it', async (t) => {
  const w = await world({ extra: [syms] });
  w.run(20000, booted(w));
  await w.dom0.write(`${DOMPATH}/data/w`, 'first');
  thread(w, 't_watch');
  t.true(w.run(20000, () => w.console().includes('W fired')));
  t.regex(w.console(), /W registered=0 id=(\d+) cookie=\1\n/);
  t.regex(w.console(), /W fired arg=77 path=data\/w value=first\n/, 'the initial event');
  await w.dom0.write(`${DOMPATH}/data/w`, 'second');
  t.true(w.run(20000, () => w.console().includes('value=second')));
  await w.dom0.write(`${DOMPATH}/data/w/sub`, 'child');
  t.true(w.run(20000, () => w.console().includes('path=data/w/sub value=child')), 'a change below the path fires too');
  const id = Number(/id=(\d+)/.exec(w.console())?.[1]);
  thread(w, 't_unwatch', id);
  t.true(w.run(20000, () => w.console().includes('W unwatch=0')));
  w.run(200);
  await w.dom0.write(`${DOMPATH}/data/w`, 'third');
  w.run(2000);
  t.false(w.console().includes('value=third'), 'no callback after unwatch');
  t.is(w.xs.state.domains.get(3) === undefined, false);
});

test('a transaction that conflicts with a host write fails with EAGAIN and succeeds on retry', async (t) => {
  const w = await world({ extra: [syms] });
  w.run(20000, booted(w));
  await w.dom0.write(`${DOMPATH}/data/counter`, '10');
  thread(w, 't_tx');
  // Run until the guest has read inside its transaction, then write from the host.
  t.true(w.run(20000, () => sleepingOn(w, 'txwait')));
  await w.dom0.write(`${DOMPATH}/data/counter`, '100');
  t.true(w.run(20000, () => (w.console().match(/X end=0/g) ?? []).length === 1));
  t.regex(w.console(), new RegExp(`X end=${XS_EAGAIN}\\n(.|\\n)*X start=0 tx=ok\\nX end=0\\n`));
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/data/counter`), '101', 'the retry read the host\'s value');
});

test('xenbus_publish writes data/<key>; a key leaving data/ is refused', async (t) => {
  const w = await world({ extra: [syms] });
  w.run(20000, booted(w));
  thread(w, 't_publish');
  t.true(w.run(20000, () => w.console().includes('P ')));
  t.regex(w.console(), /P 0 22\n/);
  w.run(500);
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/data/workload/state`), 'running');
});

test('messages longer than the ring go out and come back in pieces, with ring indices wrapping past 2^32', async (t) => {
  const w = await world({ extra: [syms], ringStart: 0xffff_fd00 });
  t.true(w.run(20000, booted(w)));
  thread(w, 't_big');
  t.true(w.run(20000, () => w.console().includes('B read=')));
  let want = '';
  for (let i = 0; want.length < 2000; i++) want += `${i},`;
  want = want.slice(0, 2000);
  t.regex(w.console(), /B write=0\n/);
  t.true(w.console().includes(`B read=0 len=2000 tail=${want.slice(-12)}\n`), w.console());
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/data/big`), want);
  const v = xenstore_domain_interface.view(w.h.cpu.mem, w.intf);
  t.true(v.get('req_prod') < 0x1_0000 && v.get('rsp_prod') < 0x1_0000, 'both rings wrapped');
});

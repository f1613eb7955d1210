/*
 * xennet against a test-local backend that speaks the netif ring ABI
 * directly (tests/net/xennet-raw.ts): the exact requests the driver makes,
 * multi-slot packets both ways, refill, and a hostile backend (garbage
 * ids, producer indices jumping, pages kept mapped) that gets the
 * interface disconnected with a console message and never throws.
 */
import test from 'ava';
import { NETTXF_more_data, NETRXF_more_data, NETRXF_extra_info, NETIF_RSP_OKAY } from '../../hypervisor/public/io/netif.js';
import { GTF_readonly } from '../../hypervisor/public/grant_table.js';
import { ptr_set } from '../../sys/lib/libkern/libkern.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { m_get, mbuf, m_setlen } from '../../sys/net/mbuf.js';
import { if_enqueue, if_start, if_stat_get, if_snd_len } from '../../sys/net/if.js';
import { mbuf_inuse } from '../../sys/net/mbuf.js';
import { udp_bind, udp_sendbytes } from '../../sys/netinet/udp_usrreq.js';
import { EHOSTUNREACH } from '../../sys/net/net_errno.js';
import { xennet_view, xennet_tx_drained, xennet_drain_wchan } from '../../arch/xen/xen/xennet_ring.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create } from '../../sys/kern/kern_lwp.js';
import { tsleep } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { inet_aton } from '../../sys/netinet/in.js';
import { device_lookup } from '../../sys/kern/subr_autoconf.js';
import { xengnt_stats } from '../../arch/xen/xen/xengnt.js';
import { XN_STATE_DEAD, XN_STATE_CONNECTED, XN_STATE_CLOSED, XENNET_RX_NBUF } from '../../arch/xen/xen/xennet_var.js';
import { netWorld, xnState, FE, DOMID } from './xennet-fixture.js';
import { RawBack } from './xennet-raw.js';
import {
  hex, etherFrame, arpPacket, ipv4Packet, icmpEcho, parseFrame, text, GUEST_MAC, PEER_MAC, BCAST_MAC, GUEST_IP, PEER_IP,
} from './fixture.js';

const GARP = 'ffffffffffff00163e0000020806000108000604000100163e0000020a0000020000000000000a000002';
const ARP_REPLY = '00163effff0100163e0000020806000108000604000200163e0000020a00000200163effff010a000001';

async function rig() {
  const w = await netWorld({ raw: true });
  const b = new RawBack(w);
  await b.connect();
  await w.run(20);
  return { w, b, cpu: w.h.cpu, sc: w.sc() };
}

/** The peer answers ARP for itself so the guest can send to it. */
function teachPeer(b: RawBack): void {
  b.deliver(etherFrame(GUEST_MAC, PEER_MAC, 0x0806, arpPacket(2, PEER_MAC, PEER_IP, GUEST_MAC, GUEST_IP)));
}

test('the gratuitous ARP at connect is one TX slot: read-only grant, whole frame, golden bytes', async (t) => {
  const { w, b } = await rig();
  const reqs = b.txRequests();
  t.is(reqs.length, 1);
  const r = reqs[0]!;
  t.like(r, { flags: 0, size: 42 });
  t.is(hex(r.data as Uint8Array), GARP);
  const flags = w.cpu.mem.getUint16(w.host.entry(r.gref), true);
  t.true((flags & GTF_readonly) !== 0, 'TX pages are granted read-only');
  b.txRespond(r.id);
  b.pushTx();
  await w.run(20);
  t.is(w.cpu.mem.getUint16(w.host.entry(r.gref), true), 0, 'the grant is revoked once answered');
  t.is(mbuf_inuse(w.h.cpu), 0, 'the packet is freed');
});

test('every RX buffer is posted with a writable grant, and posted again once used', async (t) => {
  const { w, b } = await rig();
  t.is(b.takePosted().length, XENNET_RX_NBUF);
  for (const p of b.posted) t.is(w.cpu.mem.getUint16(w.host.entry(p.gref), true) & GTF_readonly, 0);
  b.txRequests();
  b.deliver(etherFrame(BCAST_MAC, PEER_MAC, 0x0806, arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP)));
  await w.run(50);
  t.is(b.takePosted().length, XENNET_RX_NBUF, 'the used buffer came back');
  t.deepEqual(b.txRequests().map((r) => hex(r.data as Uint8Array)), [ARP_REPLY], 'the request was answered');
});

test('a frame spread over two RX buffers (NETRXF_more_data) is put back together', async (t) => {
  const { w, b, cpu } = await rig();
  b.txRequests();
  teachPeer(b);
  await w.run(20);
  const data = text('0123456789abcdefghijklmnopqrstuvwxyz');
  const frame = etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 1 }, icmpEcho(8, 7, 1, data)));
  b.rxFill(frame.subarray(0, 30), NETRXF_more_data);
  b.rxFill(frame.subarray(30));
  b.pushRx();
  await w.run(50);
  const out = b.txRequests();
  t.is(out.length, 1, 'one echo reply');
  const f = parseFrame(out[0]!.data as Uint8Array);
  t.is(f.dst, '00:16:3e:ff:ff:01');
  t.deepEqual(f.payload.subarray(28), data);
  t.is(xennet_view(cpu, w.sc()).get('sc_state'), XN_STATE_CONNECTED);
});

test('a packet that crosses a page boundary goes out as two slots chained with NETTXF_more_data', async (t) => {
  const { w, b, cpu, sc } = await rig();
  for (const r of b.txRequests()) b.txRespond(r.id);
  const buf = uvm_km_alloc(cpu, 2 * 4096);
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const at = buf + 4096 - 100;
  cpu.mem.writeBytes(at, bytes);
  const m = m_get(cpu);
  ptr_set(cpu.mem, m + mbuf.offsetOf('m_data'), at); // external storage, as M_EXT
  m_setlen(cpu, m, 0);
  cpu.mem.setUint32(m + mbuf.offsetOf('m_len'), 300, true);
  t.true(if_enqueue(cpu, sc, m));
  if_start(cpu, sc);
  const reqs = b.txRequests();
  t.deepEqual(reqs.map((r) => [r.offset, r.flags, r.size]), [[3996, NETTXF_more_data, 300], [0, 0, 200]]);
  t.deepEqual(reqs.map((r) => r.data?.length), [100, 200]);
  t.deepEqual(new Uint8Array([...(reqs[0]!.data as Uint8Array), ...(reqs[1]!.data as Uint8Array)]), bytes);
  t.not(reqs[0]!.id, reqs[1]!.id);
  for (const r of reqs) b.txRespond(r.id);
  b.pushTx();
  await w.run(20);
  t.is(xennet_view(cpu, sc).get('sc_tx_nfree'), 256, 'both ids free again');
});

test('an RX response whose data would leave its page costs that frame only', async (t) => {
  const { w, b, cpu, sc } = await rig();
  b.txRequests();
  b.rxFill(new Uint8Array(0), 0, 4000, { status: 500 });
  b.pushRx();
  await w.run(20);
  t.is(xnState(w), XN_STATE_CONNECTED);
  t.is(Number(xennet_view(cpu, sc).get('sc_nrx_bad')), 1);
  b.deliver(etherFrame(BCAST_MAC, PEER_MAC, 0x0806, arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP)));
  await w.run(50);
  t.is(b.txRequests().length, 1, 'the next frame gets through');
});

const hostile: [string, (b: RawBack) => void, RegExp][] = [
  ['a TX response with an id past the table', (b) => { b.txRequests(); b.txRespond(999); b.pushTx(); }, /TX response id 999 is not one of our 256 request ids/],
  ['a TX response for an id not in flight', (b) => { b.txRequests(); b.txRespond(77); b.pushTx(); }, /TX response for id 77, which is not in flight/],
  ['TX rsp_prod jumping ahead', (b) => { b.setRspProd('tx', 1000); b.notify(); }, /TX ring: rsp_prod 1000/],
  ['RX rsp_prod jumping ahead', (b) => { b.setRspProd('rx', 5000); b.notify(); }, /RX ring: rsp_prod 5000/],
  ['an RX response with an id past the buffers', (b) => { b.rxFill(text('x'), 0, 0, { id: 200 }); b.pushRx(); }, /RX response id 200 is not one of our 64 buffers/],
  ['an RX response announcing extra info', (b) => { b.rxFill(text('x'), NETRXF_extra_info); b.pushRx(); }, /extra-info slot/],
  ['two RX responses for one buffer', (b) => { b.takePosted(); const p = b.posted[0]!; b.rxFill(text('a'), 0, 0, { id: p.id }); b.rxFill(text('b'), 0, 0, { id: p.id }); b.pushRx(); }, /RX response for buffer 0, which the backend does not hold/],
];

for (const [what, act, msg] of hostile) {
  test(`hostile backend: ${what} disconnects the interface with a console message`, async (t) => {
    const { w, b, cpu, sc } = await rig();
    t.notThrows(() => act(b));
    await w.run(200, async () => (await w.dom0.read(`${FE}/state`)) === '5');
    t.is(xennet_view(cpu, sc).get('sc_state'), XN_STATE_DEAD);
    t.regex(w.console(), /xennet0: backend misbehaves \(.*\); disconnecting\n/);
    t.regex(w.console(), msg);
    t.is(await w.dom0.read(`${FE}/state`), '5', 'frontend Closing');
    t.regex(await nodeOf(w, `/local/domain/${DOMID}/error/device/vif/0/error`), /^5 backend misbehaves/);
    // Dead stays dead: more events and more output are ignored.
    b.notify();
    t.is(udp_sendbytes(cpu, udp_bind(cpu, 0), PEER_IP, 9, text('x')), EHOSTUNREACH, 'the interface is down');
    await w.run(50);
    t.is(xennet_view(cpu, sc).get('sc_state'), XN_STATE_DEAD);
    t.is(mbuf_inuse(cpu), 0, 'nothing leaked');
  });
}

test('statistics count what went each way', async (t) => {
  const { w, b, cpu, sc } = await rig();
  for (const r of b.txRequests()) b.txRespond(r.id, NETIF_RSP_OKAY);
  b.pushTx();
  teachPeer(b);
  await w.run(20);
  udp_sendbytes(cpu, udp_bind(cpu, 0), PEER_IP, 9, text('hello'));
  t.is(b.txRequests().length, 1);
  t.is(if_stat_get(cpu, sc, 'if_opackets'), 2);
  t.is(if_stat_get(cpu, sc, 'if_ipackets'), 1);
});

test('packets in flight at suspend are sent again, in order, on the new rings after a restore', async (t) => {
  const { w, b, cpu, sc } = await rig();
  for (const r of b.txRequests()) b.txRespond(r.id);
  b.pushTx();
  teachPeer(b);
  await w.run(20);
  const pcb = udp_bind(cpu, 4000);
  for (const s of ['a', 'b', 'c']) udp_sendbytes(cpu, pcb, PEER_IP, 9, text(s));
  const first = b.txRequests();
  t.is(first.length, 3, 'three packets on the ring, not answered');
  const dev = device_lookup(cpu, 'xennet', 0);
  w.h.call('xennet_xenbus_suspend', dev);
  t.false(xennet_tx_drained(cpu, sc), 'the backend still owes three responses');
  await w.simulateRestore();
  w.h.call('xennet_xenbus_resume', dev);
  const b2 = new RawBack(w);
  await b2.connect();
  await w.run(20);
  const again = b2.txRequests().map((r) => parseFrame(r.data as Uint8Array));
  const udp = again.filter((f) => f.type === 0x0800).map((f) => new TextDecoder().decode(f.payload.subarray(28)));
  t.deepEqual(udp, ['a', 'b', 'c']);
  t.is(Number(xennet_view(cpu, sc).get('sc_nrequeued')), 3);
});

test('a backend that closes the device gets us to Closed; when it comes back we connect again', async (t) => {
  const { w, b, cpu, sc } = await rig();
  b.txRequests();
  await w.setBackendState(5);
  t.true(await w.run(500, async () => (await w.dom0.read(`${FE}/state`)) === '6'), 'frontend Closed');
  t.is(xnState(w), XN_STATE_CLOSED);
  t.regex(w.console(), /xennet0: backend is closing the device\n/);
  // The old backend is gone (its maps too); a new one comes up.
  for (const ref of [...w.host.maps]) w.cpu.mem.setUint16(w.host.entry(ref), w.cpu.mem.getUint16(w.host.entry(ref), true) & ~0x18, true);
  w.host.maps.clear();
  await w.setBackendState(2);
  const b2 = new RawBack(w);
  await b2.connect();
  t.is(xennet_view(cpu, sc).get('sc_generation'), 2);
  t.deepEqual(b2.txRequests().map((r) => hex(r.data as Uint8Array)), [GARP], 'announced again');
});

/** A node the guest writes asynchronously: run until it is there. */
async function nodeOf(w: Awaited<ReturnType<typeof netWorld>>, path: string): Promise<string> {
  let v: string | undefined;
  await w.run(500, async () => {
    v = await w.dom0.read(path).catch(() => undefined);
    return v !== undefined;
  });
  return v ?? '(missing)';
}

test('a backend without feature-rx-copy is refused at the handshake', async (t) => {
  const w = await netWorld({ raw: true, rxCopy: '0' });
  t.true(await w.run(20000, () => w.sc() !== 0 && xnState(w) === XN_STATE_DEAD));
  t.regex(await nodeOf(w, `/local/domain/${DOMID}/error/device/vif/0/error`), /feature-rx-copy/);
  t.is(await w.dom0.read(`${FE}/state`), '5');
});

test('a frontend mac node that is not a unicast MAC is refused', async (t) => {
  const w = await netWorld({ raw: true, mac: 'ff:ff:ff:ff:ff:ff' });
  t.true(await w.run(20000, () => w.sc() !== 0 && xnState(w) === XN_STATE_DEAD));
  t.regex(await nodeOf(w, `/local/domain/${DOMID}/error/device/vif/0/error`), /MAC address/);
});

test('the command line ip= wins over the ip node; no address at all is said once', async (t) => {
  const w = await netWorld({ raw: true, cmdline: 'workload=none ip=10.0.0.7/16' });
  await new RawBack(w).connect();
  t.regex(w.console(), /xennet0: address 10\.0\.0\.7\/16\n/);
  const w2 = await netWorld({ raw: true, ip: null });
  await new RawBack(w2).connect();
  t.regex(w2.console(), /xennet0: no IP address configured\n/);
  const w3 = await netWorld({ raw: true, ip: 'not-an-ip' });
  await new RawBack(w3).connect();
  t.regex(w3.console(), /xennet0: ignoring ip node "not-an-ip"\n/);
});

test('a suspend in the middle of the handshake: after a restore the handshake starts over', async (t) => {
  const w = await netWorld({ raw: true });
  t.true(await w.run(20000, async () => (await w.dom0.read(`${FE}/state`).catch(() => '')) === '3'));
  const cpu = w.h.cpu;
  const dev = device_lookup(cpu, 'xennet', 0);
  w.h.call('xennet_xenbus_suspend', dev);
  await w.simulateRestore();
  w.h.call('xennet_xenbus_resume', dev);
  await new RawBack(w).connect();
  t.is(xennet_view(cpu, w.sc()).get('sc_generation'), 1);
  t.is(xnState(w), XN_STATE_CONNECTED);
});

test('a cancelled suspend in the middle of the handshake starts it over in the same domain', async (t) => {
  const w = await netWorld({ raw: true });
  t.true(await w.run(20000, async () => (await w.dom0.read(`${FE}/state`).catch(() => '')) === '3'));
  const cpu = w.h.cpu;
  const dev = device_lookup(cpu, 'xennet', 0);
  w.h.call('xennet_xenbus_suspend', dev);
  w.h.call('xennet_xenbus_resume_cancelled', dev);
  t.true(await w.run(2000, async () => (await w.dom0.read(`${FE}/state`)) === '1'), 'back to Initialising');
  await new RawBack(w).connect();
  t.is(xnState(w), XN_STATE_CONNECTED);
  const v = xennet_view(cpu, w.sc());
  t.is(xengnt_stats(cpu).inuse, 2 + XENNET_RX_NBUF + (256 - v.get('sc_tx_nfree')), 'only this connection\'s grants are held');
});

const drainer = ksymtab({
  t_drain(cpu: GuestCpu, sc: number): void {
    if (xennet_tx_drained(cpu, sc)) {
      printf(cpu, 'T drained\n');
      return;
    }
    tsleep(cpu, xennet_drain_wchan(sc), 0, 't_drain', 'xndrain');
  },
});

test('stop, then wait for the TX ring to drain before suspending (a thread sleeps on the drain channel)', async (t) => {
  const w = await netWorld({ raw: true, extra: [drainer] });
  const b = new RawBack(w);
  await b.connect();
  await w.run(20);
  const cpu = w.h.cpu;
  const sc = w.sc();
  const pending = b.txRequests();
  t.is(pending.length, 1, 'the gratuitous ARP is unanswered');
  const dev = device_lookup(cpu, 'xennet', 0);
  w.h.call('xennet_xenbus_stop', dev);
  udp_sendbytes(cpu, udp_bind(cpu, 0), inet_aton('10.0.0.255') as number, 9, text('queued'));
  lwp_create(cpu, 'drain', 't_drain', sc);
  await w.run(100);
  t.notRegex(w.console(), /T drained/);
  t.deepEqual(b.txRequests(), [], 'nothing new reaches the ring once stopped');
  b.txRespond(pending[0]!.id);
  b.pushTx();
  t.true(await w.run(200, () => /T drained/.test(w.console())));
  t.true(w.h.call('xennet_xenbus_suspend', dev) === 1);
  t.is(if_snd_len(cpu, sc), 1, 'the datagram waits on the interface');
});

/*
 * xennet against the real netback engine and bridge, on the harness with
 * the real xenstored (tests/net/xennet-fixture.ts): attach, the handshake,
 * traffic both ways with dom0's endpoint, suspend/resume.
 */
import test from 'ava';
import { XenbusStateConnected } from '../../hypervisor/public/io/xenbus.js';
import { udpecho_start, heartbeat_start, heartbeat_stats } from '../../sys/netinet/udp_services.js';
import { inet_aton } from '../../sys/netinet/in.js';
import { XN_STATE_CONNECTED, XN_STATE_SUSPENDED } from '../../arch/xen/xen/xennet_var.js';
import { xennet_view } from '../../arch/xen/xen/xennet_ring.js';
import { xengnt_stats } from '../../arch/xen/xen/xengnt.js';
import { device_lookup } from '../../sys/kern/subr_autoconf.js';
import { if_snd_len } from '../../sys/net/if.js';
import { netWorld, xnState, FE } from './xennet-fixture.js';

test('attach prints the NetBSD lines, the handshake completes, the interface comes up', async (t) => {
  const w = await netWorld();
  const ok = await w.run(20000, async () => w.sc() !== 0 && xnState(w) === XN_STATE_CONNECTED && (await w.dom0.read(`${FE}/state`)) === '4');
  t.true(ok, `not connected:\n${w.console()}`);
  const out = w.console();
  t.regex(out, /xennet0 at xenbus0 id 0: Xen Virtual Network Interface\n/);
  t.regex(out, /xennet0: MAC address 00:16:3e:00:00:02\n/);
  t.regex(out, /xennet0: address 10\.0\.0\.2\/24\n/);
  t.is(await w.dom0.read(`${FE}/state`), String(XenbusStateConnected));
  t.is(await w.dom0.read(`${FE}/request-rx-copy`), '1');
  t.is(w.vif?.state, 'connected');
});

async function connected(w: Awaited<ReturnType<typeof netWorld>>): Promise<void> {
  const ok = await w.run(20000, async () => w.sc() !== 0 && xnState(w) === XN_STATE_CONNECTED && (await w.dom0.read(`${FE}/state`)) === '4');
  if (!ok) throw new Error(`xennet0 did not connect:\n${w.console()}`);
}

test('connecting announces the guest with a gratuitous ARP the bridge sees', async (t) => {
  const w = await netWorld();
  await connected(w);
  await w.run(50);
  t.deepEqual(w.bridge.gratuitousArps().map((g) => [g.mac, g.ip, g.op]), [['00:16:3e:00:00:02', '10.0.0.2', 'request']]);
});

test('dom0 pings the guest through netback and the bridge', async (t) => {
  const w = await netWorld();
  await connected(w);
  let result: Awaited<ReturnType<typeof w.endpoint.ping>> | undefined;
  void w.endpoint.ping('10.0.0.2', { timeoutNs: 2e9 }).then((r) => { result = r; });
  t.true(await w.run(5000, () => result !== undefined), 'no answer');
  t.like(result, { ok: true });
});

test('UDP echo on port 7: dom0 sends, the guest echoes back', async (t) => {
  const w = await netWorld();
  await connected(w);
  udpecho_start(w.h.cpu, 7);
  const got: string[] = [];
  w.endpoint.bindUdp(5555, (m) => got.push(`${m.srcIp}:${m.srcPort} ${new TextDecoder().decode(m.payload)}`));
  for (const s of ['one', 'two', 'three']) {
    const r = w.endpoint.sendUdp({ dstIp: '10.0.0.2', dstPort: 7, srcPort: 5555, payload: new TextEncoder().encode(s) });
    t.true(r.ok);
  }
  t.true(await w.run(5000, () => got.length === 3), `echoes: ${got.join(', ')}`);
  t.deepEqual(got, ['10.0.0.2:7 one', '10.0.0.2:7 two', '10.0.0.2:7 three']);
});

test('the guest heartbeat reaches dom0 at its interval', async (t) => {
  const w = await netWorld();
  await connected(w);
  const beats: { payload: string; ns: number }[] = [];
  w.endpoint.bindUdp(7777, (m) => beats.push({ payload: new TextDecoder().decode(m.payload), ns: m.timeNs }));
  const st = heartbeat_start(w.h.cpu, inet_aton('10.0.0.1') as number, 7777, 10);
  t.true(await w.run(20000, () => beats.length >= 5), `beats: ${beats.length}`);
  t.deepEqual(beats.slice(0, 3).map((b) => b.payload.split(' ').slice(0, 2).join(' ')), ['hb 1', 'hb 2', 'hb 3']);
  t.is(heartbeat_stats(w.h.cpu, st).errors, 0);
});

test('suspend stops TX and keeps the rest; after a restore, resume reconnects with new rings and grants and announces itself again', async (t) => {
  const w = await netWorld();
  await connected(w);
  const cpu = w.h.cpu;
  const sc = w.sc();
  const dev = device_lookup(cpu, 'xennet', 0);
  const beats: string[] = [];
  w.endpoint.bindUdp(7777, (m) => beats.push(new TextDecoder().decode(m.payload)));
  heartbeat_start(cpu, inet_aton('10.0.0.1') as number, 7777, 10);
  t.true(await w.run(20000, () => beats.length >= 2));
  const oldRefs = [xennet_view(cpu, sc).get('sc_tx_ring_gntref'), xennet_view(cpu, sc).get('sc_rx_ring_gntref')];
  const oldPort = xennet_view(cpu, sc).get('sc_evtchn');

  t.true(w.h.call('xennet_xenbus_suspend', dev) === 1);
  t.is(xnState(w), XN_STATE_SUSPENDED);
  t.true(w.cpu.masked(oldPort), 'the port is masked');
  const before = beats.length;
  await w.run(300);
  t.is(beats.length, before, 'nothing is sent while suspended');
  t.true(if_snd_len(cpu, sc) > 0, 'heartbeats queue up');

  await w.simulateRestore();
  t.true(w.h.call('xennet_xenbus_resume', dev) === 1);
  await connected(w);
  const v = xennet_view(cpu, sc);
  t.not(v.get('sc_evtchn'), 0);
  t.is(v.get('sc_generation'), 2, 'second connection');
  t.is(xengnt_stats(cpu).inuse, 2 + 64 + (256 - v.get('sc_tx_nfree')), 'grants held: two rings, the RX buffers, TX in flight; no old ref revoked twice');
  t.true(await w.run(20000, () => beats.length >= before + 3), 'heartbeats flow again');
  t.deepEqual(w.bridge.gratuitousArps().map((g) => g.ip), ['10.0.0.2', '10.0.0.2'], 'announced at boot and after the restore');
  t.truthy(oldRefs);
  const seqs = beats.map((b) => Number(b.split(' ')[1]));
  t.deepEqual(seqs, seqs.slice().sort((a, b) => a - b), 'in order, none lost in the queue');
});

test('a cancelled suspend carries on with the same rings: no new handshake', async (t) => {
  const w = await netWorld();
  await connected(w);
  const cpu = w.h.cpu;
  const sc = w.sc();
  const dev = device_lookup(cpu, 'xennet', 0);
  const port = xennet_view(cpu, sc).get('sc_evtchn');
  udpecho_start(cpu, 7);
  const got: string[] = [];
  w.endpoint.bindUdp(5555, (m) => got.push(new TextDecoder().decode(m.payload)));
  w.h.call('xennet_xenbus_suspend', dev);
  w.endpoint.sendUdp({ dstIp: '10.0.0.2', dstPort: 7, srcPort: 5555, payload: new TextEncoder().encode('while suspended') });
  await w.run(200);
  t.deepEqual(got, []);
  t.true(w.h.call('xennet_xenbus_resume_cancelled', dev) === 1);
  t.true(await w.run(5000, () => got.length === 1));
  t.deepEqual(got, ['while suspended'], 'the frame that came in meanwhile is answered');
  t.is(xennet_view(cpu, sc).get('sc_evtchn'), port);
  t.is(xennet_view(cpu, sc).get('sc_generation'), 1);
  t.is(w.bridge.gratuitousArps().length, 1);
});

/*
 * The software bridge: learning, forwarding, flooding, port moves (what a
 * migrated guest's gratuitous ARP causes), ageing by the injected clock,
 * counters, and frames it must refuse without throwing.
 */
import test from 'ava';
import { Bridge, type BridgePort } from '../../hypervisor/dom0/net/bridge.js';
import { Dom0Endpoint } from '../../hypervisor/dom0/net/endpoint.js';
import { parseMac, parseIpv4, type Mac } from '../../hypervisor/dom0/net/addr.js';
import { buildEthernet, buildGratuitousArpFrame, buildArpReplyFrame } from '../../hypervisor/dom0/net/ether.js';
import { FakeClock, RecordingPort, seededRandom, randomBytes } from './net-fixture.js';

const mac = (s: string): Mac => parseMac(s)!;
const A = mac('00:16:3e:00:00:0a');
const B = mac('00:16:3e:00:00:0b');
const C = mac('00:16:3e:00:00:0c');
const X = mac('00:16:3e:00:00:99');
const BCAST = mac('ff:ff:ff:ff:ff:ff');

function frame(dst: Mac, src: Mac, tag = 0): Uint8Array {
  return buildEthernet({ dst, src, ethertype: 0x88b5, payload: Uint8Array.of(tag) });
}

function setup(ageingNs?: number) {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock, ...(ageingNs === undefined ? {} : { ageingNs }) });
  const pa = new RecordingPort('vif1.0');
  const pb = new RecordingPort('vif2.0');
  const pc = new RecordingPort('vif3.0');
  const la = bridge.attach(pa);
  const lb = bridge.attach(pb);
  const lc = bridge.attach(pc);
  return { clock, bridge, pa, pb, pc, la, lb, lc };
}

const names = (ports: RecordingPort[]): string[] => ports.filter((p) => p.frames.length > 0).map((p) => p.name);

test('broadcast floods to every port but the ingress, and teaches the source', (t) => {
  const { bridge, pa, pb, pc, la } = setup();
  la.transmit(frame(BCAST, A));
  t.deepEqual(names([pa, pb, pc]), ['vif2.0', 'vif3.0']);
  t.deepEqual(bridge.fdb().map((e) => [e.mac, e.port]), [['00:16:3e:00:00:0a', 'vif1.0']]);
  t.is(bridge.lookup('00:16:3E:00:00:0A'), 'vif1.0');
});

test('unicast to a learned MAC goes to its port only; unknown unicast floods', (t) => {
  const { pa, pb, pc, la, lb } = setup();
  la.transmit(frame(BCAST, A));
  pb.take(); pc.take();
  lb.transmit(frame(A, B, 1));
  t.deepEqual(names([pa, pb, pc]), ['vif1.0']);
  t.is(pa.take()[0]![14], 1);
  la.transmit(frame(X, A, 2));
  t.deepEqual(names([pa, pb, pc]), ['vif2.0', 'vif3.0']);
  pb.take(); pc.take();
  la.transmit(frame(B, A, 3));
  t.deepEqual(names([pa, pb, pc]), ['vif2.0']);
});

test('a frame for a MAC behind its own ingress port is not sent back', (t) => {
  const { bridge, pa, pb, pc, la } = setup();
  la.transmit(frame(BCAST, X));
  pb.take(); pc.take();
  la.transmit(frame(X, A));
  t.deepEqual(names([pa, pb, pc]), []);
  t.deepEqual(bridge.drops(), { 'same-port': 1 });
  t.is(bridge.counters('vif1.0')!.rxDropped, 1);
});

test('a gratuitous ARP from another port moves the MAC, is logged with MAC, IP, port and time', (t) => {
  const { clock, bridge, pa, pb, pc, la, lb, lc } = setup();
  const seen: string[] = [];
  const off = bridge.onGratuitousArp((e) => seen.push(`${e.ip}@${e.port}`));
  la.transmit(buildGratuitousArpFrame(A, parseIpv4('10.0.0.2')!));
  pa.take(); pb.take(); pc.take();
  clock.advance(5e9);
  // The guest "migrated": same MAC, announced from another vif.
  lb.transmit(buildGratuitousArpFrame(A, parseIpv4('10.0.0.2')!));
  t.deepEqual(names([pa, pb, pc]), ['vif1.0', 'vif3.0']);
  t.is(bridge.lookup('00:16:3e:00:00:0a'), 'vif2.0');
  t.deepEqual(bridge.portMoves(), [{ mac: '00:16:3e:00:00:0a', from: 'vif1.0', to: 'vif2.0', timeNs: 5e9 }]);
  t.deepEqual(bridge.gratuitousArps(), [
    { mac: '00:16:3e:00:00:0a', ip: '10.0.0.2', port: 'vif1.0', op: 'request', timeNs: 0 },
    { mac: '00:16:3e:00:00:0a', ip: '10.0.0.2', port: 'vif2.0', op: 'request', timeNs: 5e9 },
  ]);
  t.deepEqual(seen, ['10.0.0.2@vif1.0', '10.0.0.2@vif2.0']);
  pa.take(); pb.take(); pc.take();
  lc.transmit(frame(A, C));
  t.deepEqual(names([pa, pb, pc]), ['vif2.0'], 'unicast to the moved MAC follows it');
  off();
  lb.transmit(buildGratuitousArpFrame(A, parseIpv4('10.0.0.2')!));
  t.is(seen.length, 2, 'unsubscribed listener is not called');
});

test('an ordinary ARP reply is not logged as gratuitous', (t) => {
  const { bridge, la } = setup();
  la.transmit(buildArpReplyFrame(A, parseIpv4('10.0.0.2')!, B, parseIpv4('10.0.0.1')!));
  t.deepEqual(bridge.gratuitousArps(), []);
});

test('entries age out by the injected clock; traffic refreshes them; tick() sweeps', (t) => {
  const { clock, bridge, pa, pb, pc, la, lb } = setup(10e9);
  la.transmit(frame(BCAST, A));
  clock.advance(6e9);
  la.transmit(frame(BCAST, A)); // refresh at 6 s
  clock.advance(6e9); // 12 s: 6 s since last seen, still fresh
  pa.take(); pb.take(); pc.take();
  lb.transmit(frame(A, B));
  t.deepEqual(names([pa, pb, pc]), ['vif1.0']);
  clock.advance(4e9 + 1); // 16 s + 1 ns: A is 10 s + 1 ns old
  pa.take();
  t.is(bridge.lookup('00:16:3e:00:00:0a'), undefined);
  lb.transmit(frame(A, B));
  t.deepEqual(names([pa, pb, pc]), ['vif1.0', 'vif3.0'], 'an aged MAC is unknown again: flooded');
  clock.advance(20e9);
  bridge.tick();
  t.deepEqual(bridge.fdb(), []);
});

test('per-port counters count frames and bytes both ways', (t) => {
  const { bridge, la, lb } = setup();
  la.transmit(frame(BCAST, A)); // 60 bytes, flooded to two ports
  lb.transmit(frame(A, B)); // 60 bytes to vif1.0
  t.deepEqual(bridge.counters('vif1.0'), { rxFrames: 1, rxBytes: 60, txFrames: 1, txBytes: 60, rxDropped: 0 });
  t.deepEqual(bridge.counters('vif2.0'), { rxFrames: 1, rxBytes: 60, txFrames: 1, txBytes: 60, rxDropped: 0 });
  t.deepEqual(bridge.counters('vif3.0'), { rxFrames: 0, rxBytes: 0, txFrames: 1, txBytes: 60, rxDropped: 0 });
  t.is(bridge.counters('nope'), undefined);
});

test('runts, group or zero source MACs and oversize frames are dropped and counted, never thrown', (t) => {
  const { bridge, pa, pb, pc, la } = setup();
  la.transmit(new Uint8Array(13));
  la.transmit(frame(B, BCAST));
  la.transmit(frame(B, mac('01:00:5e:00:00:01')));
  la.transmit(frame(B, 0 as Mac));
  la.transmit(new Uint8Array(0x10000));
  t.deepEqual(names([pa, pb, pc]), []);
  t.deepEqual(bridge.drops(), { runt: 1, 'bad-source': 3, oversize: 1 });
  t.deepEqual(bridge.fdb(), []);
  t.is(bridge.counters('vif1.0')!.rxDropped, 5);
});

test('each port gets its own copy; the sender may reuse its buffer', (t) => {
  const { pb, pc, la } = setup();
  const f = frame(BCAST, A, 7);
  la.transmit(f);
  f[14] = 99;
  pb.frames[0]![14] = 55;
  t.is(pc.frames[0]![14], 7);
});

test('a port answering inside deliver() is queued, not recursed: its answer follows the frame', (t) => {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const order: string[] = [];
  let link = undefined as ReturnType<Bridge['attach']> | undefined;
  const responder: BridgePort = {
    name: 'responder',
    deliver: (f) => {
      order.push(`responder got ${f[14]}`);
      if (f[14] === 1) link!.transmit(frame(BCAST, B, 2));
    },
  };
  const watcher: BridgePort = { name: 'watcher', deliver: (f) => order.push(`watcher got ${f[14]}`) };
  const origin = new RecordingPort('origin');
  const lo = bridge.attach(origin);
  link = bridge.attach(responder);
  bridge.attach(watcher);
  lo.transmit(frame(BCAST, A, 1));
  t.deepEqual(order, ['responder got 1', 'watcher got 1', 'watcher got 2']);
  t.is(origin.frames.length, 1);
});

test('detach forgets the port and its MACs; duplicate names are refused; a detached link drops', (t) => {
  const { bridge, pa, pb, pc, la, lb } = setup();
  la.transmit(frame(BCAST, A));
  t.throws(() => bridge.attach(new RecordingPort('vif1.0')), { message: /vif1\.0 is already attached/ });
  la.detach();
  t.false(la.attached);
  t.deepEqual(bridge.portNames(), ['vif2.0', 'vif3.0']);
  t.deepEqual(bridge.fdb(), []);
  pa.take(); pb.take(); pc.take();
  la.transmit(frame(BCAST, A));
  t.deepEqual(names([pa, pb, pc]), []);
  t.is(bridge.drops()['detached'], 1);
  lb.transmit(frame(A, B));
  t.deepEqual(names([pa, pb, pc]), ['vif3.0']);
  const again = bridge.attach(new RecordingPort('vif1.0'));
  t.true(again.attached);
});

test('random frames into a bridge with dom0 attached never throw (seeded)', (t) => {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock });
  const guest = bridge.attach(new RecordingPort('vif1.0'));
  const rand = seededRandom(42);
  const dom0Mac = parseMac(dom0.mac)!;
  t.notThrows(() => {
    for (let i = 0; i < 3000; i++) {
      const f = randomBytes(rand, Math.floor(rand() * 120));
      // Aim half of them at dom0 with IPv4/ARP ethertypes so they get past the first check.
      if (i % 2 === 0 && f.length >= 14) {
        f.set(buildEthernet({ dst: rand() < 0.5 ? dom0Mac : BCAST, src: A, ethertype: rand() < 0.5 ? 0x0800 : 0x0806, payload: new Uint8Array(0) }).subarray(0, 14));
      }
      guest.transmit(f);
      clock.advance(1e6);
      if (i % 100 === 0) { bridge.tick(); dom0.tick(); }
    }
  });
  t.true(Object.keys(dom0.drops()).length > 1, `dom0 drop reasons: ${JSON.stringify(dom0.drops())}`);
});

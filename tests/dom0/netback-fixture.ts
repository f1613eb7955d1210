// A netback under test: the loopback host (buffer grants, counted
// notifications), a real Bridge on a hand-moved clock, a Netback with one
// vif, its frontend (FrontRings over granted pages), and a peer port on
// the bridge that records what reaches it and can send. Nothing sleeps;
// the "machine" is the test calling drain().
import { LoopbackHost } from '../../hypervisor/dom0/blkback/loopback.js';
import { Bridge, type BridgeLink } from '../../hypervisor/dom0/net/bridge.js';
import { parseMac, parseIpv4 } from '../../hypervisor/dom0/net/addr.js';
import { buildEthernet, ETHERTYPE_IPV4 } from '../../hypervisor/dom0/net/ether.js';
import { buildUdpPacket } from '../../hypervisor/dom0/net/ip.js';
import { Netback } from '../../hypervisor/dom0/netback/netback.js';
import type { Vif } from '../../hypervisor/dom0/netback/vif.js';
import { LoopbackNetFront, type QueueFrameOptions } from '../../hypervisor/dom0/netback/loopback.js';
import type { TxResponse } from '../../hypervisor/dom0/netback/wire.js';
import { domid } from '../../hypervisor/public/types.js';
import { FakeClock, RecordingPort } from './net-fixture.js';

export const FRONT = domid(3);
export const PAGE = 4096;
export const PEER_MAC = '02:00:00:00:00:fe';

export const guestMac = (dom: number, devid = 0): string =>
  `00:16:3e:00:${dom.toString(16).padStart(2, '0')}:${devid.toString(16).padStart(2, '0')}`;

/** The far end of the bridge: records frames and can send its own. */
export class Peer extends RecordingPort {
  link: BridgeLink | undefined;
  send(frame: Uint8Array): void {
    this.link!.transmit(frame);
  }
}

export interface NetRig {
  host: LoopbackHost;
  clock: FakeClock;
  bridge: Bridge;
  nb: Netback;
  vif: Vif;
  front: LoopbackNetFront;
  peer: Peer;
  mac: string;
  /** Times a vif asked to be polled. */
  schedules: number;
  /** Vifs that failed by themselves. */
  failures: Vif[];
}

export interface NetRigOptions {
  domid?: number;
  devid?: number;
  /** The frontend's port (default 7); two vifs of one domain need two. */
  port?: number;
  sg?: boolean;
  startIndex?: number;
  rxQueueFrames?: number;
  /** Put the vif into an existing rig's host, bridge and Netback. */
  share?: NetRig;
  connect?: boolean;
}

export function netRig(opts: NetRigOptions = {}): NetRig {
  const share = opts.share;
  const r = { schedules: 0, failures: [] as Vif[] } as NetRig;
  const host = share?.host ?? new LoopbackHost();
  const clock = share?.clock ?? new FakeClock();
  const bridge = share?.bridge ?? new Bridge({ name: 'xenbr0', clock });
  const nb = share?.nb ?? new Netback({
    host,
    schedule: () => { r.schedules++; },
    onStateChange: (v) => { r.failures.push(v); },
    ...(opts.rxQueueFrames === undefined ? {} : { rxQueueFrames: opts.rxQueueFrames }),
  });
  let peer = share?.peer;
  if (peer === undefined) {
    peer = new Peer('peer');
    peer.link = bridge.attach(peer);
  }
  const dom = opts.domid === undefined ? FRONT : domid(opts.domid);
  const devid = opts.devid ?? 0;
  const mac = guestMac(dom, devid);
  const created = nb.create({ frontendDomid: dom, devid, mac, bridge });
  if (!created.ok) throw new Error(`netRig: ${created.error.message}`);
  const front = new LoopbackNetFront(host, dom, {
    ...(opts.port === undefined ? {} : { port: opts.port }),
    ...(opts.sg === undefined ? {} : { sg: opts.sg }),
    ...(opts.startIndex === undefined ? {} : { startIndex: opts.startIndex }),
  });
  Object.assign(r, { host, clock, bridge, nb, vif: created.value, front, peer, mac });
  if (opts.connect ?? true) {
    const c = created.value.connect(front.connectParams(), front.ringsAt());
    if (!c.ok) throw new Error(`netRig connect: ${c.error}`);
  }
  return r;
}

const macBytes = (mac: string): number[] => mac.split(':').map((h) => parseInt(h, 16));

/** An Ethernet frame of exactly `len` bytes from `src` to `dst` whose payload bytes follow `seed`. */
export function frame(len: number, src: string, dst: string = PEER_MAC, seed = 1): Uint8Array {
  const f = new Uint8Array(len);
  f.set(macBytes(dst), 0);
  f.set(macBytes(src), 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < len; i++) f[i] = (i * seed + 7) & 0xff;
  return f;
}

/** A UDP/IPv4 Ethernet frame with a correct checksum. */
export function udpFrame(src: string, dst: string, payload: Uint8Array): Uint8Array {
  const ip = buildUdpPacket({
    src: parseIpv4('10.0.0.3')!, dst: parseIpv4('10.0.0.9')!, srcPort: 4000, dstPort: 7, payload,
  });
  return buildEthernet({ dst: parseMac(dst)!, src: parseMac(src)!, ethertype: ETHERTYPE_IPV4, payload: ip });
}

/** Queue frames on the TX ring, push, drain, and collect the TX responses. */
export function sendTx(r: NetRig, frames: readonly Uint8Array[], opts: QueueFrameOptions = {}): TxResponse[] {
  for (const f of frames) if (r.front.queueFrame(f, opts) === undefined) throw new Error('sendTx: ring full');
  r.front.push();
  r.nb.drain();
  return r.front.txResponses();
}

/** A seeded PRNG (mulberry32). */
export { seededRandom } from './net-fixture.js';

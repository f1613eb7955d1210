/*
 * A network stack on the guest test harness, with no hypervisor: one (or
 * more) fake Ethernet interfaces whose start routine moves every frame it
 * is given onto a "wire" queue in guest memory, where the test reads it;
 * frames from the outside world are injected with ether_input, as a
 * driver's receive interrupt would.
 *
 * Frame builders here are written independently of the guest code (own
 * checksum routine), so a test checks the guest against a second opinion.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, record, u32 } from '../../hypervisor/public/layout.js';
import { ksymtab, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { kmem_zalloc } from '../../sys/kern/subr_kmem.js';
import { tailq_entry, TAILQ_INIT } from '../../sys/sys/queue.js';
import { NET_KSYMTABS } from '../../sys/net/net_conf.js';
import { net_init } from '../../sys/net/net_globals.js';
import { ifnet, if_attach, if_dequeue, if_setflags, IFF_RUNNING } from '../../sys/net/if.js';
import { ether_ifattach, ether_input } from '../../sys/net/if_ethersubr.js';
import { m_get, m_append_bytes, m_bytes, m_free, mq_enqueue, mq_dequeue } from '../../sys/net/mbuf.js';
import { inet_aton } from '../../sys/netinet/in.js';
import { in_ifconfig } from '../../sys/netinet/in_ifaddr.js';
import { Harness } from '../guest/harness.js';
import { KERNEL_IMAGE_PAGES } from '../../arch/xen/include/vmparam.js';

export const fakeif_softc = struct('struct fakeif_softc', {
  sc_if: record(ifnet),
  sc_wire: record(tailq_entry),
  sc_nsent: u32,
  sc_hold: u32,
});
const SC_WIRE = fakeif_softc.offsetOf('sc_wire');

export const fakeif_ksyms = ksymtab({
  /** The driver's start routine: everything queued goes on the wire (unless held). */
  fakeif_start(cpu: GuestCpu, ifp: number): void {
    const sc = ifp; // sc_if is the first member
    const v = fakeif_softc.view(cpu.mem, sc);
    if (v.get('sc_hold') !== 0) return;
    for (let m = if_dequeue(cpu, ifp); m !== 0; m = if_dequeue(cpu, ifp)) {
      mq_enqueue(cpu, sc + SC_WIRE, m);
      v.set('sc_nsent', v.get('sc_nsent') + 1);
    }
  },
});

export const GUEST_MAC = Object.freeze([0x00, 0x16, 0x3e, 0x00, 0x00, 0x02]);
export const PEER_MAC = Object.freeze([0x00, 0x16, 0x3e, 0xff, 0xff, 0x01]);
export const OTHER_MAC = Object.freeze([0x00, 0x16, 0x3e, 0x00, 0x00, 0x09]);
export const BCAST_MAC = Object.freeze([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const GUEST_IP = inet_aton('10.0.0.2') as number;
export const PEER_IP = inet_aton('10.0.0.1') as number;
export const OTHER_IP = inet_aton('10.0.0.9') as number;

export interface NetRig {
  readonly h: Harness;
  readonly cpu: GuestCpu;
  readonly ifp: number;
}

export interface RigOptions {
  readonly extra?: readonly KSymTab[];
  readonly memPages?: number;
  /** Leave the interface without an address. */
  readonly noAddress?: boolean;
}

/** Boot the MI kernel + stack, attach fake0 (10.0.0.2/24, running). */
export function netRig(opts: RigOptions = {}): NetRig {
  const h = Harness.boot({ extra: [...NET_KSYMTABS, fakeif_ksyms, ...(opts.extra ?? [])], memPages: opts.memPages ?? KERNEL_IMAGE_PAGES + 1024 });
  const cpu = h.cpu;
  net_init(cpu);
  const ifp = addFakeIf(cpu, 'fake0', GUEST_MAC);
  if (opts.noAddress !== true) in_ifconfig(cpu, ifp, GUEST_IP, 24);
  if_setflags(cpu, ifp, IFF_RUNNING);
  return { h, cpu, ifp };
}

export function addFakeIf(cpu: GuestCpu, name: string, mac: readonly number[]): number {
  const sc = kmem_zalloc(cpu, fakeif_softc.size);
  if (sc === 0) throw new Error('no memory for a fake interface');
  TAILQ_INIT(cpu.mem, sc + SC_WIRE);
  if_attach(cpu, sc, name, sc, 'fakeif_start');
  ether_ifattach(cpu, sc, mac);
  return sc;
}

/** Hold (or release) frames in the send queue, as a driver with a full ring would. */
export function holdWire(cpu: GuestCpu, ifp: number, hold: boolean): void {
  fakeif_softc.view(cpu.mem, ifp).set('sc_hold', hold ? 1 : 0);
}

/** Frames the interface sent since the last call, oldest first. */
export function wire(cpu: GuestCpu, ifp: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let m = mq_dequeue(cpu, ifp + SC_WIRE); m !== 0; m = mq_dequeue(cpu, ifp + SC_WIRE)) {
    out.push(m_bytes(cpu, m));
    m_free(cpu, m);
  }
  return out;
}

/** A frame arrives on the interface. */
export function inject(cpu: GuestCpu, ifp: number, frame: Uint8Array): void {
  const m = m_get(cpu);
  if (m === 0) throw new Error('no mbuf for an injected frame');
  if (!m_append_bytes(cpu, m, frame)) throw new Error(`frame of ${frame.length} bytes does not fit an mbuf`);
  ether_input(cpu, ifp, m);
}

// ---------------------------------------------------------------------------
// Frame builders and parsers (test side)

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

/** RFC 1071 checksum over `b` plus a running sum. */
export function cksum(b: Uint8Array, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < b.length; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (b.length % 2 === 1) s += (b[b.length - 1] as number) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const ip4 = (a: number): number[] => [(a >>> 24) & 0xff, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff];

export function etherFrame(dst: readonly number[], src: readonly number[], type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(payload, 14);
  return f;
}

export function arpPacket(op: number, sha: readonly number[], spa: number, tha: readonly number[], tpa: number): Uint8Array {
  return new Uint8Array([0, 1, 8, 0, 6, 4, 0, op, ...sha, ...ip4(spa), ...tha, ...ip4(tpa)]);
}

export interface Ipv4Opts {
  readonly src: number;
  readonly dst: number;
  readonly proto: number;
  readonly id?: number;
  readonly ttl?: number;
  readonly off?: number;
  /** Break the header checksum. */
  readonly badSum?: boolean;
  /** Override ip_len. */
  readonly len?: number;
}

export function ipv4Packet(o: Ipv4Opts, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  const len = o.len ?? p.length;
  p.set([0x45, 0, len >> 8, len & 0xff, ((o.id ?? 0) >> 8) & 0xff, (o.id ?? 0) & 0xff, ((o.off ?? 0x4000) >> 8) & 0xff, (o.off ?? 0x4000) & 0xff,
    o.ttl ?? 64, o.proto, 0, 0, ...ip4(o.src), ...ip4(o.dst)]);
  let s = cksum(p.subarray(0, 20));
  if (o.badSum === true) s ^= 0x5555;
  p[10] = s >> 8;
  p[11] = s & 0xff;
  p.set(payload, 20);
  return p;
}

export function udpDatagram(src: number, dst: number, sport: number, dport: number, data: Uint8Array, opts: { noSum?: boolean; badSum?: boolean; ulen?: number } = {}): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  const ulen = opts.ulen ?? u.length;
  u.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, ulen >> 8, ulen & 0xff, 0, 0]);
  u.set(data, 8);
  if (opts.noSum !== true) {
    const pseudo = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + u.length;
    let s = cksum(u, pseudo);
    if (s === 0) s = 0xffff;
    if (opts.badSum === true) s ^= 0x00ff;
    u[6] = s >> 8;
    u[7] = s & 0xff;
  }
  return u;
}

export function icmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  const p = new Uint8Array(8 + data.length);
  p.set([type, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff]);
  p.set(data, 8);
  const s = cksum(p);
  p[2] = s >> 8;
  p[3] = s & 0xff;
  return p;
}

/** A UDP frame from the peer (dom0) to the guest. */
export function udpFrameToGuest(sport: number, dport: number, data: Uint8Array, src = PEER_IP, srcMac: readonly number[] = PEER_MAC): Uint8Array {
  return etherFrame(GUEST_MAC, srcMac, 0x0800, ipv4Packet({ src, dst: GUEST_IP, proto: 17 }, udpDatagram(src, GUEST_IP, sport, dport, data)));
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

export interface ParsedFrame {
  readonly dst: string;
  readonly src: string;
  readonly type: number;
  readonly payload: Uint8Array;
}

const macStr = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

export function parseFrame(f: Uint8Array): ParsedFrame {
  return { dst: macStr(f.subarray(0, 6)), src: macStr(f.subarray(6, 12)), type: ((f[12] as number) << 8) | (f[13] as number), payload: f.subarray(14) };
}

/** The guest's ARP table primed with the peer, as if it had answered a request. */
export function learnPeer(cpu: GuestCpu, ifp: number, ip = PEER_IP, mac: readonly number[] = PEER_MAC): void {
  inject(cpu, ifp, etherFrame(GUEST_MAC, mac, 0x0806, arpPacket(2, mac, ip, GUEST_MAC, GUEST_IP)));
}

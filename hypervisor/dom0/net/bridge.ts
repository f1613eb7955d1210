/*
 * A software Ethernet bridge (`xenbr0`): what dom0's bridge device does
 * for the vifs of its guests.
 *
 * Transparent learning bridge (IEEE 802.1D without spanning tree):
 *  - every frame teaches the bridge "source MAC is behind the ingress port";
 *  - a frame to a learned unicast MAC goes out that port only (or nowhere,
 *    when that is the port it came in on);
 *  - broadcast, multicast and unknown unicast are flooded to every port
 *    but the ingress;
 *  - an entry not refreshed for `ageingNs` is forgotten (802.1D's default
 *    is 300 s). Time is whatever the injected clock says: the machine
 *    passes time in, the bridge has no timers.
 * When a MAC shows up behind another port the entry moves at once. That is
 * how a restored or migrated guest becomes reachable again: its first
 * frame, a gratuitous ARP, re-teaches the bridge. The bridge records every
 * gratuitous ARP it forwards, so the demo and the tests can show it.
 *
 * Ports are anything with a name and a deliver(): netback's vifs and
 * dom0's own endpoint attach the same way, and send with the link that
 * attach() returns. Frames are processed one at a time from a queue, so a
 * port that answers from inside deliver() (dom0 replying to an ARP) does
 * not recurse into the bridge; the answer goes out after the current
 * frame has been delivered everywhere.
 */
import createDebug from 'debug';
import { XEN_NETIF_MAX_TX_SIZE } from '../../public/io/netif.js';
import { type Mac, parseMac, formatMac, formatIpv4, isMulticastMac, readMac, readU16, MAC_ZERO } from './addr.js';
import { ETH_HLEN, ETHERTYPE_ARP, parseArp, isGratuitousArp } from './ether.js';

const log = createDebug('dom0:bridge');

/** A time source in ns. The machine's Clock (system time) fits. */
export interface NetClock {
  now(): number;
}

/** Something that can be plugged into a bridge: a vif, dom0's endpoint. */
export interface BridgePort {
  readonly name: string;
  /** A frame the bridge sends out of this port. The bytes are the port's to keep. */
  deliver(frame: Uint8Array): void;
}

/** What attach() returns: the port's way into the bridge. */
export interface BridgeLink {
  readonly port: BridgePort;
  /** A frame entering the bridge from this port (copied by the bridge). */
  transmit(frame: Uint8Array): void;
  /** Unplug: the port's forwarding entries go with it. */
  detach(): void;
  readonly attached: boolean;
}

export interface PortCounters {
  /** Frames and bytes that entered the bridge from this port. */
  rxFrames: number;
  rxBytes: number;
  /** Frames and bytes the bridge delivered to this port. */
  txFrames: number;
  txBytes: number;
  /** Frames from this port the bridge dropped. */
  rxDropped: number;
}

export interface GratuitousArpEvent {
  readonly mac: string;
  readonly ip: string;
  /** Port the announcement came in on. */
  readonly port: string;
  readonly op: 'request' | 'reply';
  /** Clock time (ns) the bridge saw it. */
  readonly timeNs: number;
}

export interface PortMoveEvent {
  readonly mac: string;
  readonly from: string;
  readonly to: string;
  readonly timeNs: number;
}

export interface FdbEntry {
  readonly mac: string;
  readonly port: string;
  /** ns since the entry was last refreshed. */
  readonly ageNs: number;
}

export interface BridgeOptions {
  readonly name: string;
  readonly clock: NetClock;
  /** Forget a MAC not heard from for this long (default 300 s). */
  readonly ageingNs?: number;
  /** Gratuitous ARPs and port moves kept in the logs (default 256 each). */
  readonly logLimit?: number;
}

export const DEFAULT_AGEING_NS = 300e9;

interface PortState {
  readonly port: BridgePort;
  readonly counters: PortCounters;
  readonly link: BridgeLink;
}

interface Learned {
  port: PortState;
  seenNs: number;
}

export class Bridge {
  readonly name: string;
  readonly ageingNs: number;
  private readonly clock: NetClock;
  private readonly logLimit: number;
  private readonly ports = new Map<string, PortState>();
  private readonly fdbTable = new Map<Mac, Learned>();
  private readonly queue: { from: PortState; frame: Uint8Array }[] = [];
  private draining = false;
  private readonly dropCounts = new Map<string, number>();
  private readonly garpLog: GratuitousArpEvent[] = [];
  private readonly moveLog: PortMoveEvent[] = [];
  private readonly garpListeners = new Set<(e: GratuitousArpEvent) => void>();

  constructor(opts: BridgeOptions) {
    this.name = opts.name;
    this.clock = opts.clock;
    this.ageingNs = opts.ageingNs ?? DEFAULT_AGEING_NS;
    this.logLimit = opts.logLimit ?? 256;
  }

  /** Plug a port in. Names are unique per bridge; reusing one is a bug. */
  attach(port: BridgePort): BridgeLink {
    if (this.ports.has(port.name)) throw new Error(`bridge ${this.name}: port ${port.name} is already attached`);
    let attached = true;
    const counters: PortCounters = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0 };
    const link: BridgeLink = {
      port,
      transmit: (frame) => {
        if (!attached) {
          this.countDrop('detached', `frame from detached port ${port.name}`);
          return;
        }
        this.enqueue(state, frame);
      },
      detach: () => {
        if (!attached) return;
        attached = false;
        this.ports.delete(port.name);
        for (const [mac, e] of this.fdbTable) if (e.port === state) this.fdbTable.delete(mac);
        log('%s: port %s detached', this.name, port.name);
      },
      get attached() { return attached; },
    };
    const state: PortState = { port, counters, link };
    this.ports.set(port.name, state);
    log('%s: port %s attached', this.name, port.name);
    return link;
  }

  portNames(): string[] {
    return [...this.ports.keys()];
  }

  /** Live counters of a port (undefined when not attached). */
  counters(portName: string): Readonly<PortCounters> | undefined {
    return this.ports.get(portName)?.counters;
  }

  /** Frames dropped by the bridge, by reason. */
  drops(): Record<string, number> {
    return Object.fromEntries(this.dropCounts);
  }

  /** The forwarding database, aged entries left out. */
  fdb(): FdbEntry[] {
    const now = this.clock.now();
    const out: FdbEntry[] = [];
    for (const [mac, e] of this.fdbTable) {
      if (now - e.seenNs <= this.ageingNs) out.push({ mac: formatMac(mac), port: e.port.port.name, ageNs: now - e.seenNs });
    }
    return out;
  }

  /** Port a MAC was last seen behind, if still fresh. */
  lookup(mac: string): string | undefined {
    const m = parseMac(mac);
    const e = m === undefined ? undefined : this.fdbTable.get(m);
    return e && this.clock.now() - e.seenNs <= this.ageingNs ? e.port.port.name : undefined;
  }

  /** Gratuitous ARPs seen, oldest first (the last `logLimit`). */
  gratuitousArps(): readonly GratuitousArpEvent[] {
    return this.garpLog;
  }

  /** MACs that moved from one port to another, oldest first (the last `logLimit`). */
  portMoves(): readonly PortMoveEvent[] {
    return this.moveLog;
  }

  /** Call `fn` for every gratuitous ARP from now on; returns the unsubscribe. */
  onGratuitousArp(fn: (e: GratuitousArpEvent) => void): () => void {
    this.garpListeners.add(fn);
    return () => { this.garpListeners.delete(fn); };
  }

  /** Forget entries older than the ageing time (lookups ignore them anyway). */
  tick(): void {
    const now = this.clock.now();
    for (const [mac, e] of this.fdbTable) {
      if (now - e.seenNs > this.ageingNs) {
        this.fdbTable.delete(mac);
        log('%s: %s aged out of %s', this.name, formatMac(mac), e.port.port.name);
      }
    }
  }

  private countDrop(reason: string, detail: string, from?: PortState): void {
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + 1);
    if (from) from.counters.rxDropped++;
    log('%s: drop (%s) %s', this.name, reason, detail);
  }

  private enqueue(from: PortState, frame: Uint8Array): void {
    from.counters.rxFrames++;
    from.counters.rxBytes += frame.length;
    if (frame.length < ETH_HLEN) {
      this.countDrop('runt', `${frame.length}-byte frame from ${from.port.name}`, from);
      return;
    }
    if (frame.length > XEN_NETIF_MAX_TX_SIZE) {
      this.countDrop('oversize', `${frame.length}-byte frame from ${from.port.name}`, from);
      return;
    }
    this.queue.push({ from, frame: frame.slice() });
    if (this.draining) return;
    this.draining = true;
    try {
      for (let item = this.queue.shift(); item !== undefined; item = this.queue.shift()) this.forward(item.from, item.frame);
    } finally {
      this.draining = false;
    }
  }

  private forward(from: PortState, frame: Uint8Array): void {
    // The port may have been unplugged while its frame waited in the queue.
    if (!from.link.attached) {
      this.countDrop('detached', `queued frame from ${from.port.name}`);
      return;
    }
    const dst = readMac(frame, 0);
    const src = readMac(frame, 6);
    if (isMulticastMac(src) || src === MAC_ZERO) {
      this.countDrop('bad-source', `source ${formatMac(src)} from ${from.port.name}`, from);
      return;
    }
    const now = this.clock.now();
    this.learn(src, from, now);
    if (readU16(frame, 12) === ETHERTYPE_ARP) this.noteArp(frame, from, now);

    if (!isMulticastMac(dst)) {
      const e = this.fdbTable.get(dst);
      if (e && now - e.seenNs <= this.ageingNs) {
        if (e.port === from) {
          // 802.1D: never send a frame back out of the port it came in on.
          this.countDrop('same-port', `${formatMac(dst)} is behind ${from.port.name} itself`, from);
          return;
        }
        this.send(e.port, frame);
        return;
      }
    }
    this.flood(from, frame);
  }

  private learn(src: Mac, from: PortState, now: number): void {
    const e = this.fdbTable.get(src);
    if (!e) {
      this.fdbTable.set(src, { port: from, seenNs: now });
      log('%s: learned %s on %s', this.name, formatMac(src), from.port.name);
      return;
    }
    if (e.port !== from) {
      const move: PortMoveEvent = { mac: formatMac(src), from: e.port.port.name, to: from.port.name, timeNs: now };
      log('%s: %s moved from %s to %s', this.name, move.mac, move.from, move.to);
      this.pushLimited(this.moveLog, move);
      e.port = from;
    }
    e.seenNs = now;
  }

  private noteArp(frame: Uint8Array, from: PortState, now: number): void {
    const arp = parseArp(frame.subarray(ETH_HLEN));
    if (!arp.ok || !isGratuitousArp(arp.value)) return;
    const ev: GratuitousArpEvent = {
      mac: formatMac(arp.value.senderMac),
      ip: formatIpv4(arp.value.senderIp),
      port: from.port.name,
      op: arp.value.op === 1 ? 'request' : 'reply',
      timeNs: now,
    };
    log('%s: gratuitous ARP %s is-at %s on %s', this.name, ev.ip, ev.mac, ev.port);
    this.pushLimited(this.garpLog, ev);
    for (const fn of [...this.garpListeners]) fn(ev);
  }

  private pushLimited<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > this.logLimit) list.splice(0, list.length - this.logLimit);
  }

  private flood(from: PortState, frame: Uint8Array): void {
    const targets = [...this.ports.values()].filter((p) => p !== from);
    // Each port owns the bytes it is given: copies for all but the last.
    targets.forEach((p, i) => this.send(p, i === targets.length - 1 ? frame : frame.slice()));
  }

  private send(to: PortState, frame: Uint8Array): void {
    to.counters.txFrames++;
    to.counters.txBytes += frame.length;
    to.port.deliver(frame);
  }
}

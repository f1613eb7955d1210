/*
 * netback, driver layer: one virtual interface (vif<domid>.<handle>) of one
 * frontend, plugged into a bridge as a port.
 *
 * States, and the xenbus state the wiring should publish for each:
 *
 *   waiting    on the bridge, no rings         InitWait
 *   connected  rings mapped, port bound        Connected
 *   failed     the frontend broke the
 *              protocol; `error` says how      Closing (and write `error`)
 *   closed     off the bridge, for good        Closed
 *
 *   waiting --connect()--> connected --disconnect()--> waiting
 *   connected --garbage indices / undelimitable TX chain--> failed
 *   failed --disconnect()--> waiting;   any --close()--> closed
 *
 * A failure releases both rings and the port at once; only this vif
 * stops. A frontend that re-initialises (after Closed, or a restored guest
 * with new rings and a new port) is served again by a new connect(). The
 * lifecycle itself is RingDevice's (backend-core.ts), as for a vbd.
 *
 * Work, as blkback: the event channel only marks the vif (kick), and so
 * does a frame the bridge delivers; the machine then calls poll() between
 * guest entries. A poll serves TX first (guest -> bridge), then RX
 * (bridge -> guest), at most `budget` packets each, and notifies the
 * frontend once if either ring asked for it.
 *
 * TX: each packet is delimited and checked (wire.ts), its fragments copied
 * out of the granted pages into one host buffer, its checksum completed
 * when the guest left it blank (NETTXF_csum_blank), and sent into the
 * bridge. Every slot is answered: OKAY, ERROR (refused, or a grant copy
 * failed), NULL for extra-info slots.
 *
 * RX: frames the bridge delivers wait in a bounded queue (frames and
 * bytes); past the bound, or while not connected, they are dropped and
 * counted. A frame goes out whole once the guest has posted as many
 * buffers as it has pages: each buffer is filled from offset 0, answered
 * with its byte count, NETRXF_more_data on all but the last. A buffer
 * whose grant cannot be written makes every response of that frame
 * NETIF_RSP_ERROR. Frames are not checksum-offloaded on the way in: every
 * frame on the bridge carries full checksums, so flags are 0.
 */
import createDebug from 'debug';
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NET_TX_RING_SIZE } from '../../public/io/netif.js';
import type { BackIndices } from '../../public/io/ring.js';
import { PAGE_SIZE } from '../../public/types.js';
import type { BridgeLink, BridgePort } from '../net/bridge.js';
import { ETHERTYPE_IPV4, parseEthernet } from '../net/ether.js';
import { completeChecksum } from '../net/ip.js';
import { RingDevice, pendingRequests, type DeviceState, type PollWork, type RingConnection, type RingDeviceOptions } from '../backend-core.js';
import { err, ok, type BackendHost, type Outcome } from '../backend-host.js';
import { NETIF_RX_GEOMETRY, NETIF_TX_GEOMETRY, NetBackRing } from './transport.js';
import {
  MAX_FRAME_BYTES, RX_SLOT_BYTES, TX_SLOT_BYTES, decodeRxRequest, encodeRxResponse, encodeTxResponse, parseTxPacket,
  rxFlags, rxSlotsFor, type SlotAnswer, type TxPacket,
} from './wire.js';
import { backendNodes, type VifConnectParams } from './nodes.js';

const log = createDebug('dom0:netback');

/** Packets one poll of one vif may move each way: a ring's worth. */
export const DEFAULT_POLL_BUDGET = NET_TX_RING_SIZE;
/** RX queue bounds (Linux keeps about half a ring of pages queued). */
export const DEFAULT_RX_QUEUE_FRAMES = 256;
export const DEFAULT_RX_QUEUE_BYTES = 128 * PAGE_SIZE;

export type VifState = DeviceState;

/** Counters for xl and the bench; they survive reconnections. */
export interface VifStats {
  /** Packets from the guest sent into the bridge, and their bytes. */
  txPackets: number;
  txBytes: number;
  /** TX requests taken off the ring, extra-info slots included. */
  txSlots: number;
  /** TX packets answered NETIF_RSP_ERROR (refused, or a grant copy failed). */
  txErrors: number;
  /** TX packets whose checksum was completed (NETTXF_csum_blank). */
  txChecksummed: number;
  /** csum_blank packets whose checksum could not be completed: answered OKAY, not sent (as Linux). */
  txChecksumDrops: number;
  /** Frames put in the guest's buffers, their bytes, and the buffers used. */
  rxPackets: number;
  rxBytes: number;
  rxSlots: number;
  /** Frames answered NETIF_RSP_ERROR (a buffer's grant could not be written). */
  rxErrors: number;
  /** Frames dropped: RX queue full (the guest posts too few buffers). */
  rxDropQueueFull: number;
  /** Frames dropped: not connected (or queued when the rings went away). */
  rxDropDisconnected: number;
  /** Frames dropped: larger than the frontend can take (over a page without feature-sg). */
  rxDropTooBig: number;
  /** Event channel notifications sent to the frontend. */
  notifies: number;
  /** Times the rings were connected. */
  connects: number;
}

/** What a vif plugs into: a Bridge fits. */
export interface BridgeAttach {
  attach(port: BridgePort): BridgeLink;
}

export interface VifOptions extends RingDeviceOptions<Vif> {
  /** The vif's handle (the `device/vif/<handle>` directory). */
  readonly devid: number;
  /** The guest's MAC, "aa:bb:cc:dd:ee:ff" (published in `mac`). */
  readonly mac: string;
  readonly host: BackendHost;
  readonly bridge: BridgeAttach;
  readonly rxQueueFrames?: number;
  readonly rxQueueBytes?: number;
}

/** Where the back rings' private indices start, to attach to rings already in use. */
export interface VifRingsAt {
  readonly tx?: BackIndices;
  readonly rx?: BackIndices;
}

interface Connection extends RingConnection {
  readonly tx: NetBackRing;
  readonly rx: NetBackRing;
  readonly params: VifConnectParams;
}

function emptyStats(): VifStats {
  return {
    txPackets: 0, txBytes: 0, txSlots: 0, txErrors: 0, txChecksummed: 0, txChecksumDrops: 0,
    rxPackets: 0, rxBytes: 0, rxSlots: 0, rxErrors: 0, rxDropQueueFull: 0, rxDropDisconnected: 0, rxDropTooBig: 0,
    notifies: 0, connects: 0,
  };
}

/** Fill in the checksum of an Ethernet frame carrying IPv4 UDP or ICMP, in place. */
function completeFrameChecksum(frame: Uint8Array): Outcome<void> {
  const eth = parseEthernet(frame);
  if (!eth.ok) return err(eth.detail);
  if (eth.value.ethertype !== ETHERTYPE_IPV4) return err(`ethertype 0x${eth.value.ethertype.toString(16)}: only IPv4 checksums are completed`);
  const r = completeChecksum(eth.value.payload);
  return r.ok ? ok(undefined) : err(r.detail);
}

export class Vif extends RingDevice<Connection, VifStats> implements BridgePort {
  readonly mac: string;
  protected readonly opts: VifOptions;
  protected readonly counters = emptyStats();
  private readonly link: BridgeLink;
  private readonly rxQueueFrames: number;
  private readonly rxQueueBytes: number;
  private readonly rxQueue: Uint8Array[] = [];
  private rxQueued = 0;

  constructor(opts: VifOptions) {
    super({
      frontendDomid: opts.frontendDomid, devid: opts.devid, name: `vif${opts.frontendDomid}.${opts.devid}`, log,
      pollBudget: DEFAULT_POLL_BUDGET,
    });
    this.opts = opts;
    this.mac = opts.mac;
    this.rxQueueFrames = opts.rxQueueFrames ?? DEFAULT_RX_QUEUE_FRAMES;
    this.rxQueueBytes = opts.rxQueueBytes ?? DEFAULT_RX_QUEUE_BYTES;
    this.link = opts.bridge.attach(this);
  }

  /** Frames waiting for RX buffers. */
  get rxQueueLength(): number {
    return this.rxQueue.length;
  }

  /** The rings' private indices while connected (tests, debugging). */
  get ringIndices(): { tx: BackIndices; rx: BackIndices } | undefined {
    const c = this.conn;
    return c === undefined ? undefined : { tx: c.tx.indices(), rx: c.rx.indices() };
  }

  /** The backend nodes to write before InitWait: mac, handle, features. */
  backendNodes(): Readonly<Record<string, string>> {
    return backendNodes({ mac: this.mac, handle: this.devid });
  }

  /**
   * Map both rings and bind the port. Refused (the vif fails, with the
   * reason) when the frontend asks for what is not offered, or a grant or
   * the port cannot be had. Allowed from 'waiting' and 'failed'.
   */
  connect(p: VifConnectParams, at: VifRingsAt = {}): Outcome<void> {
    if (this.state === 'closed') return err(`${this.name} is closed`);
    if (this.state === 'connected') return err(`${this.name} is already connected`);
    if (!p.requestRxCopy) return this.refuseConnect('request-rx-copy is not 1: this backend only copies into RX buffers');
    if (!p.rxNotify) return this.refuseConnect('feature-rx-notify is not 1: the frontend must notify when it posts RX buffers');
    const rings = [{ node: 'tx-ring-ref', ref: p.txRingRef }, { node: 'rx-ring-ref', ref: p.rxRingRef }] as const;
    const c = this.attach(rings, p.eventChannel, (pages, channel) => {
      const [txPage, rxPage] = pages;
      return {
        tx: new NetBackRing(txPage.mem, txPage.base, NETIF_TX_GEOMETRY, TX_SLOT_BYTES, at.tx),
        rx: new NetBackRing(rxPage.mem, rxPage.base, NETIF_RX_GEOMETRY, RX_SLOT_BYTES, at.rx),
        pages, channel, params: p,
      };
    });
    if (!c.ok) return c;
    log.enabled && log('%s connected: tx-ring-ref %d, rx-ring-ref %d, port %d%s', this.name, p.txRingRef, p.rxRingRef,
      p.eventChannel, p.sg === true ? ', sg' : '');
    // Requests may already be waiting (a frontend that pushed before we came).
    this.kick();
    return ok(undefined);
  }

  /** BridgePort: a frame for the guest. Queued (or dropped and counted); never touches the rings here. */
  deliver(frame: Uint8Array): void {
    const conn = this.conn;
    if (this.state !== 'connected' || conn === undefined) {
      this.counters.rxDropDisconnected++;
      return;
    }
    const limit = conn.params.sg === true ? MAX_FRAME_BYTES : PAGE_SIZE;
    if (frame.length > limit) {
      this.counters.rxDropTooBig++;
      log.enabled && log('%s: %d-byte frame dropped, the frontend takes %d at most', this.name, frame.length, limit);
      return;
    }
    if (this.rxQueue.length >= this.rxQueueFrames || this.rxQueued + frame.length > this.rxQueueBytes) {
      this.counters.rxDropQueueFull++;
      return;
    }
    this.rxQueue.push(frame);
    this.rxQueued += frame.length;
    this.kick();
  }

  /**
   * Serve both rings: up to `budget` TX packets, then up to `budget` RX
   * frames; ask for one notification if either ring wants it. Garbage
   * fails this vif (and only it).
   */
  protected serve(conn: Connection, budget: number, w: PollWork): void {
    this.pollTx(conn, budget, w);
    if (w.broken === undefined && this.conn === conn) this.pollRx(conn, budget, w);
  }

  protected closeDevice(): void {
    this.link.detach();
  }

  /** The RX queue was for the rings that are going away. */
  protected override dropConnectionState(): void {
    this.counters.rxDropDisconnected += this.rxQueue.length;
    this.rxQueue.length = 0;
    this.rxQueued = 0;
  }

  // --- TX: guest -> bridge -----------------------------------------------------

  private pollTx(conn: Connection, budget: number, w: PollWork): void {
    const ring = conn.tx;
    let packets = 0;
    for (;;) {
      const pending = pendingRequests(ring, w);
      if (!pending.ok) {
        w.broken = `TX ring indices are garbage: ${pending.error}`;
        break;
      }
      if (pending.value === 0) return;
      if (packets >= budget) {
        w.more = true;
        break;
      }
      const parsed = parseTxPacket(pending.value, (i) => ring.peek(i));
      if (parsed.kind === 'fatal') {
        w.broken = `TX: ${parsed.reason}`;
        break;
      }
      if (parsed.kind === 'incomplete') {
        // The rest of the chain is not published yet: be told when it is.
        const again = ring.waitBeyond(parsed.seen);
        if (!again.ok) {
          w.broken = `TX ring indices are garbage: ${again.error}`;
          break;
        }
        if (again.value > parsed.seen) continue;
        break;
      }
      const answers = parsed.kind === 'drop' ? parsed.answers : parsed.packet.answers;
      ring.consume(answers.length);
      this.counters.txSlots += answers.length;
      if (parsed.kind === 'drop') {
        log.enabled && log('%s: TX refused: %s', this.name, parsed.reason);
        this.answerTx(ring, parsed.answers, NETIF_RSP_ERROR);
        this.counters.txErrors++;
      } else {
        this.sendPacket(ring, parsed.packet);
      }
      packets++;
      w.done++;
      if (this.conn !== conn) return;
    }
    if (ring.push()) w.notify = true;
  }

  private answerTx(ring: NetBackRing, answers: readonly SlotAnswer[], status: number): void {
    for (const a of answers) encodeTxResponse(ring.mem, ring.respondAt(), { id: a.id, status: a.extra ? NETIF_RSP_NULL : status });
  }

  /** Copy the packet out, answer its slots, and send it into the bridge. */
  private sendPacket(ring: NetBackRing, p: TxPacket): void {
    const frame = new Uint8Array(p.size);
    let off = 0;
    for (const [k, f] of p.fragments.entries()) {
      if (f.size === 0) continue;
      const got = this.opts.host.grants.copyFromGrant(this.frontendDomid, f.gref, f.offset, f.size);
      if (!got.ok || got.value.length !== f.size) {
        const why = got.ok ? `${got.value.length} bytes instead of ${f.size}` : got.error;
        log('%s: TX packet id %d: fragment %d gref %d: %s', this.name, p.answers[0]?.id, k, f.gref, why);
        this.answerTx(ring, p.answers, NETIF_RSP_ERROR);
        this.counters.txErrors++;
        return;
      }
      frame.set(got.value, off);
      off += f.size;
    }
    this.answerTx(ring, p.answers, NETIF_RSP_OKAY);
    if ((p.flags & NETTXF_csum_blank) !== 0) {
      const done = completeFrameChecksum(frame);
      if (!done.ok) {
        log.enabled && log('%s: TX packet id %d with csum_blank dropped: %s', this.name, p.answers[0]?.id, done.error);
        this.counters.txChecksumDrops++;
        return;
      }
      this.counters.txChecksummed++;
    }
    this.counters.txPackets++;
    this.counters.txBytes += frame.length;
    this.link.transmit(frame);
  }

  // --- RX: bridge -> guest --------------------------------------------------------------

  private pollRx(conn: Connection, budget: number, w: PollWork): void {
    const ring = conn.rx;
    let frames = 0;
    while (this.rxQueue.length > 0) {
      if (frames >= budget) {
        w.more = true;
        break;
      }
      const frame = this.rxQueue[0]!;
      const n = rxSlotsFor(frame.length);
      let pending = ring.pending();
      // Too few buffers: be told when the guest posts more.
      if (pending.ok && pending.value < n) pending = ring.waitBeyond(pending.value);
      if (!pending.ok) {
        w.broken = `RX ring indices are garbage: ${pending.error}`;
        break;
      }
      if (pending.value < n) break;
      this.rxQueue.shift();
      this.rxQueued -= frame.length;
      this.fillBuffers(ring, frame, n);
      frames++;
      w.done++;
    }
    if (ring.push()) w.notify = true;
  }

  /** Take `n` posted buffers, copy the frame in, answer each. */
  private fillBuffers(ring: NetBackRing, frame: Uint8Array, n: number): void {
    const reqs = Array.from({ length: n }, (_, k) => decodeRxRequest(ring.peek(k)));
    ring.consume(n);
    let failed = false;
    const lens: number[] = [];
    for (const [k, r] of reqs.entries()) {
      const chunk = frame.subarray(k * PAGE_SIZE, Math.min(frame.length, (k + 1) * PAGE_SIZE));
      lens.push(chunk.length);
      if (failed) continue;
      const put = this.opts.host.grants.copyToGrant(this.frontendDomid, r.gref, 0, chunk);
      if (!put.ok) {
        log('%s: RX buffer id %d gref %d: %s', this.name, r.id, r.gref, put.error);
        failed = true;
      }
    }
    for (const [k, r] of reqs.entries()) {
      encodeRxResponse(ring.mem, ring.respondAt(), {
        id: r.id, offset: 0, flags: rxFlags(k, n), status: failed ? NETIF_RSP_ERROR : lens[k]!,
      });
    }
    this.counters.rxSlots += n;
    if (failed) {
      this.counters.rxErrors++;
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += frame.length;
  }
}

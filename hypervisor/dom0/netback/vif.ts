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
 * with new rings and a new port) is served again by a new connect().
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
import {
  XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitWait, type XenbusState,
} from '../../public/io/xenbus.js';
import type { BackIndices } from '../../public/io/ring.js';
import { PAGE_SIZE, evtchnPort, grantRef, type DomId } from '../../public/types.js';
import type { BridgeLink, BridgePort } from '../net/bridge.js';
import { ETHERTYPE_IPV4, parseEthernet } from '../net/ether.js';
import { completeChecksum } from '../net/ip.js';
import { err, ok, type BoundChannel, type MappedRing, type Outcome } from './host.js';
import { NETIF_RX_GEOMETRY, NETIF_TX_GEOMETRY, NetBackRing, type NetbackHost } from './transport.js';
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

export type VifState = 'waiting' | 'connected' | 'failed' | 'closed';

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

export interface VifOptions {
  readonly frontendDomid: DomId;
  /** The vif's handle (the `device/vif/<handle>` directory). */
  readonly devid: number;
  /** The guest's MAC, "aa:bb:cc:dd:ee:ff" (published in `mac`). */
  readonly mac: string;
  readonly host: NetbackHost;
  readonly bridge: BridgeAttach;
  readonly rxQueueFrames?: number;
  readonly rxQueueBytes?: number;
  /** The vif changed state by itself (failed): publish it. */
  readonly onStateChange?: (vif: Vif) => void;
  /** The vif has work: arrange for poll() to run soon (between guest entries). */
  readonly onWork?: (vif: Vif) => void;
}

/** Where the back rings' private indices start, to attach to rings already in use. */
export interface VifRingsAt {
  readonly tx?: BackIndices;
  readonly rx?: BackIndices;
}

interface Connection {
  readonly tx: NetBackRing;
  readonly rx: NetBackRing;
  readonly pages: readonly MappedRing[];
  readonly channel: BoundChannel;
  readonly params: VifConnectParams;
}

/** What one poll did, filled by the TX and RX halves. */
interface PollWork {
  done: number;
  notify: boolean;
  more: boolean;
  broken: string | undefined;
}

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;

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

export class Vif implements BridgePort {
  readonly name: string;
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly mac: string;
  private readonly host: NetbackHost;
  private readonly opts: VifOptions;
  private readonly link: BridgeLink;
  private readonly rxQueueFrames: number;
  private readonly rxQueueBytes: number;
  private stateValue: VifState = 'waiting';
  private errorValue: string | undefined;
  private generationValue = 0;
  private conn: Connection | undefined;
  private kicked = false;
  private readonly rxQueue: Uint8Array[] = [];
  private rxQueued = 0;
  private readonly counters = emptyStats();

  constructor(opts: VifOptions) {
    this.opts = opts;
    this.frontendDomid = opts.frontendDomid;
    this.devid = opts.devid;
    this.mac = opts.mac;
    this.host = opts.host;
    this.name = `vif${opts.frontendDomid}.${opts.devid}`;
    this.rxQueueFrames = opts.rxQueueFrames ?? DEFAULT_RX_QUEUE_FRAMES;
    this.rxQueueBytes = opts.rxQueueBytes ?? DEFAULT_RX_QUEUE_BYTES;
    this.link = opts.bridge.attach(this);
  }

  get state(): VifState {
    return this.stateValue;
  }

  /** Why the vif failed (or the last connect was refused). */
  get error(): string | undefined {
    return this.errorValue;
  }

  /** Bumped by every connect: events of an older connection are ignored. */
  get generation(): number {
    return this.generationValue;
  }

  get stats(): Readonly<VifStats> {
    return { ...this.counters };
  }

  /** Frames waiting for RX buffers. */
  get rxQueueLength(): number {
    return this.rxQueue.length;
  }

  get hasWork(): boolean {
    return this.stateValue === 'connected' && this.kicked;
  }

  /** The rings' private indices while connected (tests, debugging). */
  get ringIndices(): { tx: BackIndices; rx: BackIndices } | undefined {
    const c = this.conn;
    return c === undefined ? undefined : { tx: c.tx.indices(), rx: c.rx.indices() };
  }

  xenbusState(): XenbusState {
    switch (this.stateValue) {
      case 'waiting': return XenbusStateInitWait;
      case 'connected': return XenbusStateConnected;
      case 'failed': return XenbusStateClosing;
      case 'closed': return XenbusStateClosed;
    }
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
    if (this.stateValue === 'closed') return err(`${this.name} is closed`);
    if (this.stateValue === 'connected') return err(`${this.name} is already connected`);
    if (!p.requestRxCopy) return this.refuseConnect('request-rx-copy is not 1: this backend only copies into RX buffers');
    if (!p.rxNotify) return this.refuseConnect('feature-rx-notify is not 1: the frontend must notify when it posts RX buffers');
    if (!isU32(p.txRingRef)) return this.refuseConnect(`tx-ring-ref ${p.txRingRef} is not a grant reference`);
    if (!isU32(p.rxRingRef)) return this.refuseConnect(`rx-ring-ref ${p.rxRingRef} is not a grant reference`);
    if (!isU32(p.eventChannel)) return this.refuseConnect(`event-channel ${p.eventChannel} is not a port`);

    const txPage = this.host.mapRing(this.frontendDomid, grantRef(p.txRingRef));
    if (!txPage.ok) return this.refuseConnect(`cannot map tx-ring-ref ${p.txRingRef}: ${txPage.error}`);
    const rxPage = this.host.mapRing(this.frontendDomid, grantRef(p.rxRingRef));
    if (!rxPage.ok) {
      txPage.value.unmap();
      return this.refuseConnect(`cannot map rx-ring-ref ${p.rxRingRef}: ${rxPage.error}`);
    }
    const gen = this.generationValue + 1;
    const channel = this.host.bindEventChannel(this.frontendDomid, evtchnPort(p.eventChannel), () => {
      if (gen === this.generationValue) this.kick();
    });
    if (!channel.ok) {
      rxPage.value.unmap();
      txPage.value.unmap();
      return this.refuseConnect(`cannot bind event-channel ${p.eventChannel}: ${channel.error}`);
    }
    this.generationValue = gen;
    let tx: NetBackRing;
    let rx: NetBackRing;
    try {
      tx = new NetBackRing(txPage.value.mem, txPage.value.base, NETIF_TX_GEOMETRY, TX_SLOT_BYTES, at.tx);
      rx = new NetBackRing(rxPage.value.mem, rxPage.value.base, NETIF_RX_GEOMETRY, RX_SLOT_BYTES, at.rx);
    } catch (e) {
      // Only `at` can be inconsistent here, and it is the caller's value.
      channel.value.close();
      rxPage.value.unmap();
      txPage.value.unmap();
      throw e;
    }
    this.conn = { tx, rx, pages: [txPage.value, rxPage.value], channel: channel.value, params: p };
    this.stateValue = 'connected';
    this.errorValue = undefined;
    this.counters.connects++;
    log.enabled && log('%s connected: tx-ring-ref %d, rx-ring-ref %d, port %d%s', this.name, p.txRingRef, p.rxRingRef,
      p.eventChannel, p.sg === true ? ', sg' : '');
    // Requests may already be waiting (a frontend that pushed before we came).
    this.kick();
    return ok(undefined);
  }

  /** The frontend notified us, or a frame arrived: mark work, nothing else. */
  kick(): void {
    if (this.stateValue !== 'connected' || this.kicked) return;
    this.kicked = true;
    this.opts.onWork?.(this);
  }

  /** BridgePort: a frame for the guest. Queued (or dropped and counted); never touches the rings here. */
  deliver(frame: Uint8Array): void {
    const conn = this.conn;
    if (this.stateValue !== 'connected' || conn === undefined) {
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
   * frames; publish, notify the frontend once if it asked. Returns the
   * packets moved. Garbage fails this vif (and only it).
   */
  poll(budget: number = DEFAULT_POLL_BUDGET): number {
    this.kicked = false;
    const conn = this.conn;
    if (this.stateValue !== 'connected' || conn === undefined) return 0;
    const w: PollWork = { done: 0, notify: false, more: false, broken: undefined };
    this.pollTx(conn, budget, w);
    if (w.broken === undefined && this.conn === conn) this.pollRx(conn, budget, w);
    if (w.notify && this.conn === conn) {
      this.counters.notifies++;
      conn.channel.notify();
    }
    if (w.broken !== undefined) this.fail(w.broken);
    else if (w.more) this.kick();
    return w.done;
  }

  /** Let go of the rings and the port; back to waiting. Idempotent. */
  disconnect(): void {
    this.release();
    if (this.stateValue === 'connected' || this.stateValue === 'failed') {
      log.enabled && log('%s disconnected', this.name);
      this.stateValue = 'waiting';
    }
  }

  /** Disconnect and leave the bridge, for good. */
  close(): void {
    this.release();
    this.link.detach();
    this.stateValue = 'closed';
  }

  // --- TX: guest -> bridge -----------------------------------------------------

  private pollTx(conn: Connection, budget: number, w: PollWork): void {
    const ring = conn.tx;
    let packets = 0;
    for (;;) {
      let pending = ring.pending();
      if (pending.ok && pending.value === 0) {
        if (ring.push()) w.notify = true;
        pending = ring.finalCheck();
        if (pending.ok && pending.value === 0) return;
      }
      if (!pending.ok) {
        w.broken = `TX ring indices are garbage: ${pending.error}`;
        break;
      }
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
      const got = this.host.grants.copyFromGrant(this.frontendDomid, f.gref, f.offset, f.size);
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
      const put = this.host.grants.copyToGrant(this.frontendDomid, r.gref, 0, chunk);
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

  // --- internals -----------------------------------------------------------------

  private refuseConnect(reason: string): Outcome<void> {
    this.fail(`connect refused: ${reason}`);
    return err(reason);
  }

  private fail(reason: string): void {
    this.release();
    this.stateValue = 'failed';
    this.errorValue = reason;
    log('%s failed: %s', this.name, reason);
    this.opts.onStateChange?.(this);
  }

  private release(): void {
    const c = this.conn;
    this.conn = undefined;
    this.kicked = false;
    this.counters.rxDropDisconnected += this.rxQueue.length;
    this.rxQueue.length = 0;
    this.rxQueued = 0;
    if (c === undefined) return;
    c.channel.close();
    for (const p of c.pages) p.unmap();
  }
}

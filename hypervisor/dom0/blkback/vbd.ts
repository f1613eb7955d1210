/*
 * blkback, driver layer: one virtual block device (vbd) of one frontend.
 *
 * States, and the xenbus state the wiring should publish for each:
 *
 *   waiting    disk open, no ring          InitWait
 *   connected  ring mapped, port bound     Connected
 *   failed     the frontend broke the
 *              protocol; `error` says how  Closing (and write `error`)
 *   closed     disk closed, for good       Closed
 *
 *   waiting --connect()--> connected --disconnect()--> waiting
 *   connected --garbage ring indices--> failed --disconnect()--> waiting
 *   any --close()--> closed
 *
 * A failure releases the ring and the port at once; only this vbd stops.
 * A frontend that re-initialises after Closed is served again by a new
 * connect() (as after a restore: new ring, new port, same disk).
 *
 * Work: the event channel only marks the vbd (kick, cheap, no I/O); the
 * machine then calls poll() between guest entries, which takes requests
 * in ring order and does each one to completion before the next (disk.ts
 * says why synchronously). A poll does at most `budget` requests, so one
 * busy vbd cannot starve the others; if work is left it asks to be polled
 * again.
 *
 * Ordering, flush and suspend/resume (ARCHITECTURE §6.1):
 *
 *  * Requests execute strictly in ring order and responses are produced in
 *    the same order, so two writes to overlapping sectors land in the order
 *    the frontend queued them, and a read queued after a write sees it.
 *  * FLUSH_DISKCACHE runs after every earlier request has finished, so the
 *    fsync covers all earlier writes; it is answered only once fsync
 *    returned. WRITE_BARRIER = the write, then fsync, then the answer.
 *  * At no moment outside poll() is a request half done. When the guest
 *    suspends, each request it queued is either still in the ring, never
 *    touched, or finished with its response written (the frontend may not
 *    have seen that response yet). After restore the frontend replays
 *    every request it holds no response for, on the new ring, in its
 *    original order. Replaying a finished write rewrites the same data;
 *    replaying a finished read reads what the disk holds now. Both equal
 *    the first run as long as no other request that overlaps them and
 *    writes was in flight at the same time, which is the frontend's rule
 *    (§6.1). The backend's own part of the bargain is never to reorder:
 *    the old ring is dead once disconnect() returns (nothing of it is
 *    processed afterwards), and the new ring is served in its own order.
 */
import createDebug from 'debug';
import { BLKIF_RING_SIZE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, XEN_IO_PROTO_ABI_NATIVE } from '../../public/io/blkif.js';
import {
  XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitWait, type XenbusState,
} from '../../public/io/xenbus.js';
import type { BackIndices } from '../../public/io/ring.js';
import { evtchnPort, grantRef, type DomId } from '../../public/types.js';
import { SECTOR_SIZE, type DiskImage } from './disk.js';
import { BlkRing, err, ok, type BlkbackHost, type BoundChannel, type MappedRing, type Outcome } from './transport.js';
import { backendConnectNodes, decodeRequest, type BlkRequest, type BlkResponse, type TransferRequest } from './wire.js';

const log = createDebug('dom0:blkback');

/** Requests one poll of one vbd may do: a ring's worth. */
export const DEFAULT_POLL_BUDGET = BLKIF_RING_SIZE;

export type VbdState = 'waiting' | 'connected' | 'failed' | 'closed';

/** Counters for xl and the bench; they survive reconnections. */
export interface VbdStats {
  /** Requests taken off the ring (valid or not). */
  requests: number;
  reads: number;
  /** WRITE and WRITE_BARRIER. */
  writes: number;
  /** FLUSH_DISKCACHE and the fsync of each WRITE_BARRIER. */
  flushes: number;
  sectorsRead: number;
  sectorsWritten: number;
  /** Responses other than BLKIF_RSP_OKAY (refused, unsupported, failed I/O). */
  errors: number;
  /** Event channel notifications sent to the frontend. */
  notifies: number;
  /** Times the ring was connected. */
  connects: number;
}

export interface VbdOptions {
  readonly frontendDomid: DomId;
  /** The virtual device number (the `device/vbd/<devid>` directory). */
  readonly devid: number;
  readonly disk: DiskImage;
  readonly host: BlkbackHost;
  /** The vbd changed state by itself (failed): publish it. */
  readonly onStateChange?: (vbd: Vbd) => void;
  /** The vbd has work: arrange for poll() to run soon (between guest entries). */
  readonly onWork?: (vbd: Vbd) => void;
}

/** What the frontend published before Initialised (already parsed from xenstore). */
export interface ConnectParams {
  /** `ring-ref` */
  readonly ringRef: number;
  /** `event-channel`: the frontend's port. */
  readonly eventChannel: number;
  /** `protocol`; absent means the native ABI. */
  readonly protocol?: string;
  /**
   * Where the back ring's private indices start. Absent for a fresh ring
   * page (BACK_RING_INIT, both 0); given to attach to a ring already in use
   * (BACK_RING_ATTACH).
   */
  readonly at?: BackIndices;
}

interface Connection {
  readonly ring: BlkRing;
  readonly page: MappedRing;
  readonly channel: BoundChannel;
  readonly ringRef: number;
  readonly port: number;
}

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;

export class Vbd {
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly disk: DiskImage;
  private readonly host: BlkbackHost;
  private readonly opts: VbdOptions;
  private stateValue: VbdState = 'waiting';
  private errorValue: string | undefined;
  private conn: Connection | undefined;
  private kicked = false;
  /** Bumped on every connect, so an event from an earlier binding is ignored. */
  private generationValue = 0;
  private readonly counters: VbdStats = {
    requests: 0, reads: 0, writes: 0, flushes: 0, sectorsRead: 0, sectorsWritten: 0, errors: 0, notifies: 0, connects: 0,
  };

  constructor(opts: VbdOptions) {
    this.opts = opts;
    this.frontendDomid = opts.frontendDomid;
    this.devid = opts.devid;
    this.disk = opts.disk;
    this.host = opts.host;
  }

  get name(): string {
    return `vbd d${this.frontendDomid}/${this.devid}`;
  }

  get state(): VbdState {
    return this.stateValue;
  }

  /** Why the vbd failed (or the last connect was refused). */
  get error(): string | undefined {
    return this.errorValue;
  }

  get generation(): number {
    return this.generationValue;
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<VbdStats> {
    return { ...this.counters };
  }

  /** Connected and kicked: poll() has something to look at. */
  get hasWork(): boolean {
    return this.stateValue === 'connected' && this.kicked;
  }

  /** The ring's private indices while connected (for tests and debugging). */
  get ringIndices(): BackIndices | undefined {
    return this.conn?.ring.indices();
  }

  /** The xenbus state to publish for this vbd's state. */
  xenbusState(): XenbusState {
    switch (this.stateValue) {
      case 'waiting': return XenbusStateInitWait;
      case 'connected': return XenbusStateConnected;
      case 'failed': return XenbusStateClosing;
      case 'closed': return XenbusStateClosed;
    }
  }

  /** The backend nodes to write before Connected: sectors, sector-size, info, features. */
  connectNodes(): Readonly<Record<string, string>> {
    return backendConnectNodes(this.disk);
  }

  /**
   * Map the frontend's ring and bind its port. Refused (the vbd fails,
   * with the reason) if the parameters make no sense or the grant or port
   * cannot be had. Allowed from 'waiting' and 'failed'.
   */
  connect(p: ConnectParams): Outcome<void> {
    if (this.stateValue === 'closed') return err(`${this.name} is closed`);
    if (this.stateValue === 'connected') return err(`${this.name} is already connected (ring-ref ${this.conn?.ringRef})`);
    if (p.protocol !== undefined && p.protocol !== XEN_IO_PROTO_ABI_NATIVE)
      return this.refuseConnect(`protocol "${p.protocol}" is not served (only ${XEN_IO_PROTO_ABI_NATIVE})`);
    if (!isU32(p.ringRef)) return this.refuseConnect(`ring-ref ${p.ringRef} is not a grant reference`);
    if (!isU32(p.eventChannel)) return this.refuseConnect(`event-channel ${p.eventChannel} is not a port`);

    const page = this.host.mapRing(this.frontendDomid, grantRef(p.ringRef));
    if (!page.ok) return this.refuseConnect(`cannot map ring-ref ${p.ringRef}: ${page.error}`);
    const gen = this.generationValue + 1;
    const channel = this.host.bindEventChannel(this.frontendDomid, evtchnPort(p.eventChannel), () => {
      if (gen === this.generationValue) this.kick();
    });
    if (!channel.ok) {
      page.value.unmap();
      return this.refuseConnect(`cannot bind event-channel ${p.eventChannel}: ${channel.error}`);
    }
    this.generationValue = gen;
    let ring: BlkRing;
    try {
      ring = new BlkRing(page.value.mem, page.value.base, p.at);
    } catch (e) {
      // Only `at` can be inconsistent here, and it is the caller's value.
      channel.value.close();
      page.value.unmap();
      throw e;
    }
    this.conn = { ring, page: page.value, channel: channel.value, ringRef: p.ringRef, port: p.eventChannel };
    this.stateValue = 'connected';
    this.errorValue = undefined;
    this.counters.connects++;
    log.enabled && log('%s connected: ring-ref %d, port %d, %d sectors%s', this.name, p.ringRef, p.eventChannel,
      this.disk.sectors, this.disk.readOnly ? ' (read-only)' : '');
    // Requests may already be waiting (a frontend replaying after resume).
    this.kick();
    return ok(undefined);
  }

  /** The frontend notified us: mark work, no I/O here. */
  kick(): void {
    if (this.stateValue !== 'connected' || this.kicked) return;
    this.kicked = true;
    this.opts.onWork?.(this);
  }

  /**
   * Serve the ring: take up to `budget` requests in order, answer each,
   * publish, notify the frontend if it asked. Returns the number of
   * requests taken. Garbage indices fail this vbd (and only it).
   */
  poll(budget: number = DEFAULT_POLL_BUDGET): number {
    this.kicked = false;
    const conn = this.conn;
    if (this.stateValue !== 'connected' || conn === undefined) return 0;
    const { ring } = conn;
    let done = 0;
    let notify = false;
    let more = false;
    let broken: string | undefined;
    for (;;) {
      let pending = ring.pending();
      if (pending.ok && pending.value === 0) {
        if (ring.push()) notify = true;
        pending = ring.finalCheck();
        if (pending.ok && pending.value === 0) break;
      }
      if (!pending.ok) {
        broken = `ring indices are garbage: ${pending.error}`;
        break;
      }
      if (done >= budget) {
        more = true;
        break;
      }
      const n = Math.min(pending.value, budget - done);
      for (let k = 0; k < n; k++) ring.respond(this.execute(ring.take()));
      done += n;
      if (ring.push()) notify = true;
    }
    if (notify) {
      this.counters.notifies++;
      conn.channel.notify();
    }
    if (broken !== undefined) this.fail(broken);
    else if (more) this.kick();
    return done;
  }

  /** Let go of the ring and the port; back to waiting. Idempotent. */
  disconnect(): void {
    this.release();
    if (this.stateValue === 'connected' || this.stateValue === 'failed') {
      log.enabled && log('%s disconnected', this.name);
      this.stateValue = 'waiting';
    }
  }

  /** Disconnect and close the disk, for good. */
  close(): void {
    this.release();
    this.disk.close();
    this.stateValue = 'closed';
  }

  // --- internals -----------------------------------------------------------

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
    if (c === undefined) return;
    c.channel.close();
    c.page.unmap();
  }

  /** One request, to completion: its response. */
  private execute(slot: Uint8Array): BlkResponse {
    this.counters.requests++;
    const d = decodeRequest(slot, this.disk);
    if (!d.ok) {
      const r = d.refusal;
      log.enabled && log('%s refused id %s: %s', this.name, r.id, r.reason);
      return this.answer(r.id, r.operation, r.status);
    }
    const status = this.run(d.request);
    return this.answer(d.request.id, d.request.operation, status);
  }

  private answer(id: bigint, operation: number, status: number): BlkResponse {
    if (status !== BLKIF_RSP_OKAY) this.counters.errors++;
    return { id, operation, status };
  }

  private run(req: BlkRequest): number {
    switch (req.kind) {
      case 'flush':
        return this.flush(req.id);
      case 'read':
        return this.read(req);
      case 'write':
        return this.write(req);
    }
  }

  private flush(id: bigint): number {
    this.counters.flushes++;
    const r = this.disk.flush();
    if (!r.ok) {
      log('%s flush id %s failed: %s', this.name, id, r.error.message);
      return BLKIF_RSP_ERROR;
    }
    return BLKIF_RSP_OKAY;
  }

  private read(req: TransferRequest): number {
    this.counters.reads++;
    const data = this.disk.read(req.sector, req.nrSectors);
    if (!data.ok) {
      log('%s read id %s failed: %s', this.name, req.id, data.error.message);
      return BLKIF_RSP_ERROR;
    }
    let off = 0;
    for (const [i, s] of req.segments.entries()) {
      const len = (s.lastSect - s.firstSect + 1) * SECTOR_SIZE;
      const put = this.host.grants.copyToGrant(this.frontendDomid, s.gref, s.firstSect * SECTOR_SIZE, data.value.subarray(off, off + len));
      if (!put.ok) {
        log('%s read id %s: segment %d gref %d: %s', this.name, req.id, i, s.gref, put.error);
        return BLKIF_RSP_ERROR;
      }
      off += len;
    }
    this.counters.sectorsRead += req.nrSectors;
    return BLKIF_RSP_OKAY;
  }

  private write(req: TransferRequest): number {
    this.counters.writes++;
    // Gather every segment first: a grant that cannot be read fails the
    // request before any byte reaches the disk.
    const buf = new Uint8Array(req.nrSectors * SECTOR_SIZE);
    let off = 0;
    for (const [i, s] of req.segments.entries()) {
      const len = (s.lastSect - s.firstSect + 1) * SECTOR_SIZE;
      const got = this.host.grants.copyFromGrant(this.frontendDomid, s.gref, s.firstSect * SECTOR_SIZE, len);
      if (!got.ok || got.value.length !== len) {
        const why = got.ok ? `${got.value.length} bytes instead of ${len}` : got.error;
        log('%s write id %s: segment %d gref %d: %s', this.name, req.id, i, s.gref, why);
        return BLKIF_RSP_ERROR;
      }
      buf.set(got.value, off);
      off += len;
    }
    const w = this.disk.write(req.sector, buf);
    if (!w.ok) {
      log('%s write id %s failed: %s', this.name, req.id, w.error.message);
      return BLKIF_RSP_ERROR;
    }
    this.counters.sectorsWritten += req.nrSectors;
    if (req.barrier) return this.flush(req.id);
    return BLKIF_RSP_OKAY;
  }
}

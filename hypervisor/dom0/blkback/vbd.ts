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
 * connect() (as after a restore: new ring, new port, same disk). The
 * lifecycle itself is RingDevice's (backend-core.ts), as for a vif.
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
import type { BackIndices } from '../../public/io/ring.js';
import { RingDevice, pendingRequests, type DeviceState, type PollWork, type RingConnection, type RingDeviceOptions } from '../backend-core.js';
import { SECTOR_SIZE, type DiskImage } from './disk.js';
import { err, ok, type BackendHost, type Outcome } from '../backend-host.js';
import { BlkRing } from './transport.js';
import { backendConnectNodes, decodeRequest, type BlkRequest, type BlkResponse, type TransferRequest } from './wire.js';

const log = createDebug('dom0:blkback');

/** Requests one poll of one vbd may do: a ring's worth. */
export const DEFAULT_POLL_BUDGET = BLKIF_RING_SIZE;

export type VbdState = DeviceState;

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

export interface VbdOptions extends RingDeviceOptions<Vbd> {
  /** The virtual device number (the `device/vbd/<devid>` directory). */
  readonly devid: number;
  readonly disk: DiskImage;
  readonly host: BackendHost;
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

interface Connection extends RingConnection {
  readonly ring: BlkRing;
  readonly ringRef: number;
}

export class Vbd extends RingDevice<Connection, VbdStats> {
  readonly disk: DiskImage;
  protected readonly opts: VbdOptions;
  protected readonly counters: VbdStats = {
    requests: 0, reads: 0, writes: 0, flushes: 0, sectorsRead: 0, sectorsWritten: 0, errors: 0, notifies: 0, connects: 0,
  };

  constructor(opts: VbdOptions) {
    super({
      frontendDomid: opts.frontendDomid, devid: opts.devid, name: `vbd d${opts.frontendDomid}/${opts.devid}`, log,
      pollBudget: DEFAULT_POLL_BUDGET,
    });
    this.opts = opts;
    this.disk = opts.disk;
  }

  /** The ring's private indices while connected (for tests and debugging). */
  get ringIndices(): BackIndices | undefined {
    return this.conn?.ring.indices();
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
    if (this.state === 'closed') return err(`${this.name} is closed`);
    if (this.state === 'connected') return err(`${this.name} is already connected (ring-ref ${this.conn?.ringRef})`);
    if (p.protocol !== undefined && p.protocol !== XEN_IO_PROTO_ABI_NATIVE)
      return this.refuseConnect(`protocol "${p.protocol}" is not served (only ${XEN_IO_PROTO_ABI_NATIVE})`);
    const c = this.attach([{ node: 'ring-ref', ref: p.ringRef }], p.eventChannel, (pages, channel) => ({
      ring: new BlkRing(pages[0].mem, pages[0].base, p.at), pages, channel, ringRef: p.ringRef,
    }));
    if (!c.ok) return c;
    log.enabled && log('%s connected: ring-ref %d, port %d, %d sectors%s', this.name, p.ringRef, p.eventChannel,
      this.disk.sectors, this.disk.readOnly ? ' (read-only)' : '');
    // Requests may already be waiting (a frontend replaying after resume).
    this.kick();
    return ok(undefined);
  }

  // --- internals -----------------------------------------------------------

  /**
   * Serve the ring: take up to `budget` requests in order, answer each,
   * publish; ask for a notification if the frontend wants one. Garbage
   * indices fail this vbd (and only it).
   */
  protected serve(conn: Connection, budget: number, w: PollWork): void {
    const { ring } = conn;
    for (;;) {
      const pending = pendingRequests(ring, w);
      if (!pending.ok) {
        w.broken = `ring indices are garbage: ${pending.error}`;
        return;
      }
      if (pending.value === 0) return;
      if (w.done >= budget) {
        w.more = true;
        return;
      }
      const n = Math.min(pending.value, budget - w.done);
      for (let k = 0; k < n; k++) ring.respond(this.execute(ring.take()));
      w.done += n;
      if (ring.push()) w.notify = true;
    }
  }

  protected closeDevice(): void {
    this.disk.close();
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
      const put = this.opts.host.grants.copyToGrant(this.frontendDomid, s.gref, s.firstSect * SECTOR_SIZE, data.value.subarray(off, off + len));
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
      const got = this.opts.host.grants.copyFromGrant(this.frontendDomid, s.gref, s.firstSect * SECTOR_SIZE, len);
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

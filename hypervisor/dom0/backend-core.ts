/*
 * What blkback and netback share: the registry of one backend's devices
 * (one per frontend domain and devid, in creation order), their teardown,
 * and the poll scheduling that serves every device with work; and the
 * lifecycle of one ring-backed device (RingDevice), which a vbd and a vif
 * both live by.
 *
 * A device is waiting (no connection), connected, failed (the frontend
 * broke the protocol; `error` says how) or closed (for good); the wiring
 * publishes InitWait, Connected, Closing (and writes `error`) and Closed
 * for them. vbd.ts and vif.ts draw each device's diagram.
 *
 * connect() is allowed from waiting and failed. A connect refused (bad
 * parameters, a grant or port that cannot be had) fails the device with
 * the reason; so does garbage found while serving the rings. A failure
 * lets go of the rings and the port at once; only that device stops.
 * disconnect() lets go of them too and goes back to waiting; close() is
 * the end.
 *
 * Every connect binds a new event channel and bumps `generation`; an event
 * from an earlier binding is ignored. An event, or anything else that
 * gives the device work, only marks it (kick(): cheap, no I/O) and asks
 * the backend, through `onWork`, for a poll() soon, between guest entries.
 * A poll serves the rings (the device's own serve()), notifies the
 * frontend once if a ring asked for it, and asks for another poll if its
 * budget ran out with work left.
 */
import type { Debugger } from 'debug';
import {
  XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitWait, type XenbusState,
} from '../public/io/xenbus.js';
import type { RingResult } from '../public/io/ring.js';
import { evtchnPort, grantRef, type DomId } from '../public/types.js';
import { err, ok, type BackendHost, type BoundChannel, type MappedRing, type Outcome } from './backend-host.js';

/** A vbd or a vif, as the registry sees it. */
export interface BackendDevice {
  readonly frontendDomid: DomId;
  readonly devid: number;
  /** Connected and kicked: poll() has something to look at. */
  readonly hasWork: boolean;
  poll(budget: number): number;
  /** Disconnect and let go of what the device holds, for good. */
  close(): void;
}

/** The hooks a backend passes to each of its devices. */
export interface BackendHooks<D> {
  /** A device has work: call poll() soon, between guest entries. */
  readonly schedule?: () => void;
  /** A device failed by itself: publish its error and Closing. */
  readonly onStateChange?: (device: D) => void;
}

/** The backend's hooks as a device's options (`onWork`, `onStateChange`), leaving out the absent ones. */
export function deviceHooks<D>(h: BackendHooks<D>): { onWork?: () => void; onStateChange?: (device: D) => void } {
  return {
    ...(h.schedule === undefined ? {} : { onWork: h.schedule }),
    ...(h.onStateChange === undefined ? {} : { onStateChange: h.onStateChange }),
  };
}

const key = (domid: number, devid: number): string => `${domid}/${devid}`;

export abstract class BackendRegistry<D extends BackendDevice> {
  private readonly devices = new Map<string, D>();

  /** `defaultBudget`: what one poll of one device may do when poll() is given no budget. */
  protected constructor(private readonly defaultBudget: number) {}

  get(frontendDomid: DomId, devid: number): D | undefined {
    return this.devices.get(key(frontendDomid, devid));
  }

  /** Every device, in creation order. */
  list(): D[] {
    return [...this.devices.values()];
  }

  /** Close one device and forget it. False if there was none. */
  destroy(frontendDomid: DomId, devid: number): boolean {
    const k = key(frontendDomid, devid);
    const d = this.devices.get(k);
    if (d === undefined) return false;
    d.close();
    this.devices.delete(k);
    return true;
  }

  /** Close every device of a domain (destroyed, saved, or migrated away). */
  destroyDomain(frontendDomid: DomId): number {
    let n = 0;
    for (const d of this.list()) if (d.frontendDomid === frontendDomid && this.destroy(d.frontendDomid, d.devid)) n++;
    return n;
  }

  /** Some connected device has been kicked and not polled since. */
  hasWork(): boolean {
    for (const d of this.devices.values()) if (d.hasWork) return true;
    return false;
  }

  /**
   * Poll every device with work once, `budget` each at most, in creation
   * order. Returns the work done (requests, packets). A device left with
   * work asks for another poll through `schedule`.
   */
  poll(budget: number = this.defaultBudget): number {
    let n = 0;
    for (const d of this.list()) if (d.hasWork) n += d.poll(budget);
    return n;
  }

  /** Poll until no device has work (tests, benches, a machine draining before save). */
  drain(budget: number = this.defaultBudget, maxRounds = 1_000_000): number {
    let n = 0;
    for (let i = 0; i < maxRounds && this.hasWork(); i++) n += this.poll(budget);
    return n;
  }

  /** A device for this domain and devid exists already. */
  protected has(frontendDomid: DomId, devid: number): boolean {
    return this.devices.has(key(frontendDomid, devid));
  }

  /** Register a new device (after has() said there was none). */
  protected add(device: D): void {
    this.devices.set(key(device.frontendDomid, device.devid), device);
  }
}

// --- one ring-backed device ----------------------------------------------------

export type DeviceState = 'waiting' | 'connected' | 'failed' | 'closed';

/** Grant references and ports are unsigned 32-bit on the wire. */
export const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;

/** What the base needs from the machine to connect: ring pages and an event channel. */
export type RingHost = Pick<BackendHost, 'mapRing' | 'bindEventChannel'>;

/** The options every device takes; VbdOptions and VifOptions add their own. */
export interface RingDeviceOptions<D> {
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly host: RingHost;
  /** The device changed state by itself (failed): publish it. */
  readonly onStateChange?: (device: D) => void;
  /** The device has work: arrange for poll() to run soon (between guest entries). */
  readonly onWork?: (device: D) => void;
}

/** What a subclass tells the base about itself when it is made. */
export interface RingDeviceSetup {
  readonly frontendDomid: DomId;
  readonly devid: number;
  /** In every message and debug line: `vbd d1/51712`, `vif1.0`. */
  readonly name: string;
  /** The backend's debug namespace (dom0:blkback, dom0:netback). */
  readonly log: Debugger;
  /** What one poll may do when poll() is given no budget. */
  readonly pollBudget: number;
}

/** What every connection holds: the ring pages, in the order connect named them, and dom0's end of the port. */
export interface RingConnection {
  readonly pages: readonly MappedRing[];
  readonly channel: BoundChannel;
}

/** The counters the base keeps in a device's stats. */
export interface RingCounters {
  /** Event channel notifications sent to the frontend. */
  notifies: number;
  /** Times the rings were connected. */
  connects: number;
}

/** A ring page the frontend granted: its xenstore node (for messages) and the grant reference published there. */
export interface RingRef {
  readonly node: string;
  readonly ref: number;
}

/** What one poll did, filled in by serve(). */
export interface PollWork {
  /** Requests or packets taken. */
  done: number;
  /** A ring asked for a notification. */
  notify: boolean;
  /** The budget ran out with work left. */
  more: boolean;
  /** The frontend broke the protocol: the device fails with this. */
  broken: string | undefined;
}

/** What the request loop needs of a back ring (BlkRing, NetBackRing). */
export interface RequestRing {
  pending(): RingResult<number>;
  push(): boolean;
  finalCheck(): RingResult<number>;
}

/**
 * Requests waiting on `ring`. When there are none, publish the responses
 * (noting in `w` if the frontend wants to hear of them) and look again
 * with the request event re-armed, so a request pushed meanwhile is not
 * missed. 0: the ring is idle until the next event.
 */
export function pendingRequests(ring: RequestRing, w: PollWork): RingResult<number> {
  const pending = ring.pending();
  if (!pending.ok || pending.value !== 0) return pending;
  if (ring.push()) w.notify = true;
  return ring.finalCheck();
}

/**
 * The lifecycle of a device served over rings the frontend grants (see the
 * header). `C` is what a connection holds beyond its pages and port (the
 * rings themselves), `S` the device's stats.
 */
export abstract class RingDevice<C extends RingConnection, S extends RingCounters> implements BackendDevice {
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly name: string;
  /** The subclass's options, typed with the subclass, so the hooks are given the device itself. */
  protected abstract readonly opts: RingDeviceOptions<this>;
  protected abstract readonly counters: S;
  /** Set while connected (and only then). */
  protected conn: C | undefined;
  private readonly log: Debugger;
  private readonly pollBudget: number;
  private stateValue: DeviceState = 'waiting';
  private errorValue: string | undefined;
  private generationValue = 0;
  private kicked = false;

  protected constructor(setup: RingDeviceSetup) {
    this.frontendDomid = setup.frontendDomid;
    this.devid = setup.devid;
    this.name = setup.name;
    this.log = setup.log;
    this.pollBudget = setup.pollBudget;
  }

  get state(): DeviceState {
    return this.stateValue;
  }

  /** Why the device failed (or the last connect was refused). */
  get error(): string | undefined {
    return this.errorValue;
  }

  /** Bumped by every connect: events of an older connection are ignored. */
  get generation(): number {
    return this.generationValue;
  }

  /** A snapshot of the counters; they survive reconnections. */
  get stats(): Readonly<S> {
    return { ...this.counters };
  }

  /** Connected and kicked: poll() has something to look at. */
  get hasWork(): boolean {
    return this.stateValue === 'connected' && this.kicked;
  }

  /** The xenbus state to publish for this device's state. */
  xenbusState(): XenbusState {
    switch (this.stateValue) {
      case 'waiting': return XenbusStateInitWait;
      case 'connected': return XenbusStateConnected;
      case 'failed': return XenbusStateClosing;
      case 'closed': return XenbusStateClosed;
    }
  }

  /** Mark work (the frontend notified, or a frame arrived), nothing else. */
  kick(): void {
    if (this.stateValue !== 'connected' || this.kicked) return;
    this.kicked = true;
    this.opts.onWork?.(this);
  }

  /**
   * Serve the rings, `budget` requests or packets at most (each way, where
   * there are two), notify the frontend once if a ring asked, and fail the
   * device on garbage. Returns the work done.
   */
  poll(budget: number = this.pollBudget): number {
    this.kicked = false;
    const conn = this.conn;
    if (this.stateValue !== 'connected' || conn === undefined) return 0;
    const w: PollWork = { done: 0, notify: false, more: false, broken: undefined };
    this.serve(conn, budget, w);
    // What serve() set off (a frame into the bridge) may have ended this connection.
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
      this.log.enabled && this.log('%s disconnected', this.name);
      this.stateValue = 'waiting';
    }
  }

  /** Disconnect and let go of what the device holds (its disk, its bridge port), for good. */
  close(): void {
    this.release();
    this.closeDevice();
    this.stateValue = 'closed';
  }

  // --- for the device ------------------------------------------------------------

  /** Serve the rings of a live connection, filling in `w`. Never throws on peer data: sets `w.broken`. */
  protected abstract serve(conn: C, budget: number, w: PollWork): void;

  /** Let go, for good, of what the device holds besides its connection. */
  protected abstract closeDevice(): void;

  /** The connection is going away: forget what was kept for it. */
  protected dropConnectionState(): void {}

  /**
   * The part of connect() after the device's own checks: check the ring
   * references and the port, map the rings, bind the port (to kick this
   * device, as long as this connection is the current one), build the
   * connection, and be connected. Refused (the device fails, with the
   * reason) if a reference or the port makes no sense or cannot be had;
   * whatever was mapped or bound by then is let go again. The caller checks
   * the state first, and kicks once it has said it is connected.
   */
  protected attach<const R extends readonly RingRef[]>(
    rings: R, eventChannel: number, build: (pages: { readonly [K in keyof R]: MappedRing }, channel: BoundChannel) => C,
  ): Outcome<C> {
    for (const r of rings) if (!isU32(r.ref)) return this.refuseConnect(`${r.node} ${r.ref} is not a grant reference`);
    if (!isU32(eventChannel)) return this.refuseConnect(`event-channel ${eventChannel} is not a port`);

    const pages: MappedRing[] = [];
    const unmapAll = (): void => {
      for (let i = pages.length - 1; i >= 0; i--) pages[i]!.unmap();
    };
    for (const r of rings) {
      const page = this.opts.host.mapRing(this.frontendDomid, grantRef(r.ref));
      if (!page.ok) {
        unmapAll();
        return this.refuseConnect(`cannot map ${r.node} ${r.ref}: ${page.error}`);
      }
      pages.push(page.value);
    }
    const gen = this.generationValue + 1;
    const channel = this.opts.host.bindEventChannel(this.frontendDomid, evtchnPort(eventChannel), () => {
      if (gen === this.generationValue) this.kick();
    });
    if (!channel.ok) {
      unmapAll();
      return this.refuseConnect(`cannot bind event-channel ${eventChannel}: ${channel.error}`);
    }
    this.generationValue = gen;
    let conn: C;
    try {
      // One page per ring, in the order of `rings`: the tuple type says so.
      conn = build(pages as { readonly [K in keyof R]: MappedRing }, channel.value);
    } catch (e) {
      // Only where the back rings start can be inconsistent, and that is the caller's value.
      channel.value.close();
      unmapAll();
      throw e;
    }
    this.conn = conn;
    this.stateValue = 'connected';
    this.errorValue = undefined;
    this.counters.connects++;
    return ok(conn);
  }

  protected refuseConnect(reason: string): Outcome<never> {
    this.fail(`connect refused: ${reason}`);
    return err(reason);
  }

  // --- internals -------------------------------------------------------------------

  private fail(reason: string): void {
    this.release();
    this.stateValue = 'failed';
    this.errorValue = reason;
    this.log('%s failed: %s', this.name, reason);
    this.opts.onStateChange?.(this);
  }

  private release(): void {
    const c = this.conn;
    this.conn = undefined;
    this.kicked = false;
    this.dropConnectionState();
    if (c === undefined) return;
    c.channel.close();
    for (const p of c.pages) p.unmap();
  }
}

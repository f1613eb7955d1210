/*
 * dom0's xenbus backend driver: what Linux's xen-blkback/xenbus.c and
 * xen-netback/xenbus.c do around their engines, once for every kind.
 *
 * It has its own xenstore connection (watch events are consumed here, so
 * it must not share one with the toolstack) and watches
 * /local/domain/0/backend/<kind> for each kind it serves. When a device
 * directory appears (the toolstack wrote it, see devices.ts):
 *
 *   probe      read frontend, frontend-id and the kind's nodes; open the
 *              engine (blkback.create, netback.create); publish its
 *              feature nodes (sectors, info, feature-*; mac, feature-*);
 *              state = InitWait; watch <frontend>/state
 *
 * and then, on each change of the frontend's state:
 *
 *   Initialising           a backend past InitWait (Connected, Closing,
 *                          Closed) lets the rings go, publishes its
 *                          features again and returns to InitWait: the
 *                          frontend is starting over (a restored guest,
 *                          a reconnect after Closed)
 *   Initialised, Connected read the frontend's ring nodes, connect the
 *                          engine, state = Connected. Already Connected:
 *                          nothing, unless the nodes name other rings or
 *                          another port (a restart whose Initialising we
 *                          did not see: watch events carry no value, so
 *                          two quick writes can read the same), then
 *                          reconnect
 *   Closing, Closed        disconnect, state = Closed
 *   (state node gone)      the frontend went away: disconnect, Closed
 *
 * Errors (a bad node, a refused connect, an engine that fails by itself on
 * garbage from the guest) write `error` in the backend directory and switch
 * it to Closing (xenbus_dev_fatal); only that device stops. A later
 * successful connect removes the `error` node.
 *
 * Every piece of work runs in one queue, one task at a time, so a device
 * is never probed twice or written after it was removed. State and node
 * writes check, inside a transaction, that the backend directory is still
 * there (as xenbus_switch_state does): a write never recreates a device the
 * toolstack removed.
 */
import createDebug from 'debug';
import {
  XENBUS_STATE_NAMES, XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitialised,
  XenbusStateInitialising, XenbusStateInitWait, XenbusStateUnknown, parseXenbusState, type XenbusState,
} from '../../public/io/xenbus.js';
import { err, ok, type Outcome } from '../../dom0/backend-host.js';
import { XsError, type XsClient, type WatchEvent } from '../xenstored/client.js';
import { inTransaction } from '../builder/xenstore.js';
import {
  DEVICE_KINDS, backendDomainDir, backendPath, backendRoot, deviceKey, deviceName, frontendPath, parseBackendPath,
  type DeviceKind, type DeviceRef, type NodeValues,
} from './nodes.js';

const log = createDebug('dom0:backend');

/** The value of a node of one directory, or undefined when it does not exist. */
export type NodeReader = (node: string) => string | undefined;

/** One device's engine (a vbd, a vif), as its kind opened it. */
export interface BackendEngine {
  /** Published in the backend directory before every InitWait. */
  featureNodes(): NodeValues;
  /** The frontend's nodes (relative names) read before connect. */
  readonly frontendNodes: readonly string[];
  /** Parse what the frontend published and connect; an error value says why not (the engine has failed). */
  connect(read: NodeReader): Outcome<void>;
  /** Do the frontend's nodes describe the current connection (same rings, same port)? */
  sameConnection(read: NodeReader): boolean;
  /** Let go of the rings and the port; the engine waits for a new connect. */
  disconnect(): void;
  /** For good: disk closed, vif off its bridge. */
  destroy(): void;
  /** Why the engine failed by itself, if it did. */
  readonly failure: string | undefined;
}

/** A kind of device this driver serves. */
export interface BackendKind {
  readonly kind: DeviceKind;
  /** Backend nodes (relative names) the kind reads to open a device. */
  readonly backendNodes: readonly string[];
  /** Open the engine from the backend's nodes; an error value (one clear line) when it cannot be. */
  open(ref: DeviceRef, read: NodeReader): Outcome<BackendEngine>;
}

export interface BackendDriverOptions {
  /** dom0's connection for this driver alone (its watch events are consumed here). */
  readonly xs: XsClient;
  readonly kinds: readonly BackendKind[];
  /** A device failed: one line for the machine log. */
  readonly report?: (line: string) => void;
}

/** What the driver knows of one device (for xl and the tests). */
export interface DeviceStatus {
  readonly kind: DeviceKind;
  readonly frontendDomid: number;
  readonly devid: number;
  readonly state: string;
  readonly error: string | undefined;
}

interface Device {
  readonly ref: DeviceRef;
  readonly key: string;
  readonly name: string;
  readonly be: string;
  readonly fe: string;
  readonly kind: BackendKind;
  engine: BackendEngine | undefined;
  /** The state last published in the backend directory. */
  state: XenbusState;
  error: string | undefined;
  watching: boolean;
}

const FE_TOKEN = 'fe:';
const BE_TOKEN = 'be:';

function missing(e: unknown): boolean {
  return e instanceof XsError && (e.code === 'ENOENT' || e.code === 'EACCES');
}

export class BackendDriver {
  private readonly xs: XsClient;
  private readonly kinds = new Map<DeviceKind, BackendKind>();
  private readonly devices = new Map<string, Device>();
  private readonly report: (line: string) => void;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(opts: BackendDriverOptions) {
    this.xs = opts.xs;
    for (const k of opts.kinds) this.kinds.set(k.kind, k);
    this.report = opts.report ?? (() => undefined);
  }

  /** Watch the backend directories; devices already there are probed. */
  async start(): Promise<void> {
    void this.pumpEvents();
    for (const kind of this.kinds.keys()) await this.xs.watch(backendRoot(kind), `${BE_TOKEN}${kind}`);
  }

  /**
   * Probe one device now (the toolstack adding it waits for this, as libxl
   * waits for the backend): ok once it is in InitWait or beyond, or the
   * error it published (without the device's name).
   */
  probe(ref: DeviceRef): Promise<Outcome<void>> {
    return this.serial(async () => {
      const d = this.devices.get(deviceKey(ref));
      if (d !== undefined) return d.error === undefined ? ok(undefined) : err(d.error);
      if ((await this.read(`${backendPath(ref)}/frontend`)) === undefined) return err(`no backend directory at ${backendPath(ref)}`);
      return this.probeNew(ref);
    }).catch((e: unknown) => err(e instanceof Error ? e.message : String(e)));
  }

  /**
   * The engine of a device failed by itself (garbage from the guest):
   * publish its error and Closing. Safe to call from inside an engine.
   */
  engineFailed(ref: DeviceRef): void {
    void this.serial(async () => {
      const d = this.devices.get(deviceKey(ref));
      const why = d?.engine?.failure;
      if (d === undefined || why === undefined || (d.state === XenbusStateClosing && d.error !== undefined)) return;
      await this.fatal(d, why);
    });
  }

  /**
   * Stop serving every device of a domain and remove its backend
   * directories (the domain is being destroyed, or its creation undone).
   * Returns the devices stopped.
   */
  removeDomain(domid: number): Promise<number> {
    return this.serial(async () => {
      let n = 0;
      for (const d of [...this.devices.values()]) {
        if (d.ref.frontendDomid !== domid) continue;
        await this.remove(d);
        n++;
      }
      for (const kind of DEVICE_KINDS) await this.rm(backendDomainDir(kind, domid));
      return n;
    });
  }

  /** Stop serving one device and remove its backend directory (a failed hotplug). */
  removeDevice(ref: DeviceRef): Promise<void> {
    return this.serial(async () => {
      const d = this.devices.get(deviceKey(ref));
      if (d !== undefined) await this.remove(d);
      await this.rm(backendPath(ref));
    });
  }

  /** Settles once every task queued so far has run. */
  settled(): Promise<void> {
    return this.serial(() => Promise.resolve());
  }

  status(): DeviceStatus[] {
    return [...this.devices.values()].map((d) => ({
      kind: d.ref.kind, frontendDomid: d.ref.frontendDomid, devid: d.ref.devid,
      state: XENBUS_STATE_NAMES[d.state] ?? String(d.state), error: d.error,
    }));
  }

  /** Destroy every engine; the driver does nothing more. */
  close(): void {
    this.closed = true;
    for (const d of this.devices.values()) d.engine?.destroy();
    this.devices.clear();
  }

  // --- the queue and the watch events ---------------------------------------------------

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      if (this.closed) throw new Error('the backend driver is closed');
      return task();
    });
    this.queue = run.then(() => undefined, (e: unknown) => {
      if (!this.closed) log('task failed: %s', e instanceof Error ? e.stack ?? e.message : String(e));
    });
    return run;
  }

  private async pumpEvents(): Promise<void> {
    while (!this.closed) {
      const ev = await this.xs.nextEvent();
      if (this.closed) return;
      void this.serial(() => this.onEvent(ev)).catch(() => undefined);
    }
  }

  private async onEvent(ev: WatchEvent): Promise<void> {
    if (ev.token.startsWith(FE_TOKEN)) {
      const d = this.devices.get(ev.token.slice(FE_TOKEN.length));
      if (d !== undefined) await this.frontendChanged(d);
      return;
    }
    if (!ev.token.startsWith(BE_TOKEN)) return;
    const p = parseBackendPath(ev.path);
    if (p === undefined || !this.kinds.has(p.kind)) return;
    if (p.domid === undefined) return this.syncKind(p.kind);
    if (p.devid === undefined) return this.syncDomain(p.kind, p.domid);
    const ref: DeviceRef = { kind: p.kind, frontendDomid: p.domid, devid: p.devid };
    const d = this.devices.get(deviceKey(ref));
    // A node of a device we serve changed: most often our own write.
    if (d !== undefined && p.node !== undefined) return;
    if (d !== undefined) {
      if ((await this.read(d.be)) === undefined) await this.remove(d);
      return;
    }
    if ((await this.read(`${backendPath(ref)}/frontend`)) !== undefined) await this.probeNew(ref);
  }

  /** Something at or above a kind's root changed: look at every domain under it. */
  private async syncKind(kind: DeviceKind): Promise<void> {
    const doms = new Set((await this.list(backendRoot(kind))).filter((s) => /^\d+$/.test(s)).map(Number));
    for (const d of [...this.devices.values()]) if (d.ref.kind === kind && !doms.has(d.ref.frontendDomid)) await this.remove(d);
    for (const domid of doms) await this.syncDomain(kind, domid);
  }

  private async syncDomain(kind: DeviceKind, domid: number): Promise<void> {
    const listed = new Set((await this.list(backendDomainDir(kind, domid))).filter((s) => /^\d+$/.test(s)).map(Number));
    for (const d of [...this.devices.values()]) {
      if (d.ref.kind === kind && d.ref.frontendDomid === domid && !listed.has(d.ref.devid)) await this.remove(d);
    }
    for (const devid of listed) {
      const ref: DeviceRef = { kind, frontendDomid: domid, devid };
      if (this.devices.has(deviceKey(ref))) continue;
      if ((await this.read(`${backendPath(ref)}/frontend`)) !== undefined) await this.probeNew(ref);
    }
  }

  // --- one device ---------------------------------------------------------------------------

  private async probeNew(ref: DeviceRef): Promise<Outcome<void>> {
    const kind = this.kinds.get(ref.kind);
    if (kind === undefined) return err(`${deviceName(ref)}: this backend does not serve ${ref.kind}`);
    const d: Device = {
      ref, kind, key: deviceKey(ref), name: deviceName(ref), be: backendPath(ref), fe: frontendPath(ref),
      engine: undefined, state: XenbusStateInitialising, error: undefined, watching: false,
    };
    // Known from now on, failed or not: our own writes must not probe it again.
    this.devices.set(d.key, d);
    const read = await this.readAll(d.be, ['frontend', 'frontend-id', ...kind.backendNodes]);
    if (read('frontend') !== d.fe || read('frontend-id') !== String(ref.frontendDomid)) {
      return this.fatal(d, `frontend is "${read('frontend') ?? ''}" (frontend-id "${read('frontend-id') ?? ''}"), expected ${d.fe}`);
    }
    const opened = kind.open(ref, read);
    if (!opened.ok) return this.fatal(d, opened.error);
    d.engine = opened.value;
    await this.reset(d);
    await this.xs.watch(`${d.fe}/state`, `${FE_TOKEN}${d.key}`);
    d.watching = true;
    log.enabled && log('%s: probed, InitWait', d.name);
    return ok(undefined);
  }

  /** Publish the features and InitWait (first time, and whenever the frontend starts over). */
  private async reset(d: Device): Promise<void> {
    d.engine?.disconnect();
    const features = d.engine?.featureNodes() ?? {};
    await this.writeNodes(d, features, XenbusStateInitWait);
  }

  private async frontendChanged(d: Device): Promise<void> {
    const engine = d.engine;
    if (engine === undefined) return;
    const text = await this.read(`${d.fe}/state`);
    const fe = text === undefined ? XenbusStateUnknown : parseXenbusState(text.trim());
    log.enabled && log('%s: frontend %s, backend %s', d.name, fe === undefined ? `"${text}"` : XENBUS_STATE_NAMES[fe], XENBUS_STATE_NAMES[d.state]);
    switch (fe) {
      case XenbusStateInitialising:
        if (d.state !== XenbusStateInitWait) await this.reset(d);
        return;
      case XenbusStateInitialised:
      case XenbusStateConnected:
        return this.connect(d, engine);
      case XenbusStateClosing:
      case XenbusStateClosed:
      case XenbusStateUnknown:
        engine.disconnect();
        await this.writeNodes(d, {}, XenbusStateClosed);
        return;
      case undefined:
        await this.fatal(d, `frontend state "${text ?? ''}" is not a xenbus state`);
        return;
      default:
        return; // InitWait, Reconfiguring, Reconfigured: nothing for us to do
    }
  }

  private async connect(d: Device, engine: BackendEngine): Promise<void> {
    const read = await this.readAll(d.fe, engine.frontendNodes);
    if (d.state === XenbusStateConnected) {
      if (engine.sameConnection(read)) return;
      log.enabled && log('%s: the frontend published new rings while connected: reconnecting', d.name);
      engine.disconnect();
    }
    const r = engine.connect(read);
    if (!r.ok) {
      await this.fatal(d, r.error);
      return;
    }
    if (d.error !== undefined) {
      d.error = undefined;
      await this.rm(`${d.be}/error`);
    }
    await this.writeNodes(d, {}, XenbusStateConnected);
    log.enabled && log('%s: Connected', d.name);
  }

  /** xenbus_dev_fatal: `error`, then Closing. Returns the error, for probe(). */
  private async fatal(d: Device, why: string): Promise<Outcome<void>> {
    d.error = why;
    d.engine?.disconnect();
    this.report(`${d.name}: ${why}`);
    log('%s: %s', d.name, why);
    await this.writeNodes(d, { error: why }, XenbusStateClosing);
    return err(why);
  }

  private async remove(d: Device): Promise<void> {
    this.devices.delete(d.key);
    d.engine?.destroy();
    d.engine = undefined;
    if (d.watching) {
      d.watching = false;
      await this.xs.unwatch(`${d.fe}/state`, `${FE_TOKEN}${d.key}`).catch(() => undefined);
    }
    log.enabled && log('%s: removed', d.name);
  }

  // --- xenstore ---------------------------------------------------------------------------

  /**
   * Write nodes of the backend directory and then its state, in one
   * transaction, only if the directory is still there.
   */
  private async writeNodes(d: Device, values: NodeValues, state: XenbusState): Promise<void> {
    const entries = Object.entries(values);
    if (entries.length === 0 && d.state === state) return;
    d.state = state;
    await inTransaction(this.xs, async (tx) => {
      if ((await this.read(d.be, tx)) === undefined) return;
      for (const [node, value] of entries) await this.xs.write(`${d.be}/${node}`, value, tx);
      await this.xs.write(`${d.be}/state`, String(state), tx);
    });
  }

  private async read(path: string, tx = 0): Promise<string | undefined> {
    try {
      return await this.xs.read(path, tx);
    } catch (e) {
      if (missing(e)) return undefined;
      throw e;
    }
  }

  private async readAll(dir: string, nodes: readonly string[]): Promise<NodeReader> {
    const values = new Map<string, string>();
    for (const n of nodes) {
      const v = await this.read(`${dir}/${n}`);
      if (v !== undefined) values.set(n, v);
    }
    return (n) => values.get(n);
  }

  private async list(path: string): Promise<string[]> {
    try {
      return await this.xs.directory(path);
    } catch (e) {
      if (missing(e)) return [];
      throw e;
    }
  }

  private async rm(path: string): Promise<void> {
    try {
      await this.xs.rm(path);
    } catch (e) {
      if (!missing(e)) throw e;
    }
  }
}

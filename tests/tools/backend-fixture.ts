/*
 * A guest-less frontend for the backend tests: host code that plays
 * domain N against the public ABI and the real machine, with nothing of
 * dom0 in between.
 *
 *  - xenstore: an XsClient over the domain's own store ring (the page the
 *    builder made, served by the real xenstored), signalled through the
 *    domain's store event channel as the guest would;
 *  - grants: entries written in the domain's grant table through the
 *    hypervisor's host API (as a guest's xengnt writes its table frame),
 *    for pages the domain owns;
 *  - event channels: ports allocated and signalled as domain N.
 *
 * The domain is created paused, so its kernel never runs and nobody else
 * touches its rings. Everything runs on the simulated clock: drive() steps
 * the machine without letting time jump, pumps the frontends, and lets
 * promises settle, until a condition holds.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { record, type ByteMem } from '../../hypervisor/public/layout.js';
import { FrontRing, ringGeometry } from '../../hypervisor/public/io/ring.js';
import { BLKIF_OP_READ, blkif_request, blkif_response, XEN_IO_PROTO_ABI_NATIVE } from '../../hypervisor/public/io/blkif.js';
import {
  netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response, NETRXF_more_data,
} from '../../hypervisor/public/io/netif.js';
import { GTF_permit_access, GTF_readonly } from '../../hypervisor/public/grant_table.js';
import { PAGE_SIZE } from '../../hypervisor/public/types.js';
import type { EvtchnCaller } from '../../hypervisor/xen/evtchn.js';
import { XsClient } from '../../hypervisor/tools/xenstored/client.js';
import { XsRingFront } from '../../hypervisor/tools/xenstored/ring_front.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import { frontendPath, type DeviceKind, type DeviceRef } from '../../hypervisor/tools/backend/nodes.js';
import type { DiskSpec, VifSpec } from '../../hypervisor/tools/xl/config.js';

export const SECTOR = 512;

/** A raw image of `sectors` sectors; byte j of sector i is (i * 7 + j) & 0xff. Removed when the test ends. */
export function diskImage(t: ExecutionContext, sectors = 64): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenport-backend-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.img');
  writeFileSync(path, sectorBytes(0, sectors));
  return path;
}

export function sectorBytes(first: number, count: number): Uint8Array {
  const out = new Uint8Array(count * SECTOR);
  for (let i = 0; i < count; i++) for (let j = 0; j < SECTOR; j++) out[i * SECTOR + j] = ((first + i) * 7 + j) & 0xff;
  return out;
}

export const disk = (target: string, vdev = 'xvda', readOnly = false): DiskSpec => ({ target, vdev, readOnly, format: 'raw' });
export const vif = (mac: string, ip?: string, over: Partial<VifSpec> = {}): VifSpec =>
  ({ mac, bridge: 'xenbr0', forwards: [], ...(ip === undefined ? {} : { ip }), ...over });

/** A page of the guest's, granted to dom0. */
export interface GuestPage {
  readonly ref: number;
  readonly mfn: number;
  readonly mem: ByteMem;
}

/** Domain N as seen from inside: its store connection, grants and ports. */
export class GuestSide {
  readonly domid: number;
  readonly xs: XsClient;
  readonly caller: EvtchnCaller;
  private readonly ring: XsRingFront;
  private nextRef = 8;
  private nextPfn: number;

  constructor(readonly h: MachineHost, readonly b: BuiltDomain) {
    this.domid = b.domid;
    this.caller = { domid: b.domid, vcpuId: 0, privileged: false };
    this.ring = new XsRingFront(h.m.memory.frameMem(b.storeMfn), 0, () => h.m.evtchn.send(this.caller, b.storePort));
    this.xs = new XsClient((msg) => this.ring.send(msg));
    this.ring.onMessage = (msg) => this.xs.receive(msg);
    // Pages from the top of RAM down: the paused kernel never uses them.
    this.nextPfn = b.layout.nrPages - 2;
  }

  /** The store ring may hold replies. */
  pump(): void {
    this.ring.notified();
  }

  /** A fresh zeroed page of the domain, granted to dom0 (writable unless readOnly). */
  grantPage(readOnly = false): GuestPage {
    const pfn = this.nextPfn--;
    if (pfn < this.b.layout.firstFreePfn) throw new Error('test frontend: out of guest pages');
    const mfn = this.b.p2m[pfn]!;
    const mem = this.h.m.memory.frameMem(mfn);
    mem.writeBytes(0, new Uint8Array(PAGE_SIZE));
    const ref = this.nextRef++;
    const rc = this.h.m.gnttab.seedEntry(this.domid, ref, { flags: GTF_permit_access | (readOnly ? GTF_readonly : 0), domid: 0, frame: mfn });
    if (rc !== 0) throw new Error(`test frontend: grant ${ref} refused (${rc})`);
    return { ref, mfn, mem };
  }

  /** An unbound port of the domain for dom0 to bind. */
  allocPort(): number {
    const p = this.h.m.evtchn.allocUnbound(this.caller, this.domid, 0);
    if (p < 0) throw new Error(`test frontend: alloc_unbound failed (${p})`);
    return p;
  }

  notify(port: number): void {
    this.h.m.evtchn.send(this.caller, port);
  }

  dir(kind: DeviceKind, devid: number): string {
    return frontendPath({ kind, frontendDomid: this.domid, devid });
  }

  /** Write nodes of a device's frontend directory in one transaction, then its state. */
  async publish(kind: DeviceKind, devid: number, nodes: Readonly<Record<string, string>>, state: number): Promise<void> {
    const dir = this.dir(kind, devid);
    const tx = await this.xs.transactionStart();
    for (const [k, v] of Object.entries(nodes)) await this.xs.write(`${dir}/${k}`, v, tx);
    await this.xs.transactionEnd(tx, true);
    await this.xs.write(`${dir}/state`, String(state));
  }

  setState(kind: DeviceKind, devid: number, state: number): Promise<void> {
    return this.xs.write(`${this.dir(kind, devid)}/state`, String(state));
  }
}

const BLKIF_GEOMETRY = ringGeometry(record(blkif_request), record(blkif_response));
const TX_GEOMETRY = ringGeometry(record(netif_tx_request), record(netif_tx_response));
const RX_GEOMETRY = ringGeometry(record(netif_rx_request), record(netif_rx_response));

/** A blkif frontend: one ring, one port, reads into granted pages. */
export class BlkFront {
  readonly ringPage: GuestPage;
  readonly port: number;
  readonly ring: FrontRing;
  private nextId = 1n;
  /** Data pages by request id. */
  private readonly pages = new Map<bigint, GuestPage>();

  constructor(readonly g: GuestSide, readonly devid: number) {
    this.ringPage = g.grantPage();
    this.ring = FrontRing.init(this.ringPage.mem, 0, BLKIF_GEOMETRY);
    this.port = g.allocPort();
  }

  /** ring-ref, event-channel, protocol; then Initialised. */
  connect(overrides: Readonly<Record<string, string>> = {}): Promise<void> {
    return this.g.publish('vbd', this.devid, {
      'ring-ref': String(this.ringPage.ref), 'event-channel': String(this.port), protocol: XEN_IO_PROTO_ABI_NATIVE, ...overrides,
    }, 3);
  }

  /** Queue a read of `count` sectors (at most 8: one page) at `sector`; returns its id. */
  read(sector: number, count: number): bigint {
    const page = this.g.grantPage();
    const id = this.nextId++;
    const addr = this.ring.produceRequest();
    if (addr === undefined) throw new Error('blkfront: ring full');
    const v = blkif_request.view(this.ringPage.mem, addr);
    v.set('operation', BLKIF_OP_READ);
    v.set('nr_segments', 1);
    v.set('handle', this.devid & 0xffff);
    v.set('id', id);
    v.set('sector_number', BigInt(sector));
    const s = v.sub('seg', 0);
    s.set('gref', page.ref);
    s.set('first_sect', 0);
    s.set('last_sect', count - 1);
    this.pages.set(id, page);
    if (this.ring.pushRequests()) this.g.notify(this.port);
    return id;
  }

  /** Responses published so far: id, status, and the data page of each. */
  responses(): { id: bigint; status: number; data: Uint8Array }[] {
    const ready = this.ring.unconsumedResponses();
    if (!ready.ok) throw new Error(`blkfront: ${ready.error}`);
    const out: { id: bigint; status: number; data: Uint8Array }[] = [];
    for (let i = 0; i < ready.value; i++) {
      const v = blkif_response.view(this.ringPage.mem, this.ring.consumeResponse());
      const id = v.get('id');
      out.push({ id, status: v.get('status'), data: this.pages.get(id)?.mem.readBytes(0, PAGE_SIZE) ?? new Uint8Array() });
    }
    return out;
  }
}

/** A netif frontend: two rings, one port, one granted page per slot. */
export class NetFront {
  readonly txPage: GuestPage;
  readonly rxPage: GuestPage;
  readonly port: number;
  readonly tx: FrontRing;
  readonly rx: FrontRing;
  private readonly rxBufs = new Map<number, GuestPage>();
  private readonly txBufs = new Map<number, GuestPage>();
  private nextTxId = 0;
  private partial: Uint8Array[] = [];
  /** Frames received, whole. */
  readonly received: Uint8Array[] = [];
  txDone = 0;
  txErrors = 0;
  /** Called with each frame received (after it is recorded). */
  onFrame: (frame: Uint8Array) => void = () => undefined;

  constructor(readonly g: GuestSide, readonly devid: number) {
    this.txPage = g.grantPage();
    this.rxPage = g.grantPage();
    this.tx = FrontRing.init(this.txPage.mem, 0, TX_GEOMETRY);
    this.rx = FrontRing.init(this.rxPage.mem, 0, RX_GEOMETRY);
    this.port = g.allocPort();
  }

  connect(overrides: Readonly<Record<string, string>> = {}): Promise<void> {
    return this.g.publish('vif', this.devid, {
      'tx-ring-ref': String(this.txPage.ref), 'rx-ring-ref': String(this.rxPage.ref), 'event-channel': String(this.port),
      'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1', ...overrides,
    }, 3);
  }

  /** Post `n` RX buffers (ids 0..n-1 the first time). */
  postRx(n: number): void {
    for (let k = 0; k < n; k++) {
      const addr = this.rx.produceRequest();
      if (addr === undefined) break;
      const id = (this.rx.indices().reqProdPvt - 1) & (RX_GEOMETRY.size - 1);
      let page = this.rxBufs.get(id);
      if (page === undefined) {
        page = this.g.grantPage();
        this.rxBufs.set(id, page);
      }
      const v = netif_rx_request.view(this.rxPage.mem, addr);
      v.set('id', id);
      v.set('gref', page.ref);
    }
    if (this.rx.pushRequests()) this.g.notify(this.port);
  }

  /** Send one frame (up to a page) in one slot. */
  send(frame: Uint8Array): void {
    const id = this.nextTxId++ & (TX_GEOMETRY.size - 1);
    let page = this.txBufs.get(id);
    if (page === undefined) {
      page = this.g.grantPage(true);
      this.txBufs.set(id, page);
    }
    page.mem.writeBytes(0, frame);
    const addr = this.tx.produceRequest();
    if (addr === undefined) throw new Error('netfront: TX ring full');
    const v = netif_tx_request.view(this.txPage.mem, addr);
    v.set('gref', page.ref);
    v.set('offset', 0);
    v.set('flags', 0);
    v.set('id', id);
    v.set('size', frame.length);
    if (this.tx.pushRequests()) this.g.notify(this.port);
  }

  /** Take TX and RX responses; received frames are recorded and their buffers posted again. */
  pump(): void {
    const txReady = this.tx.unconsumedResponses();
    if (txReady.ok) {
      for (let i = 0; i < txReady.value; i++) {
        const status = netif_tx_response.view(this.txPage.mem, this.tx.consumeResponse()).get('status');
        if (status === 0) this.txDone++;
        else this.txErrors++;
      }
    }
    const rxReady = this.rx.unconsumedResponses();
    if (!rxReady.ok || rxReady.value === 0) return;
    const frames: Uint8Array[] = [];
    for (let i = 0; i < rxReady.value; i++) {
      const v = netif_rx_response.view(this.rxPage.mem, this.rx.consumeResponse());
      const status = v.get('status');
      const page = this.rxBufs.get(v.get('id'));
      if (status > 0 && page !== undefined) this.partial.push(page.mem.readBytes(v.get('offset'), status));
      if ((v.get('flags') & NETRXF_more_data) === 0) {
        const len = this.partial.reduce((a, p) => a + p.length, 0);
        const frame = new Uint8Array(len);
        let off = 0;
        for (const p of this.partial) {
          frame.set(p, off);
          off += p.length;
        }
        this.partial = [];
        if (len > 0) frames.push(frame);
      }
    }
    this.postRx(rxReady.value);
    for (const f of frames) {
      this.received.push(f);
      this.onFrame(f);
    }
  }
}

/** What drive() pumps each round. */
export interface Pumped {
  pump(): void;
}

/**
 * Run the machine (never letting simulated time jump), pump every
 * frontend and let promises settle, until `cond` holds.
 */
export async function drive(h: MachineHost, pumped: readonly Pumped[], cond: () => boolean, what: string, rounds = 2000): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < 4; k++) {
      h.m.step(h.m.clock.now());
      for (const p of pumped) p.pump();
    }
    if (cond()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (cond()) return;
  }
  throw new Error(`never saw ${what}`);
}

/** Drive until a promise settles; its value (or its rejection). */
export async function settle<T>(h: MachineHost, pumped: readonly Pumped[], p: Promise<T>, what: string): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  watched.catch(() => undefined);
  await drive(h, pumped, () => done, what);
  return watched;
}

/** The xenbus state name the backend driver holds for a device. */
export function backendState(h: MachineHost, ref: DeviceRef): string | undefined {
  return h.backends.driver.status().find((d) => d.kind === ref.kind && d.frontendDomid === ref.frontendDomid && d.devid === ref.devid)?.state;
}

/** Drive until the backend of `ref` has published `state` (and the driver has written it). */
export async function untilBackend(h: MachineHost, pumped: readonly Pumped[], ref: DeviceRef, state: string): Promise<void> {
  await drive(h, pumped, () => backendState(h, ref) === state, `${ref.kind} d${ref.frontendDomid}/${ref.devid} backend ${state}`);
  await h.backends.driver.settled();
}

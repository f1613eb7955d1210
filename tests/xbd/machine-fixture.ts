/*
 * xbd on a real machine: the netbsd image (with the block side) booted by
 * the real builder on a Machine with a simulated clock, its disk served by
 * the machine host's own dom0 backends (hypervisor/tools/backend): the
 * real blkback over the machine's grant tables and event channels
 * (GNTTABOP_copy, GNTTABOP_map_grant_ref, EVTCHNOP_bind_interdomain, all
 * as dom0), behind dom0's xenbus backend driver. Nothing here stands in
 * for the backend.
 *
 * The disk is added the way `xl create` adds one (the toolstack's
 * DeviceAdder: both directories in one transaction, then the backend's
 * InitWait), once the guest says "xbdtest: ready", so xenbus's device/
 * watch finds it whether or not the kernel configuration had the xbd
 * line at boot.
 *
 * For the hostile tests the backend is instrumented, not replaced: `hold`
 * keeps blkback's poll from running (the work it was asked for is done on
 * release), and `ring()` is the ring page as dom0 mapped it, with dom0's
 * end of the event channel, so the test can answer with garbage itself.
 */
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { domid as toDomId, type DomId, type EvtchnPort, type GrantRef } from '../../hypervisor/public/types.js';
import type { ByteMem } from '../../hypervisor/public/layout.js';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import type { DomainConfig, DiskSpec } from '../../hypervisor/tools/xl/config.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import type { Blkback } from '../../hypervisor/dom0/blkback/blkback.js';
import type { BoundChannel, MappedRing, Outcome } from '../../hypervisor/dom0/backend-host.js';
import { vdevToDevid } from '../../hypervisor/tools/backend/nodes.js';
import { xbdImage, p0 } from './workloads.js';

const MiB = 2 ** 20;
export const image = xbdImage();
export const VDEV = 'xvda';
export const DEVID = vdevToDevid(VDEV) ?? 51712;

export interface DiskWorldOptions {
  readonly workload: string;
  readonly readOnly?: boolean;
  /** Disk size in 512-byte sectors (default 2048: 1 MiB). */
  readonly sectors?: number;
  readonly seed?: number;
}

export class DiskWorld {
  hold = false;
  private pending = false;
  readonly rings: MappedRing[] = [];
  readonly channels: BoundChannel[] = [];

  private constructor(
    readonly t: ExecutionContext,
    readonly h: MachineHost,
    readonly dir: string,
    readonly imagePath: string,
    readonly b: BuiltDomain,
    readonly cfg: DomainConfig,
    readonly opts: DiskWorldOptions,
  ) {}

  static async create(t: ExecutionContext, opts: DiskWorldOptions): Promise<DiskWorld> {
    const h = await MachineHost.create({ machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: opts.seed ?? 7 }, images: [image] });
    const dir = mkdtempSync(join(tmpdir(), 'xbd-'));
    t.teardown(async () => {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const imagePath = join(dir, 'disk.img');
    const sectors = opts.sectors ?? 2048;
    const bytes = new Uint8Array(sectors * 512);
    for (let off = 0; off < bytes.length; off++) bytes[off] = p0(off);
    writeFileSync(imagePath, bytes);
    const cfg: DomainConfig = {
      name: `xbd-${opts.workload}`, kernel: image.name, memory: 16, vcpus: 1, extra: `workload=${opts.workload}`,
      disks: [], vifs: [], onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
    };
    const b = await h.create(cfg);
    const w = new DiskWorld(t, h, dir, imagePath, b, cfg, opts);
    w.instrument();
    await w.until('xbdtest: ready');
    await w.addDisk();
    return w;
  }

  get blkback(): Blkback {
    return this.h.backends.blkback;
  }

  /** Hold blkback's polls while `hold`; remember the rings and channels dom0 makes. */
  private instrument(): void {
    const bb = this.h.backends.blkback;
    const poll = bb.poll.bind(bb);
    bb.poll = (budget?: number): number => {
      if (!this.hold) return poll(budget);
      this.pending = true;
      return 0;
    };
    const host = this.h.backends.host;
    const mapRing = host.mapRing.bind(host);
    host.mapRing = (domid: DomId, ref: GrantRef): Outcome<MappedRing> => {
      const r = mapRing(domid, ref);
      if (r.ok) this.rings.push(r.value);
      return r;
    };
    const bind = host.bindEventChannel.bind(host);
    host.bindEventChannel = (domid: DomId, port: EvtchnPort, onEvent: () => void): Outcome<BoundChannel> => {
      const r = bind(domid, port, onEvent);
      if (r.ok) this.channels.push(r.value);
      return r;
    };
  }

  /** What the toolstack does for `disk = ['file:<image>,xvda,w']` (xl block-attach, in effect). */
  async addDisk(): Promise<void> {
    const disk: DiskSpec = { target: this.imagePath, vdev: VDEV, readOnly: this.opts.readOnly ?? false, format: 'raw' };
    await this.h.backends.attachDevices(this.domid, { ...this.cfg, disks: [disk] });
  }

  get domid(): number {
    return this.b.domid;
  }

  /** The guest's console so far. */
  console(): string {
    return latin1(this.h.consoled.tail(toDomId(this.domid)));
  }

  /** A xenstore node's value (undefined: none). */
  node(path: string): string | undefined {
    const n = lookup(this.h.xenstored.state.root, path);
    return n === undefined ? undefined : latin1(n.value);
  }

  /** Run the machine and the host's promises in turn until `cond` holds. */
  async drive(cond: () => boolean, what: string, rounds = 5_000): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      if (this.h.m.runUntil(cond, 3_000) === 'done') return;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (cond()) return;
    }
    this.t.fail(`never saw ${what}; console:\n${this.console()}`);
    throw new Error(`never saw ${what}`);
  }

  /** Until the console shows `text`. */
  until(text: string | RegExp): Promise<void> {
    const has = (): boolean => (typeof text === 'string' ? this.console().includes(text) : text.test(this.console()));
    return this.drive(has, String(text));
  }

  /** Let blkback poll again (and do what it was kept from). */
  release(): void {
    this.hold = false;
    if (this.pending) {
      this.pending = false;
      this.h.m.defer(() => this.blkback.poll());
    }
  }

  /** The ring page as dom0 mapped it last, and dom0's end of the event channel. */
  ring(): { mem: ByteMem; base: number; notify: () => void } {
    const r = this.rings.at(-1);
    const c = this.channels.at(-1);
    if (r === undefined || c === undefined) throw new Error('no ring mapped yet');
    return { mem: r.mem, base: r.base, notify: () => c.notify() };
  }

  /** Bytes of the host image file. */
  readImage(blkno: number, nblks: number): Uint8Array {
    return Uint8Array.from(readFileSync(this.imagePath).subarray(blkno * 512, (blkno + nblks) * 512));
  }
}

/** "" when equal, else where the first difference is (short failure messages). */
export function firstDiff(got: Uint8Array, want: Uint8Array): string {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `byte ${i}: ${got[i]}, expected ${want[i]}`;
  return '';
}

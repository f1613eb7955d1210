/*
 * End-to-end fixture: a real machine (MachineHost: hypervisor, xenstored,
 * consoles, blkback, netback, the bridge and dom0's address, the xenbus
 * backend driver) on the simulated clock, booting netbsd guests from xl.cfg
 * text with real disk image files and vifs, and helpers to run it, read
 * the guests' workload counters and look at the disk images.
 *
 * `drive` and `runFor` run the machine and the host's event loop in turn,
 * so backend work the machine defers, promise settlements and real host
 * I/O (UDP sockets on 127.0.0.1) interleave as they do in the daemon.
 */
import type { ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import type { KernelImage } from '../../hypervisor/public/cpu.js';
import { MachineHost, type HostOptions } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import { parseConfig, type DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { blk_header, blk_is_zero, blk_verify, BLK_MAGIC, BLK_SECTOR } from '../../sys/workloads/wl_blk_block.js';

export const MiB = 2 ** 20;
export const MS = 1_000_000;

/** A fresh directory, removed when the test ends. */
export function tempDir(t: ExecutionContext, prefix = 'xenport-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A zero-filled raw disk image of `mib` MiB in `dir`. */
export function diskImage(dir: string, mib: number, name = 'disk.img'): string {
  const path = join(dir, name);
  writeFileSync(path, new Uint8Array(mib * MiB));
  return path;
}

/** A UDP port on 127.0.0.1 that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A machine on the simulated clock, closed when the test ends. */
export async function e2eHost(t: ExecutionContext, images: readonly KernelImage[] = [netbsdImage], over: Partial<HostOptions> = {}): Promise<MachineHost> {
  const h = await MachineHost.create({
    machine: { memoryBytes: 256 * MiB, clock: 'simulated', scrambleSeed: 11 }, images, ...over,
  });
  t.teardown(() => h.close());
  return h;
}

export interface GuestOptions {
  readonly name: string;
  readonly extra: string;
  readonly memory?: number;
  readonly kernel?: string;
  /** xl.cfg disk specs, e.g. `file:/tmp/x/disk.img,xvda,w`. */
  readonly disks?: readonly string[];
  /** xl.cfg vif specs, e.g. `mac=00:16:3e:00:00:02,ip=10.0.0.2,bridge=xenbr0`. */
  readonly vifs?: readonly string[];
}

/** The xl.cfg text of a guest. */
export function cfgText(o: GuestOptions): string {
  const list = (xs: readonly string[]): string => `[ ${xs.map((x) => `'${x}'`).join(', ')} ]`;
  return [
    `name = "${o.name}"`, `kernel = "${o.kernel ?? 'netbsd'}"`, `memory = ${o.memory ?? 48}`, `extra = "${o.extra}"`,
    `on_poweroff = "preserve"`, `on_crash = "preserve"`,
    ...(o.disks === undefined ? [] : [`disk = ${list(o.disks)}`]),
    ...(o.vifs === undefined ? [] : [`vif = ${list(o.vifs)}`]),
    '',
  ].join('\n');
}

export function guestConfig(o: GuestOptions): DomainConfig {
  return parseConfig(cfgText(o), `${o.name}.cfg`);
}

/** A node's value straight from xenstored's state (undefined: no such node). */
export function node(h: MachineHost, path: string): string | undefined {
  const n = lookup(h.xenstored.state.root, path);
  return n === undefined ? undefined : latin1(n.value);
}

export function consoleText(h: MachineHost, domid: number): string {
  return latin1(h.consoled.tail(toDomId(domid)));
}

/** A workload counter as published in xenstore (NaN: not there yet). */
export function counter(h: MachineHost, domid: number, wl: string, name: string): number {
  const v = node(h, `/local/domain/${domid}/data/workload/${wl}/${name}`);
  return v === undefined ? NaN : Number(v);
}

export function counters(h: MachineHost, domid: number, wl: string, names: readonly string[]): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, counter(h, domid, wl, n)]));
}

export function wlStatus(h: MachineHost, domid: number, wl: string): string | undefined {
  return node(h, `/local/domain/${domid}/data/workload/${wl}/status`);
}

/** Let promises settle and I/O callbacks run once. */
export function turn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Guest time run between two turns of the event loop. dom0's backend
 * driver works through promises (its xenstore client), so the machine must
 * not run far ahead of it: on the simulated clock an idle guest would jump
 * seconds ahead before a handshake step got its turn.
 */
export const SLICE_NS = 5 * MS;

/** Run the machine and the event loop in turn until `cond` holds; fail the test (with the guests' consoles) if it never does. */
export async function drive(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, maxNs = 120_000 * MS): Promise<void> {
  const end = h.m.clock.now() + maxNs;
  for (let i = 0; i < 1_000_000 && !cond() && h.m.clock.now() < end; i++) {
    const until = Math.min(end, h.m.clock.now() + SLICE_NS);
    h.m.runUntil(() => cond() || h.m.clock.now() >= until, 100_000);
    await turn();
  }
  if (cond()) return;
  const consoles = h.domainRecords.map((r) => `--- d${r.built.domid} (${r.name}):\n${consoleText(h, r.built.domid).slice(-2500)}`);
  t.fail(`never saw ${what} within ${maxNs / MS} ms of guest time\n${consoles.join('\n')}`);
  throw new Error(`never saw ${what}`);
}

/** Run the machine for `ns` of system time, letting the event loop run along. */
export async function runFor(h: MachineHost, ns: number): Promise<void> {
  const end = h.m.clock.now() + ns;
  for (let i = 0; i < 1_000_000 && h.m.clock.now() < end; i++) {
    h.m.runUntil(Math.min(end, h.m.clock.now() + SLICE_NS), 100_000);
    await turn();
  }
}

/** Create a domain and wait until its kernel says it booted. */
export async function boot(t: ExecutionContext, h: MachineHost, cfg: DomainConfig): Promise<BuiltDomain> {
  const b = await h.create(cfg);
  await drive(t, h, () => node(h, `/local/domain/${b.domid}/data/boot`) === 'complete', `d${b.domid} data/boot = complete`);
  return b;
}

/** Wait until a workload counter reaches `atLeast`. */
export async function waitCounter(t: ExecutionContext, h: MachineHost, domid: number, wl: string, name: string, atLeast: number): Promise<void> {
  await drive(t, h, () => counter(h, domid, wl, name) >= atLeast, `d${domid} data/workload/${wl}/${name} >= ${atLeast}`);
}

/** What the blk workload left in a disk image: each block slot checked on the host. */
export interface DiskScan {
  readonly blocks: number;
  /** Slots holding a block that checks (right sector, checksum, payload). */
  readonly good: number;
  readonly zero: number;
  /** Slots holding anything else, with why. */
  readonly bad: readonly string[];
  readonly maxSeq: number;
  readonly seeds: ReadonlySet<number>;
}

/** Read a disk image and check every `sectors`-sector slot the blk workload may have written. */
export function scanDisk(path: string, sectors = 8, blocks?: number): DiskScan {
  const img = new Uint8Array(readFileSync(path));
  const size = sectors * BLK_SECTOR;
  const n = blocks ?? Math.floor(img.length / size);
  let good = 0;
  let zero = 0;
  let maxSeq = 0;
  const bad: string[] = [];
  const seeds = new Set<number>();
  for (let i = 0; i < n; i++) {
    const off = i * size;
    if (blk_is_zero(img, off, size)) {
      zero++;
      continue;
    }
    const hd = blk_header(img, off);
    const why = hd.magic === BLK_MAGIC ? blk_verify(img, off, size, hd.seed, hd.seq, off / BLK_SECTOR) : 'no block header';
    if (why !== '') {
      bad.push(`slot ${i}: ${why}`);
      continue;
    }
    good++;
    seeds.add(hd.seed);
    maxSeq = Math.max(maxSeq, hd.seq);
  }
  return { blocks: n, good, zero, bad, maxSeq, seeds };
}

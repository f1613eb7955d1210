/*
 * Shared set-up for the save/restore tests: machines (simulated clock,
 * seeded frame allocator), memtest guests, and host-side readers of a
 * guest's mailbox found through its own P2M (as `xl p2m` would).
 */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Machine } from '../../hypervisor/xen/machine.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import type { TestKernel } from '../kernels/image.js';
import { saveDomain, waitForSuspend, type BenchGuestFactory, type SaveOptions, type SaveResult } from '../../hypervisor/tools/save/index.js';
import { ALL_MEMTEST_KERNELS, A_SUSPEND, V_ENTRIES, memtestKernel } from './kernels/memtest.js';
import { buildGuest, type BuiltGuest, type GuestOptions } from './builder.js';

export const MiB = 2 ** 20;

import { assertValidImage } from '../helpers/verify-image.js';

const VERIFY_TOOL = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
const VERIFY_PYTHONPATH = process.env['XEN_PYTHONPATH'] ?? '/usr/lib/xen-4.17/lib/python';

/**
 * Xen's own verify-stream-v2 on an image file: its exit status and output.
 * Missing tool: status null and a message saying so (the tests fail, not skip).
 */
export function verifyStream(file: string): { status: number | null; out: string } {
  if (!existsSync(VERIFY_TOOL)) return { status: null, out: `${VERIFY_TOOL} is missing: install xen-utils-4.17 or set XEN_VERIFY_STREAM` };
  const r = spawnSync(VERIFY_TOOL, ['-v', '-f', 'xl', '-i', file], { env: { ...process.env, PYTHONPATH: VERIFY_PYTHONPATH }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

export interface MachineSpec {
  readonly seed: number;
  readonly tscKhz?: number;
  readonly memoryMiB?: number;
}

export function machine(spec: MachineSpec): Machine {
  const m = new Machine({
    memoryBytes: (spec.memoryMiB ?? 32) * MiB,
    clock: 'simulated',
    scrambleSeed: spec.seed,
    tscKhz: spec.tscKhz ?? 2_000_000,
  });
  for (const k of ALL_MEMTEST_KERNELS) m.registerImage(k);
  return m;
}

/** Build a memtest guest and (unless paused) run it until it has published its P2M. */
export function guest(m: Machine, img: TestKernel = memtestKernel, o: GuestOptions = {}): BuiltGuest {
  const g = buildGuest(m, img, o);
  if (o.paused !== true) runUntilPublished(m, g.domid);
  return g;
}

/** Run until the guest's shared_info names its P2M frame list (after boot or a restore). */
export function runUntilPublished(m: Machine, domid: number, budget = 100_000): void {
  const sh = m.domain(domid)!.sharedInfo;
  const at = shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list');
  if (m.runUntil(() => sh.getBigUint64(at, true) !== 0n, budget) !== 'done') throw new Error(`guest ${domid} never published its P2M`);
}

/** Unpause a restored guest and let it take up its loop again. */
export function startRestored(m: Machine, domid: number): void {
  if (m.xc.unpauseDomain(domid) !== 0) throw new Error(`cannot unpause ${domid}`);
  runUntilPublished(m, domid);
}

/** MFN of the guest's pfn 0 (its mailbox), found in the M2P (works whatever the guest did to its P2M). */
export function mailboxMfn(m: Machine, domid: number): number {
  const f = m.frames;
  for (let mfn = 0; mfn < f.nrFrames; mfn++) if (f.owner[mfn] === domid && f.m2p[mfn] === 0) return mfn;
  throw new Error(`domain ${domid} has no pfn 0`);
}

export function readVar(m: Machine, domid: number, i: number, mbox = mailboxMfn(m, domid)): number {
  return Number(m.memory.readU64(mbox, 0x400 + 8 * i));
}

export function vars<K extends string>(m: Machine, domid: number, names: Readonly<Record<K, number>>): Record<K, number> {
  const mbox = mailboxMfn(m, domid);
  const out = {} as Record<K, number>;
  for (const k of Object.keys(names) as K[]) out[k] = readVar(m, domid, names[k], mbox);
  return out;
}

/** The test's "control/shutdown = suspend": a flag in the guest's mailbox. */
export function askSuspend(m: Machine, domid: number): void {
  const f = m.xc.foreignFrame(domid, mailboxMfn(m, domid), true);
  if (typeof f === 'number') throw new Error(`mailbox of ${domid}: ${f}`);
  const one = new Uint8Array(8);
  one[0] = 1;
  if (f.write(8 * A_SUSPEND, one) !== 0) throw new Error('cannot write the suspend request');
}

/** The save/restore benchmark's guest: a memtest kernel of the asked size, brought to SHUTDOWN_suspend. */
export const memtestBenchGuest: BenchGuestFactory = {
  images: ALL_MEMTEST_KERNELS,
  async suspended(m, pages) {
    const g = guest(m, memtestKernel, { pages, patternPages: 64 });
    askSuspend(m, g.domid);
    await waitForSuspend(m, g.domid, 1e9);
    return g.domid;
  },
};

/** Run until the guest has made `n` more loop entries. */
export function runEntries(t: ExecutionContext, m: Machine, domid: number, n: number): void {
  const mbox = mailboxMfn(m, domid);
  const target = readVar(m, domid, V_ENTRIES, mbox) + n;
  const r = m.runUntil(() => readVar(m, domid, V_ENTRIES, mbox) >= target, 10_000_000);
  if (r !== 'done') t.fail(`domain ${domid} stopped (${r}) before ${n} more entries`);
}

export function freePages(m: Machine): number {
  const p = m.xc.physinfo();
  if (typeof p === 'number') throw new Error(`physinfo: ${p}`);
  return p.freePages;
}

/** Bytes of an image, collected from the save's sink. */
export class Collector {
  readonly chunks: Uint8Array[] = [];
  readonly sink = (c: Uint8Array): void => {
    this.chunks.push(c.slice());
  };
  /** A plain Uint8Array (a Buffer's slice() would share memory). */
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.chunks));
  }
}

/** Ask, wait, save to memory. */
export async function suspendAndSave(m: Machine, domid: number, opts: SaveOptions = {}): Promise<{ image: Uint8Array; result: SaveResult }> {
  askSuspend(m, domid);
  await waitForSuspend(m, domid, 1e9);
  const c = new Collector();
  const result = await saveDomain(m, domid, c.sink, { config: `name = "g${domid}"\nkernel = "memtest"\nmemory = 1\n`, ...opts });
  const image = c.bytes();
  await assertValidImage(image, `image of d${domid}`, opts.format ?? 'xl');
  return { image, result };
}

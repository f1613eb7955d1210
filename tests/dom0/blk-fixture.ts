// A blkback under test: a temp image file, the loopback host (buffer
// grants, counted notifications), a Blkback with one vbd, and a frontend
// (FrontRing over a granted page). Nothing here sleeps; the "machine" is
// the test calling poll/drain.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Blkback } from '../../hypervisor/dom0/blkback/blkback.js';
import type { Vbd } from '../../hypervisor/dom0/blkback/vbd.js';
import { LoopbackFront, LoopbackHost } from '../../hypervisor/dom0/blkback/loopback.js';
import type { BlkResponse, RequestFields, Segment } from '../../hypervisor/dom0/blkback/wire.js';
import { domid } from '../../hypervisor/public/types.js';

export const SECTOR = 512;
export const PAGE = 4096;
export const FRONT = domid(3);
export const XVDA = 51712;

/** A temp directory under os.tmpdir(), removed when the test ends. */
export function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-blk-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Byte `i` of sector `s` of an image made by makeImage. */
export const imageByte = (s: number, i: number): number => (s * 7 + i) & 0xff;

/** A raw image of `sectors` sectors whose bytes follow imageByte. */
export function makeImage(dir: string, sectors: number, name = 'disk.img'): string {
  const p = path.join(dir, name);
  const b = new Uint8Array(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) for (let i = 0; i < SECTOR; i++) b[s * SECTOR + i] = imageByte(s, i);
  fs.writeFileSync(p, b);
  return p;
}

/** Bytes [sector, sector+count) of a file, read independently of the backend. */
export function fileSectors(p: string, sector: number, count: number): Uint8Array {
  const fd = fs.openSync(p, 'r');
  try {
    const b = new Uint8Array(count * SECTOR);
    fs.readSync(fd, b, 0, b.length, sector * SECTOR);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

export interface Rig {
  image: string;
  host: LoopbackHost;
  bb: Blkback;
  vbd: Vbd;
  front: LoopbackFront;
  /** Times the backend asked to be polled. */
  schedules: number;
  /** Vbds that failed by themselves. */
  failures: Vbd[];
}

export interface RigOptions {
  sectors?: number;
  readOnly?: boolean;
  domid?: number;
  devid?: number;
  startIndex?: number;
  /** The frontend's port (default 5); two vbds of one domain need two. */
  port?: number;
  /** Put the vbd into an existing rig's host and Blkback (a second device). */
  share?: Rig;
  connect?: boolean;
}

export function rig(t: ExecutionContext, opts: RigOptions = {}): Rig {
  const dir = tempDir(t);
  const image = makeImage(dir, opts.sectors ?? 64);
  const share = opts.share;
  const r = { schedules: 0, failures: [] as Vbd[] } as Rig;
  const host = share?.host ?? new LoopbackHost();
  const bb = share?.bb ?? new Blkback({
    host,
    schedule: () => { r.schedules++; },
    onStateChange: (v) => { r.failures.push(v); },
  });
  const dom = opts.domid === undefined ? FRONT : domid(opts.domid);
  const devid = opts.devid ?? XVDA;
  const created = bb.create({ frontendDomid: dom, devid, target: image, readOnly: opts.readOnly ?? false });
  if (!created.ok) throw new Error(`rig: ${created.error.message}`);
  const front = new LoopbackFront(host, dom, {
    ...(opts.startIndex === undefined ? {} : { startIndex: opts.startIndex }),
    ...(opts.port === undefined ? {} : { port: opts.port }),
  });
  Object.assign(r, { image, host, bb, vbd: created.value, front });
  if (opts.connect ?? true) {
    const c = created.value.connect(front.connectParams());
    if (!c.ok) throw new Error(`rig connect: ${c.error}`);
  }
  return r;
}

/** `n` fresh data pages of the frontend as whole-page segments, filled by `fill(page, byteIndex)`. */
export function pages(front: LoopbackFront, n: number, fill: (p: number, i: number) => number = () => 0,
  opts: { readOnly?: boolean } = {}): { segments: Segment[]; bufs: Uint8Array[] } {
  const segments: Segment[] = [];
  const bufs: Uint8Array[] = [];
  for (let p = 0; p < n; p++) {
    const d = front.dataPage(opts);
    for (let i = 0; i < PAGE; i++) d.page[i] = fill(p, i) & 0xff;
    segments.push({ gref: d.gref, firstSect: 0, lastSect: 7 });
    bufs.push(d.page);
  }
  return { segments, bufs };
}

/** Queue every request, push, let the backend drain, and collect the responses. */
export function exchange(r: Rig, reqs: readonly RequestFields[]): BlkResponse[] {
  for (const q of reqs) if (!r.front.queue(q)) throw new Error('exchange: ring full');
  r.front.push();
  r.bb.drain();
  return r.front.responses();
}

/** A seeded PRNG (mulberry32): same seed, same run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Concatenate byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

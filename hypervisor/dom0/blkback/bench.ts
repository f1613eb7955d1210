/*
 * blkback throughput: MB/s and IOPS through the ring (loopback frontend,
 * buffer grants, the real request engine and a temp image file) against
 * raw host file I/O of the same pattern, measured in the same run.
 *
 * Pattern, per request size: sequential requests over the image, writes
 * first, then reads of the same range; the ring keeps up to a ring's worth
 * (32) of requests queued, each request `size / 4096` whole-page segments.
 * The raw side does one pwrite/pread of `size` bytes per request at the
 * same offsets. Neither side fsyncs: this measures the data path, not the
 * host disk. A short unmeasured warm-up runs first for each size. Prints
 * nothing; `make bench` formats the numbers.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RING_SIZE, BLKIF_RSP_OKAY, BLKIF_MAX_SEGMENTS_PER_REQUEST } from '../../public/io/blkif.js';
import { PAGE_SIZE, domid } from '../../public/types.js';
import { Blkback } from './blkback.js';
import { LoopbackFront, LoopbackHost } from './loopback.js';
import { SECTOR_SIZE } from './disk.js';
import { SECTORS_PER_PAGE, type Segment } from './wire.js';

export interface Rate {
  readonly seconds: number;
  readonly mbPerSec: number;
  readonly iops: number;
}

export interface BlkBenchCase {
  readonly op: 'read' | 'write';
  readonly requestBytes: number;
  readonly requests: number;
  readonly ring: Rate;
  readonly raw: Rate;
  /** ring MB/s as a fraction of raw MB/s. */
  readonly ratio: number;
}

export interface BlkBenchResult {
  readonly imageBytes: number;
  readonly queueDepth: number;
  readonly cases: readonly BlkBenchCase[];
}

export interface BlkBenchOptions {
  /** Image size, and bytes moved per case (default 16 MiB). */
  readonly imageBytes?: number;
  /** Request sizes in bytes, whole pages up to 11 (default 4 KiB and 44 KiB). */
  readonly requestSizes?: readonly number[];
}

const FRONT_DOMID = domid(1);
const MB = 1e6;
const WARMUP_BYTES = 2 * 1024 * 1024;

const now = (): bigint => process.hrtime.bigint();
const rate = (ns: bigint, requests: number, bytes: number): Rate => {
  const seconds = Math.max(Number(ns) / 1e9, 1e-9);
  return { seconds, mbPerSec: bytes / MB / seconds, iops: requests / seconds };
};

export function benchBlkback(opts: BlkBenchOptions = {}): BlkBenchResult {
  const imageBytes = opts.imageBytes ?? 16 * 1024 * 1024;
  const sizes = opts.requestSizes ?? [PAGE_SIZE, BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE];
  for (const s of sizes) {
    if (!(s % PAGE_SIZE === 0 && s >= PAGE_SIZE && s <= BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE && s <= imageBytes))
      throw new RangeError(`bench request size ${s}: whole pages, 1..${BLKIF_MAX_SEGMENTS_PER_REQUEST}, within the image`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-blkbench-'));
  try {
    const image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, new Uint8Array(imageBytes));
    const cases: BlkBenchCase[] = [];
    for (const size of sizes) {
      // Warm the JIT and the page cache on both paths; not measured.
      const warm = Math.max(1, Math.floor(Math.min(imageBytes, WARMUP_BYTES) / size));
      ringRun(image, size, warm, 'write');
      rawRun(image, size, warm, 'read');
      const requests = Math.floor(imageBytes / size);
      const ringW = ringRun(image, size, requests, 'write');
      const rawW = rawRun(image, size, requests, 'write');
      const ringR = ringRun(image, size, requests, 'read');
      const rawR = rawRun(image, size, requests, 'read');
      cases.push(mkCase('write', size, requests, ringW, rawW), mkCase('read', size, requests, ringR, rawR));
    }
    return { imageBytes, queueDepth: BLKIF_RING_SIZE, cases };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function mkCase(op: 'read' | 'write', size: number, requests: number, ring: Rate, raw: Rate): BlkBenchCase {
  return { op, requestBytes: size, requests, ring, raw, ratio: ring.mbPerSec / raw.mbPerSec };
}

function ringRun(image: string, size: number, requests: number, op: 'read' | 'write'): Rate {
  const host = new LoopbackHost();
  const bb = new Blkback({ host });
  const created = bb.create({ frontendDomid: FRONT_DOMID, devid: 51712, target: image, readOnly: false });
  if (!created.ok) throw new Error(`bench: ${created.error.message}`);
  const vbd = created.value;
  const front = new LoopbackFront(host, FRONT_DOMID);
  const up = vbd.connect(front.connectParams());
  if (!up.ok) throw new Error(`bench: connect: ${up.error}`);
  const pages = size / PAGE_SIZE;
  // One set of data pages per ring slot, granted once.
  const slots: Segment[][] = [];
  for (let i = 0; i < BLKIF_RING_SIZE; i++) {
    const segs: Segment[] = [];
    for (let j = 0; j < pages; j++) {
      const p = front.dataPage();
      p.page.fill((i * 13 + j) & 0xff);
      segs.push({ gref: p.gref, firstSect: 0, lastSect: SECTORS_PER_PAGE - 1 });
    }
    slots.push(segs);
  }
  const operation = op === 'read' ? BLKIF_OP_READ : BLKIF_OP_WRITE;
  const sectorsPerRequest = size / SECTOR_SIZE;
  const t0 = now();
  let sent = 0;
  let answered = 0;
  while (answered < requests) {
    while (sent < requests && sent - answered < BLKIF_RING_SIZE) {
      const segments = slots[sent % BLKIF_RING_SIZE]!;
      front.queue({ operation, id: BigInt(sent), sector: sent * sectorsPerRequest, segments });
      sent++;
    }
    front.push();
    bb.drain();
    const got = front.responses();
    if (got.length === 0) throw new Error(`bench: no progress after ${answered} of ${requests} requests`);
    for (const r of got) {
      if (r.status !== BLKIF_RSP_OKAY) throw new Error(`bench: request ${r.id} answered ${r.status}`);
      answered++;
    }
  }
  const t1 = now();
  bb.destroy(FRONT_DOMID, 51712);
  return rate(t1 - t0, requests, requests * size);
}

function rawRun(image: string, size: number, requests: number, op: 'read' | 'write'): Rate {
  const fd = fs.openSync(image, op === 'read' ? 'r' : 'r+');
  try {
    const buf = new Uint8Array(size).fill(0x5a);
    const t0 = now();
    for (let i = 0; i < requests; i++) {
      if (op === 'read') fs.readSync(fd, buf, 0, size, i * size);
      else fs.writeSync(fd, buf, 0, size, i * size);
    }
    return rate(now() - t0, requests, requests * size);
  } finally {
    fs.closeSync(fd);
  }
}

/*
 * Save and restore throughput, for bench/ and for anyone curious: for each
 * guest size, save a suspended guest to a file and restore it into a fresh
 * machine, and in the same run write and read the same number of bytes to
 * and from a plain file of the same kind (Node streams, same chunking
 * policy, no fsync on either side), so the ratio says what the toolstack
 * costs over the disk. Numbers are returned, nothing is printed.
 *
 * The guest comes from the caller (this module never imports guest code):
 * a factory that builds one on a machine and brings it to SHUTDOWN_suspend.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import type { KernelImage } from '../../public/cpu.js';
import { Machine } from '../../xen/machine.js';
import { saveDomain } from './save.js';
import { restoreDomain } from './restore.js';

export interface BenchGuestFactory {
  /** The kernel images the guest needs (registered on both machines). */
  readonly images: readonly KernelImage[];
  /** Build a guest of `pages` pages on `m` and bring it to SHUTDOWN_suspend; its domid. */
  suspended(m: Machine, pages: number): Promise<number>;
}

export interface SaveBenchOptions {
  /** Guest sizes (default 64, 256 and 1024 MiB). */
  readonly sizesMiB?: readonly number[];
  /** Where the files go (default: a fresh mkdtemp directory, removed afterwards). */
  readonly dir?: string;
  /**
   * Called with each saved image file after its round is timed and before
   * the file is removed (tests hand it to the stream checkers). Outside
   * every measurement.
   */
  readonly onImage?: (file: string, guestMiB: number) => Promise<void> | void;
}

export interface SaveBenchRow {
  readonly guestMiB: number;
  /** Bytes of the image (and of the raw file). */
  readonly bytes: number;
  readonly saveMs: number;
  readonly restoreMs: number;
  readonly rawWriteMs: number;
  readonly rawReadMs: number;
  /** MiB of image per second. */
  readonly saveMiBps: number;
  readonly restoreMiBps: number;
  readonly rawWriteMiBps: number;
  readonly rawReadMiBps: number;
}

const MiB = 2 ** 20;
/** Machine memory beyond the guest: dom0, the domain's own frames, slack. */
const MACHINE_SLACK_MIB = 32;
const RAW_CHUNK = 4 * MiB;

function finished(w: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.end(() => resolve());
  });
}

async function rawWrite(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  const chunk = new Uint8Array(RAW_CHUNK);
  for (let i = 0; i < chunk.length; i += 4096) chunk[i] = i & 0xff;
  for (let left = bytes; left > 0; left -= RAW_CHUNK) {
    // A fresh chunk each time, as the saver hands out fresh records.
    const c = chunk.slice(0, Math.min(RAW_CHUNK, left));
    if (!out.write(c)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await finished(out);
}

async function rawRead(file: string): Promise<number> {
  let n = 0;
  for await (const c of createReadStream(file)) n += (c as Uint8Array).length;
  return n;
}

function machineFor(guestMiB: number, images: readonly KernelImage[], seed: number, tscKhz: number): Machine {
  const m = new Machine({ memoryBytes: (guestMiB + MACHINE_SLACK_MIB) * MiB, clock: 'simulated', scrambleSeed: seed, tscKhz });
  for (const img of images) m.registerImage(img);
  return m;
}

export async function benchSaveRestore(guest: BenchGuestFactory, opts: SaveBenchOptions = {}): Promise<SaveBenchRow[]> {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'xenport-save-bench-'));
  const rows: SaveBenchRow[] = [];
  try {
    for (const guestMiB of opts.sizesMiB ?? [64, 256, 1024]) {
      const image = path.join(dir, `guest-${guestMiB}.img`);
      const raw = path.join(dir, `raw-${guestMiB}.bin`);
      let bytes: number;
      let saveMs: number;
      {
        const a = machineFor(guestMiB, guest.images, 101, 2_000_000);
        const domid = await guest.suspended(a, (guestMiB * MiB) / 4096);
        const out = createWriteStream(image);
        const t0 = performance.now();
        await saveDomain(a, domid, out);
        await finished(out);
        saveMs = performance.now() - t0;
        bytes = statSync(image).size;
      }
      const t1 = performance.now();
      await rawWrite(raw, bytes);
      const rawWriteMs = performance.now() - t1;

      const b = machineFor(guestMiB, guest.images, 202, 3_000_000);
      const t2 = performance.now();
      const r = await restoreDomain(b, createReadStream(image));
      const restoreMs = performance.now() - t2;
      b.xc.destroyDomain(r.domid);
      const t3 = performance.now();
      await rawRead(raw);
      const rawReadMs = performance.now() - t3;
      await opts.onImage?.(image, guestMiB);

      const rate = (ms: number): number => bytes / MiB / (ms / 1000);
      rows.push({
        guestMiB, bytes, saveMs, restoreMs, rawWriteMs, rawReadMs,
        saveMiBps: rate(saveMs), restoreMiBps: rate(restoreMs), rawWriteMiBps: rate(rawWriteMs), rawReadMiBps: rate(rawReadMs),
      });
      rmSync(image, { force: true });
      rmSync(raw, { force: true });
    }
  } finally {
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

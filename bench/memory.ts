/*
 * Guest memory accessor throughput: bytes moved through a vCPU's MMU
 * (GuestVaMem: TLB, page walk, machine memory's write path) compared with
 * a plain TypedArray doing the same copy of the same bytes in the same run.
 */
import { Machine } from '../hypervisor/xen/machine.js';
import { spinKernel } from '../tests/kernels/basic.js';
import { build } from '../tests/xen/builder.js';

export interface MemBenchLine {
  readonly what: string;
  readonly mbPerSec: number;
  readonly baselineMbPerSec: number;
  /** baseline / MMU: how many times slower the MMU path is. */
  readonly slowdown: number;
}

const PAGES = 4096; // 16 MiB of guest RAM
const CHUNK = 4096;

function rate(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (Math.max(ms, 1e-3) / 1000);
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function benchGuestMemory(rounds = 8): MemBenchLine[] {
  const m = new Machine({ memoryBytes: 64 * 1024 * 1024 });
  const b = build(m, spinKernel, { pages: PAGES, paused: true });
  const v = b.d.vcpus[0]!;
  const mem = m.cpus.get(v)!.mem;
  // The region: guest RAM after the mailbox, as the kernel sees it.
  const base = b.virtBase + 16 * 4096;
  const size = (PAGES - 32) * 4096;
  const plain = new Uint8Array(size);
  const plainView = new DataView(plain.buffer);
  const chunk = new Uint8Array(CHUNK).fill(0x5a);
  const total = size * rounds;
  const out: MemBenchLine[] = [];
  const line = (what: string, mmuMs: number, baseMs: number): void => {
    const mbPerSec = rate(total, mmuMs);
    const baselineMbPerSec = rate(total, baseMs);
    out.push({ what, mbPerSec, baselineMbPerSec, slowdown: baselineMbPerSec / mbPerSec });
  };
  // Warm both paths (JIT, TLB) before timing.
  for (let off = 0; off < size; off += CHUNK) mem.writeBytes(base + off, chunk);

  const writeMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let off = 0; off < size; off += CHUNK) mem.writeBytes(base + off, chunk);
  });
  const writeBase = time(() => {
    for (let r = 0; r < rounds; r++) for (let off = 0; off < size; off += CHUNK) plain.set(chunk, off);
  });
  line('write 4 KiB blocks', writeMs, writeBase);

  let sink = 0;
  const readMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let off = 0; off < size; off += CHUNK) sink += mem.readBytes(base + off, CHUNK)[0]!;
  });
  const readBase = time(() => {
    for (let r = 0; r < rounds; r++) for (let off = 0; off < size; off += CHUNK) sink += plain.slice(off, off + CHUNK)[0]!;
  });
  line('read 4 KiB blocks', readMs, readBase);

  const words = Math.floor(size / 4);
  const wordRounds = Math.max(1, rounds / 4);
  const wordTotal = words * 4 * wordRounds;
  const wordsLine = (what: string, mmuMs: number, baseMs: number): void => {
    const mbPerSec = rate(wordTotal, mmuMs);
    const baselineMbPerSec = rate(wordTotal, baseMs);
    out.push({ what, mbPerSec, baselineMbPerSec, slowdown: baselineMbPerSec / mbPerSec });
  };
  const wWords = time(() => {
    for (let r = 0; r < wordRounds; r++) for (let i = 0; i < words; i++) mem.setUint32(base + 4 * i, i, true);
  });
  const wWordsBase = time(() => {
    for (let r = 0; r < wordRounds; r++) for (let i = 0; i < words; i++) plainView.setUint32(4 * i, i, true);
  });
  wordsLine('write 32-bit words', wWords, wWordsBase);
  const rWords = time(() => {
    for (let r = 0; r < wordRounds; r++) for (let i = 0; i < words; i++) sink += mem.getUint32(base + 4 * i, true);
  });
  const rWordsBase = time(() => {
    for (let r = 0; r < wordRounds; r++) for (let i = 0; i < words; i++) sink += plainView.getUint32(4 * i, true);
  });
  wordsLine('read 32-bit words', rWords, rWordsBase);
  if (sink === -1) console.log(sink);
  return out;
}

/*
 * MMU micro-benchmark: guest memory throughput through GuestVaMem (software
 * TLB, page walks on misses, machine memory's write path) against a plain
 * DataView/Uint8Array over the same number of bytes, in the same run, so
 * the ratio means something on any machine.
 *
 * The guest maps `mib` MiB of scattered frames at one virtual range; with
 * the default 16 MiB that is four times the TLB's reach, so a sequential
 * sweep misses once per page, as a kernel sweeping its heap would.
 */
import { _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../public/arch-x86_64.js';
import { PAGE_SIZE } from '../public/types.js';
import { FrameTable } from './frametable.js';
import { MachineMemory } from './physmem.js';
import { DomainMemory, createMmEnv, pinTable, setBaseptr, enableLogDirty, disableLogDirty, type MmEnv } from './mm.js';
import { GuestVaMem } from './mm-vamem.js';
import { pteMfn } from './mm-validate.js';

export interface MmuBenchResult {
  /** Bytes swept per measurement. */
  readonly bytes: number;
  /** 32-bit loads/stores through GuestVaMem, MB/s. */
  readonly readMBps: number;
  readonly writeMBps: number;
  /** The same sweeps over a plain DataView, MB/s. */
  readonly plainReadMBps: number;
  readonly plainWriteMBps: number;
  /** readBytes/writeBytes in 4 KiB pieces vs Uint8Array copies, MB/s. */
  readonly bulkReadMBps: number;
  readonly bulkWriteMBps: number;
  readonly plainBulkMBps: number;
  /** 32-bit stores with log-dirty tracking on, MB/s. */
  readonly logDirtyWriteMBps: number;
  /** Loads at random addresses (mostly TLB misses: 4-level walks), millions/s. */
  readonly randomReadMops: number;
  /** The same random loads from a plain DataView, millions/s. */
  readonly plainRandomReadMops: number;
  /** GuestVaMem speed as a fraction of the plain DataView's. */
  readonly readRatio: number;
  readonly writeRatio: number;
}

const VA_BASE = 0x4000_0000;
const FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED;

function buildGuest(env: MmEnv, pages: number): GuestVaMem {
  const dm = new DomainMemory(1, pages + pages / 256 + 16);
  const data = dm.allocPages(env, pages);
  if (data === undefined) throw new Error('bench: machine too small');
  data.forEach((mfn, pfn) => dm.setM2p(env, mfn, pfn));
  const m = env.memory;
  const one = (): number => dm.allocPages(env, 1)![0]!;
  const l4 = one();
  const child = (table: number, idx: number): number => {
    const lo = m.readU64Lo(table, idx * 8);
    if ((lo & _PAGE_PRESENT) !== 0) return pteMfn(lo, m.lastHigh);
    const t = one();
    m.writeU64(table, idx * 8, (BigInt(t) << 12n) | BigInt(FLAGS));
    return t;
  };
  data.forEach((mfn, i) => {
    const va = VA_BASE + i * PAGE_SIZE;
    const idx = (shift: number): number => Math.floor(va / 2 ** shift) % 512;
    const l1 = child(child(child(l4, idx(39)), idx(30)), idx(21));
    m.writeU64(l1, idx(12) * 8, (BigInt(mfn) << 12n) | BigInt(FLAGS));
  });
  if (pinTable(env, 1, l4, 4) !== 0) throw new Error('bench: pin failed');
  const vm = dm.vcpu(0);
  if (setBaseptr(env, vm, l4) !== 0) throw new Error('bench: baseptr failed');
  return new GuestVaMem(env, vm);
}

function mbps(bytes: number, ms: number): number {
  return Math.round((bytes / (1024 * 1024)) / (Math.max(ms, 1e-3) / 1000));
}

function mops(ops: number, ms: number): number {
  return Math.round(ops / Math.max(ms, 1e-3) / 100) / 10;
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Run the benchmark over `mib` MiB, `rounds` sweeps per measurement. */
export function benchMmu(mib = 16, rounds = 4): MmuBenchResult {
  const memory = new MachineMemory((mib + 16) * 1024 * 1024);
  const frames = new FrameTable(memory, 1);
  const env = createMmEnv(memory, frames);
  const pages = mib * 256;
  const len = pages * PAGE_SIZE;
  const mem = buildGuest(env, pages);
  const plain = new Uint8Array(len);
  const dv = new DataView(plain.buffer);
  const chunk = new Uint8Array(PAGE_SIZE);
  const bytes = len * rounds;
  let sink = 0;

  // Warm up both paths so the JIT has compiled what it measures.
  for (let a = 0; a < len; a += 4) sink += mem.getUint32(VA_BASE + a, true) + dv.getUint32(a, true);

  const readMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += 4) sink += mem.getUint32(VA_BASE + a, true);
  });
  const plainReadMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += 4) sink += dv.getUint32(a, true);
  });
  const writeMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += 4) mem.setUint32(VA_BASE + a, a ^ r, true);
  });
  const plainWriteMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += 4) dv.setUint32(a, a ^ r, true);
  });
  const bulkReadMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += PAGE_SIZE) mem.readInto(VA_BASE + a, PAGE_SIZE, chunk, 0);
  });
  const bulkWriteMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += PAGE_SIZE) mem.writeBytes(VA_BASE + a, chunk);
  });
  const plainBulkMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += PAGE_SIZE) chunk.set(plain.subarray(a, a + PAGE_SIZE));
  });

  const dm = mem.vcpu.dm;
  enableLogDirty(env, dm);
  const logDirtyMs = time(() => {
    for (let r = 0; r < rounds; r++) for (let a = 0; a < len; a += 4) mem.setUint32(VA_BASE + a, a, true);
  });
  disableLogDirty(env, dm);

  const randomOps = 2_000_000;
  let x = 12345;
  const randomMs = time(() => {
    for (let i = 0; i < randomOps; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      sink += mem.getUint32(VA_BASE + ((x % (len / 4)) * 4), true);
    }
  });
  x = 12345;
  const plainRandomMs = time(() => {
    for (let i = 0; i < randomOps; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      sink += dv.getUint32((x % (len / 4)) * 4, true);
    }
  });
  if (sink === 0.5) throw new Error('unreachable: keeps the loads alive');

  const readMBps = mbps(bytes, readMs);
  const writeMBps = mbps(bytes, writeMs);
  const plainReadMBps = mbps(bytes, plainReadMs);
  const plainWriteMBps = mbps(bytes, plainWriteMs);
  return {
    bytes,
    readMBps,
    writeMBps,
    plainReadMBps,
    plainWriteMBps,
    bulkReadMBps: mbps(bytes, bulkReadMs),
    bulkWriteMBps: mbps(bytes, bulkWriteMs),
    plainBulkMBps: mbps(bytes, plainBulkMs),
    logDirtyWriteMBps: mbps(bytes, logDirtyMs),
    randomReadMops: mops(randomOps, randomMs),
    plainRandomReadMops: mops(randomOps, plainRandomMs),
    readRatio: Math.round((readMBps / plainReadMBps) * 100) / 100,
    writeRatio: Math.round((writeMBps / plainWriteMBps) * 100) / 100,
  };
}

/*
 * A tiny, self-consistent fake PV guest to save: a 4-level page-table chain
 * whose PTEs name pfns of the guest, P2M frames, a shared info page whose
 * arch.max_pfn matches, and vCPU contexts whose CR3 is the L4's pfn << 12.
 * Layout for maxPfn = N (k = ceil(N / 512)):
 *
 *   pfn 0            start_info (NOTAB)          vCPU 0 rdx
 *   pfn 1            L4 (pinned)                 CR3
 *   pfn 2            L3
 *   pfn 3            L2, entries 0..k-1 -> the L1s
 *   pfn 4..4+k-1     L1s mapping every pfn that has memory
 *   next k pfns      P2M frames (NOTAB)
 *   ...              data pages (NOTAB, seeded random bytes)
 *   pfn N-2          XTAB (a hole)
 *   pfn N-1          XALLOC
 */
import {
  PAGE_SIZE,
  PageType,
  SHARED_INFO_ARCH_MAX_PFN,
  VCPU_CONTEXT_CR3,
  VCPU_CONTEXT_RDX,
  VCPU_CONTEXT_SIZE,
  SaveStreamWriter,
  writeSaveImage,
  type PageInput,
  type SaveImage,
  type StreamFormat,
  type VcpuInput,
  type XenportMeta,
} from '../../hypervisor/tools/stream/index.js';
import { mulberry32 as prng } from '../../hypervisor/xen/frametable.js';

/** mulberry32: a small seeded PRNG, so every run sees the same "random" data. Shared with the frame allocator (hypervisor/xen/frametable.ts). */
export { prng };

export const randInt = (r: () => number, lo: number, hiExcl: number): number => lo + Math.floor(r() * (hiExcl - lo));

/** Split `bytes` at seeded random points: chunk sizes from 1 byte to `max`. */
export function randomChunks(bytes: Uint8Array, seed: number, max: number): Uint8Array[] {
  const r = prng(seed);
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; ) {
    // Mostly small chunks, sometimes large: both kinds of boundary get exercised.
    const n = r() < 0.7 ? randInt(r, 1, 64) : randInt(r, 1, max + 1);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

export interface FakeGuestOptions {
  readonly maxPfn?: number;
  readonly seed?: number;
  readonly vcpus?: number;
  /** Give each vCPU extended, xsave and MSR blobs too. */
  readonly blobs?: boolean;
}

export interface FakeGuest extends SaveImage {
  readonly pages: readonly PageInput[];
  readonly vcpus: readonly VcpuInput[];
  readonly l4Pfn: number;
  readonly l1Pfns: readonly number[];
  readonly p2mPfns: readonly number[];
}

const PTE_TABLE = 0x63n; // present, rw, accessed, dirty
const PTE_RO = 0x25n; // present, user, accessed: how a PV guest maps its own page tables

export const META: XenportMeta = {
  kernel: { name: 'xenport-netbsd', versionHash: 'sha256:5f0c0ffee0ddba11' },
  xenstore: [
    { path: 'device/vbd/768/backend-id', value: '0' },
    { path: 'device/vif/0/mac', value: '00:16:3e:00:00:01' },
    { path: 'control/platform-feature-multiprocessor-suspend', value: '1' },
  ],
  extra: { startInfoPfn: 0, note: 'fake guest' },
};

export const CONFIG = 'name = "fake"\nkernel = "xenport-netbsd"\nmemory = 64\nvcpus = 1\ndisk = [ "file:/tmp/disk.img,xvda,w" ]\n';

export function fakeGuest(opts: FakeGuestOptions = {}): FakeGuest {
  const n = opts.maxPfn ?? 16;
  const rand = prng(opts.seed ?? 1);
  const k = Math.ceil(n / 512);
  const l4Pfn = 1;
  const l1Pfns = Array.from({ length: k }, (_, i) => 4 + i);
  const p2mPfns = Array.from({ length: k }, (_, i) => 4 + k + i);
  const holes = new Set([n - 2, n - 1]);
  if (4 + 2 * k >= n - 2) throw new Error(`maxPfn ${n} too small for the fake layout`);

  const pte = (pfn: number, flags: bigint): bigint => (BigInt(pfn) << 12n) | flags;
  const table = (entries: readonly [number, bigint][]): Uint8Array => {
    const page = new Uint8Array(PAGE_SIZE);
    const dv = new DataView(page.buffer);
    for (const [i, v] of entries) dv.setBigUint64(8 * i, v, true);
    return page;
  };
  const isTable = (pfn: number): boolean => pfn >= 1 && pfn < 4 + k;

  const pages: PageInput[] = [];
  for (let pfn = 0; pfn < n; pfn++) {
    if (pfn === n - 2) pages.push({ pfn, type: PageType.XTAB });
    else if (pfn === n - 1) pages.push({ pfn, type: PageType.XALLOC });
    else if (pfn === l4Pfn) pages.push({ pfn, type: PageType.L4TAB_PIN, data: table([[0, pte(2, PTE_TABLE)]]) });
    else if (pfn === 2) pages.push({ pfn, type: PageType.L3TAB, data: table([[0, pte(3, PTE_TABLE)]]) });
    else if (pfn === 3) pages.push({ pfn, type: PageType.L2TAB, data: table(l1Pfns.map((p, i) => [i, pte(p, PTE_TABLE)])) });
    else if (l1Pfns.includes(pfn)) {
      const base = (pfn - 4) * 512;
      const entries: [number, bigint][] = [];
      for (let i = 0; i < 512 && base + i < n; i++) {
        const target = base + i;
        if (!holes.has(target)) entries.push([i, pte(target, isTable(target) ? PTE_RO : PTE_TABLE | 0x4n)]);
      }
      pages.push({ pfn, type: PageType.L1TAB, data: table(entries) });
    } else if (p2mPfns.includes(pfn)) {
      const first = (pfn - p2mPfns[0]!) * 512;
      const entries: [number, bigint][] = [];
      for (let i = 0; i < 512 && first + i < n; i++) entries.push([i, BigInt(0x40000 + (first + i) * 3)]);
      pages.push({ pfn, type: PageType.NOTAB, data: table(entries) });
    } else {
      const data = new Uint8Array(PAGE_SIZE);
      for (let i = 0; i < PAGE_SIZE; i += 4) new DataView(data.buffer).setUint32(i, Math.floor(rand() * 2 ** 32), true);
      pages.push({ pfn, type: PageType.NOTAB, data });
    }
  }

  const sharedInfo = new Uint8Array(PAGE_SIZE);
  const sdv = new DataView(sharedInfo.buffer);
  sdv.setBigUint64(SHARED_INFO_ARCH_MAX_PFN, BigInt(n), true);
  sdv.setUint32(3072, 2, true); // wc_version
  sdv.setUint32(3076, 1_700_000_000, true); // wc_sec

  const vcpus: VcpuInput[] = [];
  for (let id = 0; id < (opts.vcpus ?? 1); id++) {
    const context = new Uint8Array(VCPU_CONTEXT_SIZE);
    const dv = new DataView(context.buffer);
    dv.setBigUint64(VCPU_CONTEXT_CR3, BigInt(l4Pfn) << 12n, true);
    dv.setBigUint64(VCPU_CONTEXT_RDX, 0n, true);
    dv.setBigUint64(520 + 128, 0xffff800000001000n + BigInt(id), true); // rip
    const blobs = opts.blobs
      ? { extended: new Uint8Array(40).fill(0x11 + id), xsave: new Uint8Array(576).fill(0x22), msrs: new Uint8Array(32).fill(0x33) }
      : {};
    vcpus.push({ id, context, ...blobs });
  }

  return {
    config: CONFIG,
    xenportMeta: META,
    p2m: { maxPfn: n, frames: p2mPfns },
    pages,
    tscInfo: { mode: 0, khz: 2_500_000, nsec: 1_234_567_890_123n, incarnation: 1 },
    sharedInfo,
    vcpus,
    l4Pfn,
    l1Pfns,
    p2mPfns,
  };
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The whole image in memory. */
export async function imageBytes(image: SaveImage, format: StreamFormat = 'xl'): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await writeSaveImage((c) => void chunks.push(c), image, format);
  return concat(chunks);
}

/** A checkpointed stream: the guest, then `rounds` more checkpoints re-sending a few pages. */
export async function checkpointedBytes(g: FakeGuest, rounds: number, format: StreamFormat = 'xl'): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new SaveStreamWriter((c) => void chunks.push(c), format);
  await w.start(g);
  await w.writeP2mFrames(g.p2m);
  await w.writePages(g.pages);
  await w.writeEndOfCheckpoint(g);
  for (let r = 0; r < rounds; r++) {
    await w.writeCheckpoint();
    await w.writePages(g.pages.filter((p) => p.type === PageType.NOTAB).slice(0, 3));
    await w.writeEndOfCheckpoint(g);
  }
  await w.finish();
  return concat(chunks);
}

/*
 * The pieces a plain save and a live save share: page types of the guest's
 * pfns (every P2M entry checked against the frame table and the M2P), the
 * pages themselves as the stream writer takes them (page tables
 * canonicalized), the tail records (vCPU contexts with their frames
 * canonicalized, TSC info, shared_info) and the xenport metadata.
 */
import { XEN_DOMCTL_PFINFO_LTAB_SHIFT, XEN_DOMCTL_PFINFO_XTAB } from '../../public/domctl.js';
import { ENODATA } from '../../public/errno.js';
import { PAGE_SIZE } from '../../public/types.js';
import { PageType, pageTableLevel, type PageInput, type TscInfo, type VcpuInput, type XenportMeta } from '../stream/index.js';
import { INVALID_MFN, m2pOf, type SaveMachine } from './deps.js';
import { canonicalizeTable, describePteProblem } from './canonical.js';
import { SaveError, hex } from './errors.js';
import { inPseudophysMap, type GuestP2m } from './p2m.js';
import type { SaveOptions } from './save.js';
import { contextOnline, convertContext, VCPU_CONTEXT_BYTES } from './vcpu.js';

export interface PageCounts {
  /** Pages sent with data. */
  pages: number;
  /** Pfns sent as holes (XTAB). */
  holes: number;
  /** Page tables among the pages (canonicalized). */
  pageTables: number;
}

const BATCH = 1024;

/** A hypercall result or a SaveError saying what failed. */
function must<T>(domid: number, v: T | number, what: string): T {
  if (typeof v === 'number') throw new SaveError('hypercall', domid, `${what} failed`, v);
  return v;
}

/**
 * Stream page types of `mfns` (entries of `pfns`; INVALID_MFN is a hole),
 * with each P2M entry checked: the frame must be the domain's and the M2P
 * must map it back to its pfn. A problem is thrown as a SaveError.
 */
function typesOf(m: SaveMachine, domid: number, pfns: readonly number[], mfns: readonly number[]): Uint8Array {
  const types = new Uint8Array(pfns.length).fill(PageType.XTAB);
  const live: number[] = [];
  for (let i = 0; i < mfns.length; i++) if (mfns[i] !== INVALID_MFN) live.push(i);
  const info = must(domid, m.xc.getPageFrameInfo(domid, live.map((i) => mfns[i]!)), 'getpageframeinfo3');
  live.forEach((i, k) => {
    const pfn = pfns[i]!;
    const mfn = mfns[i]!;
    const t = info[k]!;
    if (t === XEN_DOMCTL_PFINFO_XTAB) {
      throw new SaveError('p2m-entry', domid, `the P2M maps pfn ${hex(pfn)} to mfn ${hex(mfn)}, which is not a frame of the domain`);
    }
    const back = m2pOf(m, mfn);
    if (back !== pfn) {
      throw new SaveError('p2m-entry', domid, `the P2M maps pfn ${hex(pfn)} to mfn ${hex(mfn)}, but the M2P maps that frame to ${back < 0 ? 'no pfn' : `pfn ${hex(back)}`}`);
    }
    types[i] = t >>> XEN_DOMCTL_PFINFO_LTAB_SHIFT;
  });
  return types;
}

/** Stream page type of every pfn below max_pfn, every entry checked. */
export function pageTypes(m: SaveMachine, domid: number, g: GuestP2m): Uint8Array {
  const pfns = Array.from({ length: g.maxPfn }, (_, i) => i);
  return typesOf(m, domid, pfns, pfns.map((p) => g.p2m[p]!));
}

/** The stream type of one pfn now (live saves, where types change between rounds). */
export function pageTypeNow(m: SaveMachine, domid: number, g: GuestP2m, pfn: number): number {
  return typesOf(m, domid, [pfn], [g.p2m[pfn]!])[0]!;
}

/**
 * The pages of `pfns` as the writer takes them, types read per batch of
 * 1024 as they go (so a live round sees current types), page tables
 * canonicalized. A page that cannot be saved makes `skip(pfn, error)`
 * decide: true leaves it out (a live round sends it again later), false
 * (or no `skip`) throws the SaveError.
 */
export function* pageInputs(
  m: SaveMachine, domid: number, g: GuestP2m, pfns: Iterable<number>, counts: PageCounts,
  skip?: (pfn: number, e: SaveError) => boolean,
): Generator<PageInput> {
  const toPfn = (mfn: number): number => (inPseudophysMap(m, g, mfn) ? m2pOf(m, mfn) : -1);
  let batch: number[] = [];
  const flush = function* (): Generator<PageInput> {
    const mfns = batch.map((p) => g.p2m[p]!);
    let types: Uint8Array;
    try {
      types = typesOf(m, domid, batch, mfns);
    } catch (e) {
      if (!(e instanceof SaveError) || skip === undefined) throw e;
      // One bad entry spoils the batch's types: take them one by one.
      types = new Uint8Array(batch.length).fill(0xff);
      batch.forEach((pfn, i) => {
        try {
          types[i] = typesOf(m, domid, [pfn], [mfns[i]!])[0]!;
        } catch (one) {
          if (!(one instanceof SaveError) || !skip(pfn, one)) throw one;
        }
      });
    }
    for (let i = 0; i < batch.length; i++) {
      const pfn = batch[i]!;
      const type = types[i] as PageType | 0xff;
      if (type === 0xff) continue;
      if (type === PageType.XTAB) {
        counts.holes++;
        yield { pfn, type };
        continue;
      }
      const mfn = mfns[i]!;
      const f = m.xc.foreignFrame(domid, mfn);
      if (typeof f === 'number') throw new SaveError('p2m-entry', domid, `pfn ${hex(pfn)} (mfn ${hex(mfn)}) is no longer a frame of the domain`, f);
      const level = pageTableLevel(type);
      let data = f.peek();
      if (level > 0) {
        data = data.slice();
        const p = canonicalizeTable(data, level, toPfn);
        if (p !== undefined) {
          const e = new SaveError('page-table', domid, describePteProblem(p, level, `pfn ${hex(pfn)} (mfn ${hex(mfn)})`));
          if (skip?.(pfn, e) === true) continue;
          throw e;
        }
        counts.pageTables++;
      }
      counts.pages++;
      yield { pfn, type, data };
    }
    batch = [];
  };
  for (const pfn of pfns) {
    batch.push(pfn);
    if (batch.length === BATCH) yield* flush();
  }
  if (batch.length > 0) yield* flush();
}

export interface SaveTail {
  readonly vcpus: VcpuInput[];
  readonly tscInfo: TscInfo;
  readonly sharedInfo: Uint8Array;
}

/** TSC_INFO, SHARED_INFO and every online vCPU's context, canonicalized (vCPU 0 must be there). */
export function saveTail(m: SaveMachine, domid: number, g: GuestP2m, typeOf: (pfn: number) => number): SaveTail {
  const t = must(domid, m.xc.getTscInfo(domid), 'gettscinfo');
  const shinfo = must(domid, m.xc.foreignFrame(domid, g.sharedInfoMfn), 'mapping shared_info');
  return {
    vcpus: vcpuContexts(m, domid, g, typeOf),
    tscInfo: { mode: t.tscMode, khz: t.khz, nsec: BigInt(t.elapsedNs), incarnation: t.incarnation },
    sharedInfo: shinfo.read(0, PAGE_SIZE),
  };
}

function vcpuContexts(m: SaveMachine, domid: number, g: GuestP2m, typeOf: (pfn: number) => number): VcpuInput[] {
  const maxId = m.xc.getDomainInfo(domid)?.maxVcpuId ?? 0;
  const out: VcpuInput[] = [];
  for (let id = 0; id <= maxId; id++) {
    const ctx = m.xc.getVcpuContext(domid, id);
    if (ctx === -ENODATA && id > 0) continue;
    const c = must(domid, ctx, `getvcpucontext of vCPU ${id}`).slice(0, VCPU_CONTEXT_BYTES);
    if (!contextOnline(c)) {
      if (id === 0) throw new SaveError('vcpu', domid, 'vCPU 0 is offline');
      continue;
    }
    const problem = convertContext(c, id, true, (mfn, field) => {
      if (!inPseudophysMap(m, g, mfn)) return `mfn ${hex(mfn)} is not one of the guest's pseudo-physical frames`;
      const pfn = m2pOf(m, mfn);
      if (field.name.startsWith('ctrlreg') && pageTableLevel(typeOf(pfn) as PageType) !== 4) return `pfn ${hex(pfn)} is not an L4 page table`;
      return pfn;
    });
    if (problem !== undefined) throw new SaveError('vcpu', domid, `vCPU ${id} ${problem.field.name} = ${hex(problem.frame)}: ${problem.detail}`);
    out.push({ id, context: c });
  }
  return out;
}

/** The xenport metadata: the domain's kernel image and what the caller passes. */
export function xenportMetaOf(m: SaveMachine, domid: number, opts: Pick<SaveOptions, 'xenstore' | 'extra'>): XenportMeta {
  const kernel = m.domain(domid)?.kernel ?? null;
  if (kernel === null) throw new SaveError('no-kernel', domid, 'no kernel image is bound to the domain: nothing to restore it with');
  return {
    kernel: { name: kernel.name, versionHash: kernel.versionHash },
    xenstore: opts.xenstore ?? [],
    ...(opts.extra === undefined ? {} : { extra: opts.extra }),
  };
}


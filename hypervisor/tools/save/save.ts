/*
 * `xl save`: write a suspended PV domain as Xen's save image, the steps of
 * libxl's domain suspend around libxc's x86 PV saver (xg_sr_save_x86_pv):
 *
 *   the domain is in SHUTDOWN_suspend (the caller asked the guest and
 *   waited, see wait.ts) -> find the guest's P2M (p2m.ts) -> check every
 *   P2M entry against the frame table and the M2P -> page types
 *   (getpageframeinfo3) -> canonicalize what the tail records name (CR3,
 *   rdx, GDT frames) -> stream: X86_PV_INFO, X86_PV_P2M_FRAMES (as PFNs),
 *   PAGE_DATA in batches of 1024 (page tables canonicalized, holes as
 *   XTAB), TSC_INFO, SHARED_INFO, X86_PV_VCPU_BASIC per vCPU, END ->
 *   destroy the domain, or (`xl save -c`) resume it in place with the
 *   suspend hypercall returning 1.
 *
 * Everything that can be checked before the first byte goes out is (all
 * but page tables, checked as they stream), so a guest that cannot be
 * saved fails fast. On failure the domain is resumed in place (rax = 1) as
 * xl does after a failed save, unless asked to leave it suspended.
 *
 * The P2M array itself is saved as ordinary data: its MFNs are meaningless
 * on the other side and the restore rewrites it (xg_sr_restore_x86_pv's
 * update_guest_p2m).
 */
import { SHUTDOWN_suspend } from '../../public/sched.js';
import {
  PageType, pageTableLevel, writeSaveImage,
  type JsonValue, type PageInput, type StreamFormat, type StreamSink, type TscInfo, type VcpuInput, type XenportMeta,
  type XenstoreNode,
} from '../stream/index.js';
import { m2pOf, type SaveMachine } from './deps.js';
import { SaveError, checkSave, hex } from './errors.js';
import { inPseudophysMap, readGuestP2m, type GuestP2m } from './p2m.js';
import { pageInputs, pageTypes, saveTail, xenportMetaOf, type PageCounts } from './save-parts.js';
import type { StepListener } from '../../xen/trace.js';

export interface SaveOptions {
  /** Live migration (log-dirty pre-copy) is not done by saveDomain. */
  readonly live?: false;
  /** `xl save -c`: resume the domain in place afterwards instead of destroying it. */
  readonly checkpointResume?: boolean;
  /** xl.cfg text for the xl header (default: a minimal `kernel = "..."`). */
  readonly config?: string;
  /** Xenstore nodes the restore must recreate (the caller reads them from xenstored). */
  readonly xenstore?: readonly XenstoreNode[];
  /** Anything else to carry in the xenport metadata. */
  readonly extra?: { readonly [k: string]: JsonValue };
  /** Outermost layer (default 'xl', a file as `xl save` writes it). */
  readonly format?: StreamFormat;
  /** Called as pages go out: pages done, pages in all (max_pfn). */
  readonly progress?: (done: number, total: number) => void;
  /** After a failure: resume the domain in place (default, as xl does) or leave it suspended. */
  readonly onFailure?: 'resume' | 'leave';
  /** Told of each protocol step as it is done (the machine's trace: `m.trace.steps(domid)`). */
  readonly onStep?: StepListener;
}

export interface SaveResult {
  readonly domid: number;
  readonly maxPfn: number;
  /** Pfns saved with data. */
  readonly pages: number;
  /** Pfns saved as holes (XTAB). */
  readonly holes: number;
  /** Page-table pages among them (canonicalized). */
  readonly pageTables: number;
  readonly bytes: number;
  readonly records: number;
  /** What became of the domain. */
  readonly outcome: 'destroyed' | 'resumed';
}

/** What the save learned before writing anything. */
interface SavePlan {
  readonly g: GuestP2m;
  /** Stream page type per pfn. */
  readonly types: Uint8Array;
  readonly framePfns: number[];
  readonly vcpus: VcpuInput[];
  readonly tscInfo: TscInfo;
  readonly sharedInfo: Uint8Array;
  readonly meta: XenportMeta;
  readonly config: string;
}

/**
 * Save domain `domid` (already in SHUTDOWN_suspend) to `sink`. Resolves
 * once the image is complete and the domain destroyed (or resumed);
 * rejects with a SaveError.
 */
export async function saveDomain(m: SaveMachine, domid: number, sink: StreamSink, opts: SaveOptions = {}): Promise<SaveResult> {
  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new SaveError('no-domain', domid, 'no such domain');
  if (!info.shutdown || info.shutdownReason !== SHUTDOWN_suspend) {
    const state = info.shutdown ? `shut down with reason ${info.shutdownReason}` : info.paused ? 'paused' : 'running';
    throw new SaveError('not-suspended', domid, `the domain is ${state}, not suspended (ask the guest to suspend and wait for it first)`);
  }
  const step = opts.onStep;
  try {
    const plan = planSave(m, domid, opts);
    const counts: PageCounts = { pages: 0, holes: 0, pageTables: 0 };
    const summary = await writeImage(m, domid, sink, plan, opts, counts);
    step?.('image written', `${summary.records} records, ${summary.bytes} bytes (TSC_INFO, SHARED_INFO, X86_PV_VCPU_BASIC x${plan.vcpus.length}, END)`, domid);
    let outcome: SaveResult['outcome'];
    if (opts.checkpointResume === true) {
      fastResume(m, domid);
      outcome = 'resumed';
    } else {
      checkSave(domid, m.xc.destroyDomain(domid), 'destroydomain after the save');
      outcome = 'destroyed';
    }
    return { domid, maxPfn: plan.g.maxPfn, ...counts, bytes: summary.bytes, records: summary.records, outcome };
  } catch (e) {
    if ((opts.onFailure ?? 'resume') === 'resume') resumeAfterFailure(m, domid);
    throw e;
  }
}

/** xl's "Failed to save domain, resuming domain": a fast resume, when the domain is still suspended. */
export function resumeAfterFailure(m: Pick<SaveMachine, 'xc'>, domid: number): void {
  if (!stillSuspended(m, domid)) return;
  try {
    fastResume(m, domid);
  } catch {
    // The save's own error is the one to report.
  }
}

function stillSuspended(m: Pick<SaveMachine, 'xc'>, domid: number): boolean {
  const i = m.xc.getDomainInfo(domid);
  return i !== undefined && i.shutdown && i.shutdownReason === SHUTDOWN_suspend;
}

/** xc_domain_resume(fast): the suspend hypercall returns 1 and the vCPUs run on. */
export function fastResume(m: Pick<SaveMachine, 'xc'>, domid: number): void {
  checkSave(domid, m.xc.setSuspendResult(domid, 1), 'setting the suspend result (rax = 1)');
  checkSave(domid, m.xc.resumeDomain(domid), 'resumedomain');
}

function planSave(m: SaveMachine, domid: number, opts: SaveOptions): SavePlan {
  const step = opts.onStep;
  const meta = xenportMetaOf(m, domid, opts);
  const g = readGuestP2m(m, domid);
  step?.('P2M read', `max_pfn ${g.maxPfn}, ${g.frameMfns.length} P2M frame(s), checked against the M2P`, domid);
  const types = pageTypes(m, domid, g);
  step?.('page types read', `${countPageTables(types)} page-table pages among ${g.maxPfn} pfns`, domid);
  const framePfns = g.frameMfns.map((mfn, i) => {
    const pfn = inPseudophysMap(m, g, mfn) ? m2pOf(m, mfn) : -1;
    if (pfn < 0) throw new SaveError('p2m-frame-list', domid, `P2M frame ${i} is mfn ${hex(mfn)}, which is not one of the guest's pseudo-physical frames (the M2P says pfn ${hex(m2pOf(m, mfn))})`);
    if (types[pfn] !== PageType.NOTAB) throw new SaveError('p2m-frame-list', domid, `P2M frame ${i} (pfn ${hex(pfn)}) is in use as a page table`);
    return pfn;
  });
  const tail = saveTail(m, domid, g, (pfn) => types[pfn]!);
  step?.('vcpu context and shared_info read', `${tail.vcpus.length} vCPU(s): CR3 and rdx as PFNs`, domid);
  return {
    g, types, framePfns,
    ...tail,
    meta,
    config: opts.config ?? `kernel = "${meta.kernel.name}"\n`,
  };
}

function countPageTables(types: Uint8Array): number {
  let n = 0;
  for (const t of types) if (pageTableLevel(t as PageType) !== 0) n++;
  return n;
}

async function writeImage(
  m: SaveMachine, domid: number, sink: StreamSink, plan: SavePlan, opts: SaveOptions, counts: PageCounts,
): Promise<{ bytes: number; records: number }> {
  const { g } = plan;
  const progress = opts.progress;
  function* pages(): Generator<PageInput> {
    let done = 0;
    opts.onStep?.('PAGE_DATA started', `${g.maxPfn} pfns in batches of 1024`, domid);
    for (const p of pageInputs(m, domid, g, range(g.maxPfn), counts)) {
      yield p;
      done++;
      if (progress !== undefined && (done % 1024 === 0 || done === g.maxPfn)) progress(done, g.maxPfn);
    }
    opts.onStep?.('pages written', `${counts.pages} pages (${counts.pageTables} page tables canonicalized), ${counts.holes} holes`, domid);
  }
  try {
    return await writeSaveImage(sink, {
      config: plan.config,
      xenportMeta: plan.meta,
      p2m: { maxPfn: g.maxPfn, frames: plan.framePfns },
      pages: pages(),
      tscInfo: plan.tscInfo,
      sharedInfo: plan.sharedInfo,
      vcpus: plan.vcpus,
    }, opts.format ?? 'xl');
  } catch (e) {
    throw asSaveError(domid, e);
  }
}

/** A failure of the sink as a SaveError; our own errors (and bugs) as they are. */
export function asSaveError(domid: number, e: unknown): unknown {
  if (e instanceof SaveError || e instanceof RangeError) return e;
  return new SaveError('io', domid, `writing the image failed: ${e instanceof Error ? e.message : String(e)}`);
}

function* range(n: number): Generator<number> {
  for (let i = 0; i < n; i++) yield i;
}

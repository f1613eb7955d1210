/*
 * Live save (the sending half of `xl migrate`), as libxc's saver does it
 * with `live` set: log-dirty mode on, every page sent once while the guest
 * runs, then rounds that resend what it dirtied meanwhile until few pages
 * are dirty or a bound of rounds is reached; then the guest is suspended
 * (by the caller's protocol) and the last dirty pages, the vCPUs and
 * shared_info go out. Each round is one SaveStreamWriter.writePages().
 *
 * A page that cannot be saved while the guest runs (a page table caught
 * mid-update, naming a frame that is not in the pseudo-physical map yet)
 * is left out of that round and sent again later, as libxc retries on
 * EAGAIN; once the guest is suspended every such problem is fatal. A guest
 * that changes its P2M during the migration is refused (libxc compares the
 * P2M generation). On failure log-dirty mode is turned off and a suspended
 * guest is resumed in place (rax = 1): the source keeps running.
 */
import { SaveStreamWriter, PageType, type StreamSink } from '../stream/index.js';
import { m2pOf, type SaveMachine } from './deps.js';
import { SaveError, checkSave, hex } from './errors.js';
import { inPseudophysMap, readGuestP2m, type GuestP2m } from './p2m.js';
import { asSaveError, resumeAfterFailure, type SaveOptions, type SaveResult } from './save.js';
import { pageInputs, pageTypeNow, pageTypes, saveTail, xenportMetaOf, type PageCounts } from './save-parts.js';
import { SHUTDOWN_suspend } from '../../public/sched.js';

export interface LiveSaveOptions extends Omit<SaveOptions, 'live' | 'checkpointResume' | 'progress'> {
  /** Ask the guest to suspend and resolve once it has (e.g. control/shutdown + waitForSuspend). */
  readonly suspend: () => Promise<void>;
  /** Let the guest run between rounds (a simulated machine must be run here; a realtime one runs itself). */
  readonly betweenRounds?: (round: number) => Promise<void> | void;
  /** Pre-copy rounds after the first full pass (default 5, libxc's default). */
  readonly maxRounds?: number;
  /** Stop pre-copying once fewer pages than this are dirty (default 50). */
  readonly dirtyThreshold?: number;
  /** Told after each round: its number (0 = the full pass) and the pages it sent. */
  readonly onRound?: (round: LiveRound) => void;
}

export interface LiveRound {
  readonly round: number;
  /** Pfns sent in this round. */
  readonly pages: number;
  /** 'precopy' while the guest ran, 'final' after it suspended. */
  readonly phase: 'precopy' | 'final';
}

/** `pages`, `holes` and `pageTables` count every send, resends included. */
export interface LiveSaveResult extends SaveResult {
  readonly rounds: readonly LiveRound[];
}

export function dirtyPfns(m: SaveMachine, domid: number, maxPfn: number): number[] {
  const bitmap = m.xc.dirtyBitmap(domid, maxPfn, true);
  if (typeof bitmap === 'number') throw new SaveError('hypercall', domid, 'XEN_DOMCTL_SHADOW_OP_CLEAN failed', bitmap);
  const out: number[] = [];
  for (let byte = 0; byte < bitmap.length; byte++) {
    const b = bitmap[byte]!;
    if (b === 0) continue;
    for (let k = 0; k < 8; k++) if ((b & (1 << k)) !== 0 && byte * 8 + k < maxPfn) out.push(byte * 8 + k);
  }
  return out;
}

export function sameP2m(a: GuestP2m, b: GuestP2m): boolean {
  if (a.maxPfn !== b.maxPfn || a.frameMfns.length !== b.frameMfns.length) return false;
  for (let i = 0; i < a.maxPfn; i++) if (a.p2m[i] !== b.p2m[i]) return false;
  return a.frameMfns.every((f, i) => b.frameMfns[i] === f);
}

/** A live stream under way: log-dirty mode on, the stream started, the pre-copy rounds sent. */
export interface Precopied {
  readonly w: SaveStreamWriter;
  readonly g: GuestP2m;
  /** The pre-copy rounds sent (the full pass is round 0). */
  readonly rounds: LiveRound[];
  /** Pfns still to send once the guest is suspended: dirtied when pre-copy stopped, or skipped while it ran. */
  readonly left: number[];
  /** A writer call; a failing sink becomes a SaveError('io'), the caller's hooks fail as they fail. */
  io<T>(f: () => Promise<T>): Promise<T>;
  /** `pfns` as one PAGE_DATA run; with `retry`, a page that cannot be saved while the guest runs goes there instead. */
  send(pfns: Iterable<number>, retry?: Set<number>): Promise<number>;
}

/**
 * The first half of `xl migrate` and `xl remus`: log-dirty mode on, the
 * stream's header, P2M frames, the full pass and the rounds that resend
 * what the guest dirtied meanwhile (see the header). On failure log-dirty
 * mode is off again; on success the caller owns it.
 */
export async function precopy(m: SaveMachine, domid: number, sink: StreamSink, opts: LiveSaveOptions, counts: PageCounts): Promise<Precopied> {
  const meta = xenportMetaOf(m, domid, opts);
  const g = readGuestP2m(m, domid);
  const types = pageTypes(m, domid, g);
  const framePfns = g.frameMfns.map((mfn, i) => {
    if (!inPseudophysMap(m, g, mfn) || types[m2pOf(m, mfn)] !== PageType.NOTAB) {
      throw new SaveError('p2m-frame-list', domid, `P2M frame ${i} (mfn ${hex(mfn)}) is not an ordinary page of the guest`);
    }
    return m2pOf(m, mfn);
  });
  checkSave(domid, m.xc.enableLogDirty(domid), 'enabling log-dirty mode');
  try {
    dirtyPfns(m, domid, g.maxPfn); // start from a clean bitmap
    const w = new SaveStreamWriter(sink, opts.format ?? 'xl');
    const io = async <T>(f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (e) {
        throw asSaveError(domid, e);
      }
    };
    const send = (pfns: Iterable<number>, retry?: Set<number>): Promise<number> => {
      const skip = retry === undefined ? undefined : (pfn: number): boolean => {
        retry.add(pfn);
        return true;
      };
      return io(() => w.writePages(pageInputs(m, domid, g, pfns, counts, skip)));
    };
    const rounds: LiveRound[] = [];
    const round = async (pfns: Iterable<number>, n: number, retry: Set<number>): Promise<void> => {
      const r = { round: n, pages: await send(pfns, retry), phase: 'precopy' as const };
      rounds.push(r);
      opts.onRound?.(r);
      opts.onStep?.(`pre-copy round ${n} sent`, `${r.pages} pages`, domid);
    };
    await io(() => w.start({ config: opts.config ?? `kernel = "${meta.kernel.name}"\n`, xenportMeta: meta }));
    await io(() => w.writeP2mFrames({ maxPfn: g.maxPfn, frames: framePfns }));
    let retry = new Set<number>();
    await round(Array.from({ length: g.maxPfn }, (_, i) => i), 0, retry);
    let carry: number[] = [];
    for (let n = 1; n <= (opts.maxRounds ?? 5); n++) {
      await opts.betweenRounds?.(n);
      const dirty = [...new Set([...dirtyPfns(m, domid, g.maxPfn), ...retry])].sort((a, b) => a - b);
      retry = new Set();
      if (dirty.length < (opts.dirtyThreshold ?? 50)) {
        carry = dirty;
        break;
      }
      await round(dirty, n, retry);
    }
    const left = [...new Set([...carry, ...retry])].sort((a, b) => a - b);
    opts.onStep?.('pre-copy done', `${rounds.length} round(s), ${left.length} pages left for the guest suspended`, domid);
    return { w, g, rounds, left, io, send };
  } catch (e) {
    m.xc.disableLogDirty(domid);
    throw e;
  }
}

/**
 * After the caller's suspend: the guest must be suspended, with the P2M the
 * stream was started with; then every pfn it dirtied since the last round,
 * with `left`, sorted.
 */
export function suspendedDirty(m: SaveMachine, domid: number, g: GuestP2m, left: readonly number[], what: string): number[] {
  const now = m.xc.getDomainInfo(domid);
  if (now === undefined || !now.shutdown || now.shutdownReason !== SHUTDOWN_suspend) {
    throw new SaveError('not-suspended', domid, `the guest was asked to suspend for ${what} but is not suspended`);
  }
  if (!sameP2m(g, readGuestP2m(m, domid))) throw new SaveError('p2m-entry', domid, `the guest changed its P2M during ${what}`);
  return [...new Set([...dirtyPfns(m, domid, g.maxPfn), ...left])].sort((a, b) => a - b);
}

/**
 * Save a running domain live to `sink`. Resolves once the image is complete
 * and the domain destroyed; rejects with a SaveError (the domain running on).
 */
export async function liveSaveDomain(m: SaveMachine, domid: number, sink: StreamSink, opts: LiveSaveOptions): Promise<LiveSaveResult> {
  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new SaveError('no-domain', domid, 'no such domain');
  const counts: PageCounts = { pages: 0, holes: 0, pageTables: 0 };
  let logDirty = false;
  try {
    const { w, g, rounds, left, io, send } = await precopy(m, domid, sink, opts, counts);
    logDirty = true;
    await opts.suspend();
    const last = suspendedDirty(m, domid, g, left, 'the last round of the live migration');
    const final = { round: rounds.length, pages: await send(last), phase: 'final' as const };
    rounds.push(final);
    opts.onRound?.(final);
    opts.onStep?.('final round sent', `${final.pages} pages`, domid);
    const tail = saveTail(m, domid, g, (pfn) => pageTypeNow(m, domid, g, pfn));
    await io(() => w.writeEndOfCheckpoint(tail));
    const summary = await io(() => w.finish());
    opts.onStep?.('image written', `${summary.records} records, ${summary.bytes} bytes`, domid);
    m.xc.disableLogDirty(domid);
    logDirty = false;
    checkSave(domid, m.xc.destroyDomain(domid), 'destroydomain after the save');
    return { domid, maxPfn: g.maxPfn, ...counts, bytes: summary.bytes, records: summary.records, outcome: 'destroyed', rounds };
  } catch (e) {
    if (logDirty) m.xc.disableLogDirty(domid);
    if ((opts.onFailure ?? 'resume') === 'resume') resumeAfterFailure(m, domid);
    throw e;
  }
}

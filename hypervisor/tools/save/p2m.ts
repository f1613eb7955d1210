/*
 * Finding a PV guest's P2M from the toolstack, as libxc's saver does
 * (map_p2m_tree): the guest publishes in shared_info.arch
 *
 *   max_pfn                      entries in its P2M (pfns 0..max_pfn-1)
 *   pfn_to_mfn_frame_list_list   MFN of the top of a 3-level tree:
 *
 *     frame list list (1 page)  ->  frame list pages  ->  P2M frames
 *     512 MFNs of frame lists       512 MFNs each         512 MFNs each (p2m[pfn])
 *
 * Every MFN met on the way must be a frame of the domain; a tree that
 * names anything else is refused with a SaveError saying which level and
 * index. The guest must rebuild the tree after every restore (the restore
 * clears pfn_to_mfn_frame_list_list): Mini-OS once forgot, and its second
 * save failed. That is the 'p2m-unpublished' error here.
 *
 * p2mOf() is `xl p2m`: the same walk, every entry cross-checked with the M2P.
 */
import { shared_info } from '../../public/xen.js';
import { FPP, INVALID_MFN, P2M_TREE_MAX_PFNS, m2pOf, readFrameNumber, type P2mMachine } from './deps.js';
import { SaveError, hex } from './errors.js';

const MAX_PFN_OFF = shared_info.offsetOf('arch.max_pfn');
const FLL_OFF = shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list');

export interface GuestP2m {
  /** P2M entries: pfns 0..maxPfn-1 (shared_info.arch.max_pfn). */
  readonly maxPfn: number;
  /** p2m[pfn] = the MFN the guest says backs pfn, INVALID_MFN for a hole. */
  readonly p2m: Float64Array;
  /** MFNs of the frames holding the P2M array, in order. */
  readonly frameMfns: readonly number[];
  /** MFN of the frame list list. */
  readonly fllMfn: number;
  readonly sharedInfoMfn: number;
}

/** The frame `mfn` of `domid` as a DataView, or a SaveError naming `what`. */
function frameOf(m: P2mMachine, domid: number, mfn: number, what: string): DataView {
  const f = mfn < 0 ? -1 : m.xc.foreignFrame(domid, mfn);
  if (typeof f === 'number') throw new SaveError('p2m-frame-list', domid, `${what} is mfn ${hex(mfn)}, which is not a frame of the domain`);
  const page = f.peek();
  return new DataView(page.buffer, page.byteOffset, page.length);
}

/**
 * Walk the guest's published P2M. A SaveError when the domain is gone, the
 * P2M is not published, max_pfn is absurd, or the tree names a frame the
 * domain does not own.
 */
export function readGuestP2m(m: P2mMachine, domid: number): GuestP2m {
  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new SaveError('no-domain', domid, 'no such domain');
  const sh = frameOf(m, domid, info.sharedInfoFrame, 'shared_info');
  const maxPfnRaw = sh.getBigUint64(MAX_PFN_OFF, true);
  const fllRaw = sh.getBigUint64(FLL_OFF, true);
  // A guest cannot have more pfns than the 3-level tree holds, nor (to keep a
  // hostile max_pfn from making us allocate gigabytes) more than it or the
  // machine could ever own.
  const bound = Math.min(P2M_TREE_MAX_PFNS, Math.max(info.maxPages, info.totPages, m.frames.nrFrames));
  if (maxPfnRaw === 0n || maxPfnRaw > BigInt(bound)) {
    throw new SaveError('bad-max-pfn', domid, `shared_info.arch.max_pfn is ${hex(maxPfnRaw)}: not a P2M size between 1 and ${hex(bound)}`);
  }
  const maxPfn = Number(maxPfnRaw);
  if (fllRaw === 0n) {
    throw new SaveError('p2m-unpublished', domid,
      'shared_info.arch.pfn_to_mfn_frame_list_list is 0: the guest has not published its P2M '
      + '(a guest must rebuild its P2M frame list after every restore)');
  }
  if (fllRaw >= 1n << 40n) {
    throw new SaveError('p2m-unpublished', domid,
      `shared_info.arch.pfn_to_mfn_frame_list_list is ${hex(fllRaw)}: the linear (p2m_vaddr) P2M is not supported, only the 3-level frame list`);
  }
  const fllMfn = Number(fllRaw);
  const nFrames = Math.ceil(maxPfn / FPP);
  const nLists = Math.ceil(nFrames / FPP);

  const fll = frameOf(m, domid, fllMfn, 'the P2M frame list list (shared_info.arch.pfn_to_mfn_frame_list_list)');
  const frameMfns: number[] = [];
  for (let l = 0; l < nLists; l++) {
    const listMfn = readFrameNumber(fll, 8 * l);
    const list = frameOf(m, domid, listMfn, `entry ${l} of the P2M frame list list`);
    for (let k = 0; k < FPP && frameMfns.length < nFrames; k++) {
      frameMfns.push(readFrameNumber(list, 8 * k));
    }
  }
  const p2m = new Float64Array(maxPfn);
  frameMfns.forEach((mfn, i) => {
    const frame = frameOf(m, domid, mfn, `P2M frame ${i} (entry ${i % FPP} of frame list ${Math.floor(i / FPP)})`);
    const n = Math.min(FPP, maxPfn - i * FPP);
    for (let k = 0; k < n; k++) p2m[i * FPP + k] = readFrameNumber(frame, 8 * k);
  });
  return { maxPfn, p2m, frameMfns, fllMfn, sharedInfoMfn: info.sharedInfoFrame };
}

/** `mfn` is in the guest's pseudo-physical map: the M2P and the P2M agree on it (libxc's mfn_in_pseudophysmap). */
export function inPseudophysMap(m: P2mMachine, g: Pick<GuestP2m, 'p2m'>, mfn: number): boolean {
  const pfn = m2pOf(m, mfn);
  return pfn >= 0 && pfn < g.p2m.length && g.p2m[pfn] === mfn;
}

export interface P2mEntry {
  readonly pfn: number;
  readonly mfn: number;
}

export interface P2mMismatch extends P2mEntry {
  /** What the M2P says of the MFN (-1: nothing). */
  readonly m2pPfn: number;
}

export interface P2mReport {
  readonly domid: number;
  readonly maxPfn: number;
  /** Every pfn with a frame behind it, in pfn order (holes left out). */
  readonly entries: readonly P2mEntry[];
  /** Entries whose MFN the M2P maps to another pfn (a guest or toolstack bug). */
  readonly mismatches: readonly P2mMismatch[];
}

/** `xl p2m DOM`: the guest's own P2M, cross-checked with the M2P. Throws SaveError when it cannot be read. */
export function p2mOf(m: P2mMachine, domid: number): P2mReport {
  const g = readGuestP2m(m, domid);
  const entries: P2mEntry[] = [];
  const mismatches: P2mMismatch[] = [];
  for (let pfn = 0; pfn < g.maxPfn; pfn++) {
    const mfn = g.p2m[pfn]!;
    if (mfn === INVALID_MFN) continue;
    entries.push({ pfn, mfn });
    const back = m2pOf(m, mfn);
    if (back !== pfn) mismatches.push({ pfn, mfn, m2pPfn: back });
  }
  return { domid, maxPfn: g.maxPfn, entries, mismatches };
}

/** `xl p2m` output: `pfn mfn` per line, hex as Xen's tools print frame numbers. */
export function formatP2m(r: P2mReport): string {
  return r.entries.map((e) => `${hex(e.pfn)} ${hex(e.mfn)}\n`).join('');
}

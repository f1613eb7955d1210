/*
 * The end of a restore, once every page is in (libxc's
 * x86_pv_stream_complete and the record handlers it deferred):
 *
 *  1. localize page tables: every PFN in a PTE becomes its new MFN
 *  2. M2P: MMU_MACHPHYS_UPDATE for every frame
 *  3. the guest's P2M array (found through the P2M_FRAMES pfns) rewritten
 *     with the new MFNs, ~0 for holes
 *  4. start_info (vCPU 0's rdx names its pfn): store and console pages
 *     (which the guest left as PFNs) become MFNs, fresh event channels
 *     (unbound, remote dom0, as the builder makes them), nr_pages,
 *     shared_info's new machine address, flags 0; a ctrl_if port named on
 *     the command line (`ctrl_if=<pfn>,<port>`) is made anew likewise
 *  5. shared_info from the SHARED_INFO record: vcpu_info and arch kept,
 *     every event pending bit cleared and every mask bit set, each vCPU's
 *     upcall_pending and pending_sel cleared, pfn_to_mfn_frame_list_list 0
 *     (the guest rebuilds it)
 *  6. pin page tables whose type carries the pinned bit (pinning the L4
 *     validates the tree under it)
 *  7. vCPU contexts: CR3, user CR3, GDT frames, rdx to MFNs; vCPU 0's
 *     suspend hypercall returns 0 (rax)
 *  8. grant entries 0 (console) and 1 (xenstore) for dom0
 *
 * Each failure is a RestoreError naming the record and stream offset of
 * what was wrong.
 */
import { MAX_GUEST_CMDLINE, MMUEXT_PIN_L1_TABLE, XEN_LEGACY_MAX_VCPUS, shared_info, start_info, vcpu_info, EVTCHN_WORDS } from '../../public/xen.js';
import { GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_permit_access } from '../../public/grant_table.js';
import { bytesMem } from '../../public/layout.js';
import { PAGE_SIZE } from '../../public/types.js';
import { PageType, pageTableLevel, type PageType as StreamPageType } from '../stream/index.js';
import { FPP, machphysUpdate, writeFrameNumber, type RestoreMachine } from './deps.js';
import { describePteProblem, localizeTable } from './canonical.js';
import { RestoreError, hex } from './errors.js';
import { VCPU_RDX_OFFSET, convertContext, contextRdx, setContextRax } from './vcpu.js';
import type { StepListener } from '../../xen/trace.js';

/** A value from the stream and the offset where it was read. */
export interface Located<T> {
  readonly value: T;
  readonly offset: number;
}

export interface RestoreState {
  readonly domid: number;
  readonly maxPfn: number;
  /** New MFN per pfn, -1 when the image gave it no data. */
  readonly p2m: Float64Array;
  /** Last stream page type per pfn (0xff: never sent). */
  readonly types: Uint8Array;
  /** Stream offset of each pfn's page data (-1: none). */
  readonly dataAt: Float64Array;
  readonly frames: readonly Located<number>[];
  readonly sharedInfo: Located<Uint8Array>;
  readonly vcpus: ReadonlyMap<number, Located<Uint8Array>>;
}

export interface FinishedDomain {
  readonly storeMfn: number;
  readonly storePort: number;
  readonly consoleMfn: number;
  readonly consolePort: number;
  /** The Xen 2.0 control interface, when the command line names one (`ctrl_if=<pfn>,<port>`). */
  readonly ctrlIf?: { readonly mfn: number; readonly port: number };
  readonly startInfoMfn: number;
  readonly sharedInfoMfn: number;
}

const UNSEEN = 0xff;
const SI_MAGIC_PREFIX = 'xen-';

const levelOf = (t: number): number => (t === UNSEEN ? 0 : pageTableLevel(t as StreamPageType));

export function finishRestore(m: RestoreMachine, s: RestoreState, onStep?: StepListener): FinishedDomain {
  const { domid } = s;
  const step = (event: string, detail: string): void => onStep?.(event, detail, domid);
  const vcpu0 = s.vcpus.get(0);
  if (vcpu0 === undefined) throw new RestoreError('missing', 'X86_PV_VCPU_BASIC', 0, 'no X86_PV_VCPU_BASIC record for vCPU 0');
  const hc = (rc: number, record: string, offset: number, what: string): void => {
    if (rc < 0) throw new RestoreError('hypercall', record, offset, what, rc);
  };
  const writePage = (mfn: number, bytes: Uint8Array, record: string, offset: number, what: string): void => {
    const f = m.xc.foreignFrame(domid, mfn, true);
    hc(typeof f === 'number' ? f : f.write(0, bytes), record, offset, `writing ${what} (mfn ${hex(mfn)})`);
  };

  // 1. Page tables.
  let tables = 0;
  for (let pfn = 0; pfn < s.maxPfn; pfn++) {
    const level = levelOf(s.types[pfn]!);
    const mfn = s.p2m[pfn]!;
    if (level === 0 || mfn < 0) continue;
    const at = s.dataAt[pfn]!;
    const page = m.xc.foreignFrame(domid, mfn);
    if (typeof page === 'number') throw new RestoreError('hypercall', 'PAGE_DATA', at, `mapping pfn ${hex(pfn)}`, page);
    const bytes = page.read(0, PAGE_SIZE);
    const p = localizeTable(bytes, level, s.maxPfn, (q) => s.p2m[q]!);
    if (p !== undefined) {
      const code = p.kind === 'pfn-out-of-range' || p.kind === 'unpopulated' ? p.kind : 'page-table';
      throw new RestoreError(code, 'PAGE_DATA', at + 8 * p.entry, describePteProblem(p, level, `pfn ${hex(pfn)}`));
    }
    writePage(mfn, bytes, 'PAGE_DATA', at, `the localized L${level} at pfn ${hex(pfn)}`);
    tables++;
  }
  step('page tables localized', `${tables} tables: every PTE's pfn -> its new mfn`);

  // 2. M2P.
  const pfns: number[] = [];
  const mfns: number[] = [];
  s.p2m.forEach((mfn, pfn) => {
    if (mfn >= 0) {
      pfns.push(pfn);
      mfns.push(mfn);
    }
  });
  hc(machphysUpdate(m.xc, domid, mfns, pfns), 'END', 0, 'MMU_MACHPHYS_UPDATE of the new frames');
  step('M2P updated', `${mfns.length} frames (MMU_MACHPHYS_UPDATE)`);

  // 3. The guest's P2M array.
  s.frames.forEach(({ value: pfn, offset }, i) => {
    const mfn = s.p2m[pfn]!;
    if (mfn < 0) throw new RestoreError('unpopulated', 'X86_PV_P2M_FRAMES', offset, `P2M frame ${i} is pfn ${hex(pfn)}, which the image never gave data for`);
    if (s.types[pfn] !== PageType.NOTAB) {
      throw new RestoreError('page-table', 'X86_PV_P2M_FRAMES', offset, `P2M frame ${i} (pfn ${hex(pfn)}) was saved as a page table, not an ordinary page`);
    }
    const page = new Uint8Array(PAGE_SIZE);
    const dv = new DataView(page.buffer);
    for (let k = 0; k < FPP; k++) {
      const q = i * FPP + k;
      writeFrameNumber(dv, 8 * k, q < s.maxPfn ? s.p2m[q]! : -1);
    }
    writePage(mfn, page, 'X86_PV_P2M_FRAMES', offset, `P2M frame ${i}`);
  });
  step('P2M rewritten', `${s.frames.length} frame(s) of the guest's P2M with the new mfns`);

  // 4. start_info, with fresh event channels.
  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new RestoreError('hypercall', 'END', 0, `the new domain ${domid} vanished`);
  const sharedInfoMfn = info.sharedInfoFrame;
  const rdxAt = vcpu0.offset + VCPU_RDX_OFFSET;
  const siPfn = contextRdx(vcpu0.value);
  const siMfn = ordinaryPage(s, siPfn, 'X86_PV_VCPU_BASIC', rdxAt, 'vCPU 0 rdx (the start_info of the suspend hypercall)');
  const siAt = s.dataAt[Number(siPfn)]!;
  const siPage = m.xc.foreignFrame(domid, siMfn);
  if (typeof siPage === 'number') throw new RestoreError('hypercall', 'PAGE_DATA', siAt, 'mapping start_info', siPage);
  const siBytes = siPage.read(0, PAGE_SIZE);
  const si = start_info.view(bytesMem(siBytes), 0);
  if (!si.getString('magic').startsWith(SI_MAGIC_PREFIX)) {
    throw new RestoreError('start-info', 'X86_PV_VCPU_BASIC', rdxAt, `vCPU 0 rdx names pfn ${hex(siPfn)}, which holds no start_info (magic ${JSON.stringify(si.getString('magic'))})`);
  }
  const storeMfn = ordinaryPage(s, si.get('store_mfn'), 'PAGE_DATA', siAt + start_info.offsetOf('store_mfn'), 'start_info.store_mfn (the guest leaves a PFN there when it suspends)');
  const con = si.sub('console').sub('domU');
  const consoleMfn = ordinaryPage(s, con.get('mfn'), 'PAGE_DATA', siAt + start_info.offsetOf('console.domU.mfn'), 'start_info.console.domU.mfn (a PFN while suspended)');
  const storePort = m.xc.allocUnbound(0, domid);
  hc(storePort, 'END', 0, 'EVTCHNOP_alloc_unbound (xenstore)');
  const consolePort = m.xc.allocUnbound(0, domid);
  hc(consolePort, 'END', 0, 'EVTCHNOP_alloc_unbound (console)');
  si.set('store_mfn', BigInt(storeMfn));
  si.set('store_evtchn', storePort);
  con.set('mfn', BigInt(consoleMfn));
  con.set('evtchn', consolePort);
  si.set('nr_pages', BigInt(s.maxPfn));
  si.set('shared_info', BigInt(sharedInfoMfn) * BigInt(PAGE_SIZE));
  si.set('flags', 0);
  const ctrlIf = rewriteCtrlIf(m, s, si, siAt);
  writePage(siMfn, siBytes, 'PAGE_DATA', siAt, 'start_info');
  step('start_info rewritten', `store mfn ${hex(storeMfn)} port ${storePort}, console mfn ${hex(consoleMfn)} port ${consolePort}, shared_info mfn ${hex(sharedInfoMfn)}`);

  // 5. shared_info.
  writePage(sharedInfoMfn, newSharedInfo(m, domid, sharedInfoMfn, s.sharedInfo), 'SHARED_INFO', s.sharedInfo.offset, 'shared_info');
  step('shared_info rewritten', 'pending bits cleared, every port masked, frame list list 0');

  // 6. Pin: L4s first, so a tree that does not validate is named by its root.
  let pinned = 0;
  for (let level = 4; level >= 1; level--) {
    for (let pfn = 0; pfn < s.maxPfn; pfn++) {
      const t = s.types[pfn]!;
      if (levelOf(t) !== level || (t & 0x8) === 0 || s.p2m[pfn]! < 0) continue;
      const mfn = s.p2m[pfn]!;
      const rc = m.xc.mmuextOp(domid, [{ cmd: MMUEXT_PIN_L1_TABLE + level - 1, arg1: mfn }]);
      if (rc < 0) {
        throw new RestoreError('pin', 'PAGE_DATA', s.dataAt[pfn]!,
          `pinning the L${level} at pfn ${hex(pfn)} (mfn ${hex(mfn)}) failed: the hypervisor does not accept the page-table tree under it`, rc);
      }
      pinned++;
    }
  }
  step('page tables pinned', `${pinned} table(s) (the tree under each validated)`);

  // 7. vCPUs.
  for (const [id, { value: ctx, offset }] of [...s.vcpus].sort((a, b) => a[0] - b[0])) {
    const c = ctx.slice();
    const problem = convertContext(c, id, false, (pfn, field) => {
      const root = field.name.startsWith('ctrlreg');
      if (pfn >= s.maxPfn) return `pfn ${hex(pfn)} is not below max_pfn ${hex(s.maxPfn)}`;
      const mfn = s.p2m[pfn]!;
      if (mfn < 0) return `pfn ${hex(pfn)} was never given data`;
      if (root && levelOf(s.types[pfn]!) !== 4) return `pfn ${hex(pfn)} was not saved as an L4 page table`;
      if (!root && s.types[pfn] !== PageType.NOTAB) return `pfn ${hex(pfn)} was saved as a page table`;
      return mfn;
    });
    if (problem !== undefined) {
      const code = /max_pfn/.test(problem.detail) ? 'pfn-out-of-range' : /never given/.test(problem.detail) ? 'unpopulated' : 'vcpu';
      throw new RestoreError(code, 'X86_PV_VCPU_BASIC', offset + problem.field.offset, `vCPU ${id} ${problem.field.name}: ${problem.detail}`);
    }
    if (id === 0) setContextRax(c, 0);
    hc(m.xc.setVcpuContext(domid, id, c), 'X86_PV_VCPU_BASIC', offset, `setvcpucontext of vCPU ${id}`);
  }
  step('vcpu context set', `${s.vcpus.size} vCPU(s): CR3 and rdx as mfns, vCPU 0 rax = 0`);

  // 8. Grant entries for the console and xenstore pages.
  const seed = (ref: number, frame: number): void => {
    hc(m.gnttab.seedEntry(domid, ref, { flags: GTF_permit_access, domid: 0, frame }), 'END', 0, `seeding grant entry ${ref}`);
  };
  seed(GNTTAB_RESERVED_CONSOLE, consoleMfn);
  seed(GNTTAB_RESERVED_XENSTORE, storeMfn);
  step('grant entries seeded', 'ref 0 (console) and ref 1 (xenstore) for dom0');

  return { storeMfn, storePort, consoleMfn, consolePort, ...(ctrlIf === undefined ? {} : { ctrlIf }), startInfoMfn: siMfn, sharedInfoMfn };
}

const CTRL_IF_PARAM = /\bctrl_if=(\d+),(\d+)\b/;

/**
 * The ctrl_if page and port ride on the command line (xenport's builder
 * puts `ctrl_if=<pfn>,<port>` there, as Xen 2.0 put the port in
 * start_info): the page is the guest's, the port must be made anew, as for
 * the console and xenstore, and the command line rewritten to name it.
 */
function rewriteCtrlIf(m: RestoreMachine, s: RestoreState, si: ReturnType<typeof start_info.view>, siAt: number): FinishedDomain['ctrlIf'] {
  const line = si.getString('cmd_line');
  const match = CTRL_IF_PARAM.exec(line);
  if (match === null) return undefined;
  const at = siAt + start_info.offsetOf('cmd_line') + match.index;
  const mfn = ordinaryPage(s, BigInt(match[1]!), 'PAGE_DATA', at, 'the ctrl_if page on the command line');
  const port = m.xc.allocUnbound(0, s.domid);
  if (port < 0) throw new RestoreError('hypercall', 'END', 0, 'EVTCHNOP_alloc_unbound (ctrl_if)', port);
  const next = line.replace(CTRL_IF_PARAM, `ctrl_if=${match[1]!},${port}`);
  if (next.length >= MAX_GUEST_CMDLINE) throw new RestoreError('start-info', 'PAGE_DATA', at, 'the command line with the new ctrl_if port does not fit');
  si.setString('cmd_line', next);
  return { mfn, port };
}


/** The new MFN of `pfn`, which must be an ordinary page the image gave data for. */
function ordinaryPage(s: RestoreState, pfnRaw: bigint, record: string, offset: number, what: string): number {
  if (pfnRaw >= BigInt(s.maxPfn)) throw new RestoreError('pfn-out-of-range', record, offset, `${what} is ${hex(pfnRaw)}, not a pfn below max_pfn ${hex(s.maxPfn)}`);
  const pfn = Number(pfnRaw);
  const mfn = s.p2m[pfn]!;
  if (mfn < 0) throw new RestoreError('unpopulated', record, offset, `${what} is pfn ${hex(pfn)}, which the image never gave data for`);
  if (s.types[pfn] !== PageType.NOTAB) throw new RestoreError('start-info', record, offset, `${what} is pfn ${hex(pfn)}, which was saved as a page table`);
  return mfn;
}

const VI_OFF = shared_info.offsetOf('vcpu_info');
const VI_BYTES = XEN_LEGACY_MAX_VCPUS * vcpu_info.size;
const ARCH_OFF = shared_info.offsetOf('arch');
const ARCH_BYTES = shared_info.size - ARCH_OFF;
const PENDING_OFF = shared_info.offsetOf('evtchn_pending');
const MASK_OFF = shared_info.offsetOf('evtchn_mask');
const FLL_OFF = shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list');
const UPCALL_PENDING = vcpu_info.offsetOf('evtchn_upcall_pending');
const PENDING_SEL = vcpu_info.offsetOf('evtchn_pending_sel');

/** The new domain's shared_info: its own wall clock, the saved vcpu_info and arch, events quiesced. */
function newSharedInfo(m: RestoreMachine, domid: number, mfn: number, saved: Located<Uint8Array>): Uint8Array {
  const f = m.xc.foreignFrame(domid, mfn);
  if (typeof f === 'number') throw new RestoreError('hypercall', 'SHARED_INFO', saved.offset, `mapping the new shared_info (mfn ${hex(mfn)})`, f);
  const page = f.read(0, PAGE_SIZE);
  page.set(saved.value.subarray(VI_OFF, VI_OFF + VI_BYTES), VI_OFF);
  page.set(saved.value.subarray(ARCH_OFF, ARCH_OFF + ARCH_BYTES), ARCH_OFF);
  page.fill(0, PENDING_OFF, PENDING_OFF + 8 * EVTCHN_WORDS);
  page.fill(0xff, MASK_OFF, MASK_OFF + 8 * EVTCHN_WORDS);
  const dv = new DataView(page.buffer);
  for (let v = 0; v < XEN_LEGACY_MAX_VCPUS; v++) {
    const base = VI_OFF + v * vcpu_info.size;
    dv.setUint8(base + UPCALL_PENDING, 0);
    dv.setBigUint64(base + PENDING_SEL, 0n, true);
  }
  dv.setBigUint64(FLL_OFF, 0n, true);
  return page;
}

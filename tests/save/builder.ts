/*
 * A small libxc-style PV builder for the save/restore tests (the real one is
 * hypervisor/tools/builder; this one has no xenstore and no backends, so the
 * tests exercise save and restore alone). Everything goes through the
 * toolstack handle, as dom0 would:
 *
 *   pfn 0                 the kernel's .data (the memtest mailbox)
 *   P2M array             8 bytes per pfn, mfn_list
 *   start_info, xenstore page, console page
 *   L4, L3, L2s, L1s      map all RAM at SAVE_BASE + pfn * 4096, page-table
 *                         frames read-only, plus spare L1 slots after RAM
 *   boot stack
 *   (first free pfn)      the kernel's P2M frame list, then its pattern pages
 */
import type { Machine } from '../../hypervisor/xen/machine.js';
import type { TestKernel } from '../kernels/image.js';
import { canonicalVa, vaddr } from '../../hypervisor/public/types.js';
import {
  FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_in_kernel, VGCF_online, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW,
  _PAGE_USER, vcpu_guest_context,
} from '../../hypervisor/public/arch-x86_64.js';
import { MMUEXT_PIN_L4_TABLE, XEN_START_INFO_MAGIC, start_info } from '../../hypervisor/public/xen.js';
import { GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_permit_access } from '../../hypervisor/public/grant_table.js';
import { A_FIRST_FREE, A_PATTERN_PAGES, A_WINDOW, SAVE_BASE } from './kernels/memtest.js';

const PAGE = 4096;
/** L1 slots past the end of RAM with no mapping (shared_info goes in the first). */
const SPARE_SLOTS = 16;

export interface GuestOptions {
  /** Pages of RAM (default 256 = 1 MiB). */
  readonly pages?: number;
  /** Pattern pages checked per entry (default 8). */
  readonly window?: number;
  /** Pattern pages (default: all free RAM). */
  readonly patternPages?: number;
  /** Leave the domain paused. */
  readonly paused?: boolean;
  /** start_info.cmd_line. */
  readonly cmdLine?: string;
}

export interface GuestLayout {
  readonly nrPages: number;
  readonly p2mPfn: number;
  readonly p2mPages: number;
  readonly startInfoPfn: number;
  readonly storePfn: number;
  readonly consolePfn: number;
  readonly l4Pfn: number;
  readonly nrPtFrames: number;
  readonly stackPfn: number;
  readonly firstFree: number;
}

export interface BuiltGuest {
  readonly domid: number;
  readonly layout: GuestLayout;
  /** pfn -> mfn as built. */
  readonly p2m: readonly number[];
}

export function planGuest(nrPages: number): GuestLayout & { nL1: number; nL2: number } {
  const p2mPfn = 1;
  const p2mPages = Math.ceil((nrPages * 8) / PAGE);
  const startInfoPfn = p2mPfn + p2mPages;
  const nL1 = Math.ceil((nrPages + SPARE_SLOTS) / 512);
  const nL2 = Math.ceil(nL1 / 512);
  const l4Pfn = startInfoPfn + 3;
  const nrPtFrames = 2 + nL2 + nL1;
  const stackPfn = l4Pfn + nrPtFrames;
  const layout = {
    nrPages, p2mPfn, p2mPages, startInfoPfn, storePfn: startInfoPfn + 1, consolePfn: startInfoPfn + 2,
    l4Pfn, nrPtFrames, stackPfn, firstFree: stackPfn + 1, nL1, nL2,
  };
  if (layout.firstFree + 8 > nrPages) throw new Error(`a guest of ${nrPages} pages is too small for its boot pages`);
  return layout;
}

function ok(rc: number | object, what: string): void {
  if (typeof rc === 'number' && rc < 0) throw new Error(`test builder: ${what} failed: ${rc}`);
}

export function buildGuest(m: Machine, img: TestKernel, o: GuestOptions = {}): BuiltGuest {
  const N = o.pages ?? 256;
  const L = planGuest(N);
  const domid = m.xc.createDomain({ maxVcpus: 1 });
  ok(domid, 'createdomain');
  ok(m.xc.setMaxMem(domid, N * 4 + 1024), 'max_mem');
  const p2m: number[] = [];
  for (let at = 0; at < N; at += 32768) {
    const got = m.xc.populatePhysmap(domid, Array.from({ length: Math.min(32768, N - at) }, (_, i) => at + i));
    if (typeof got === 'number') throw new Error(`test builder: populate_physmap: ${got}`);
    p2m.push(...got);
  }
  const pages = new Map<number, Uint8Array>();
  const page = (pfn: number): DataView => {
    let b = pages.get(pfn);
    if (b === undefined) pages.set(pfn, (b = new Uint8Array(PAGE)));
    return new DataView(b.buffer);
  };
  const put = (pfn: number, slot: number, v: bigint): void => page(pfn).setBigUint64(8 * slot, v, true);
  const pte = (pfn: number, flags: number): bigint => (BigInt(p2m[pfn]!) << 12n) | BigInt(flags);

  for (let pfn = 0; pfn < N; pfn++) put(L.p2mPfn + Math.floor(pfn / 512), pfn % 512, BigInt(p2m[pfn]!));

  const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;
  const l3 = L.l4Pfn + 1;
  const l2 = l3 + 1;
  const l1 = l2 + L.nL2;
  put(L.l4Pfn, Math.floor(SAVE_BASE / 2 ** 39) % 512, pte(l3, upper));
  for (let i = 0; i < L.nL2; i++) put(l3, i, pte(l2 + i, upper));
  for (let i = 0; i < L.nL1; i++) put(l2 + Math.floor(i / 512), i % 512, pte(l1 + i, upper));
  const isPt = (pfn: number): boolean => pfn >= L.l4Pfn && pfn < L.l4Pfn + L.nrPtFrames;
  for (let pfn = 0; pfn < N; pfn++) {
    const flags = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (isPt(pfn) ? 0 : _PAGE_RW | _PAGE_DIRTY);
    put(l1 + Math.floor(pfn / 512), pfn % 512, pte(pfn, flags));
  }

  const d = m.domain(domid)!;
  const storePort = m.xc.allocUnbound(0, domid);
  const consolePort = m.xc.allocUnbound(0, domid);
  ok(storePort, 'alloc_unbound (store)');
  ok(consolePort, 'alloc_unbound (console)');
  const siBytes = new Uint8Array(PAGE);
  pages.set(L.startInfoPfn, siBytes);
  const si = start_info.view(new DataView(siBytes.buffer), 0);
  si.setString('magic', XEN_START_INFO_MAGIC);
  si.set('nr_pages', BigInt(N));
  si.set('shared_info', BigInt(d.sharedInfoMfn) * 4096n);
  si.set('store_mfn', BigInt(p2m[L.storePfn]!));
  si.set('store_evtchn', storePort);
  si.sub('console').sub('domU').set('mfn', BigInt(p2m[L.consolePfn]!));
  si.sub('console').sub('domU').set('evtchn', consolePort);
  si.set('pt_base', canonicalVa(vaddr(SAVE_BASE + L.l4Pfn * PAGE)));
  si.set('nr_pt_frames', BigInt(L.nrPtFrames));
  si.set('mfn_list', canonicalVa(vaddr(SAVE_BASE + L.p2mPfn * PAGE)));
  si.set('first_p2m_pfn', BigInt(L.p2mPfn));
  si.set('nr_p2m_frames', BigInt(L.p2mPages));
  for (let i = 0; i < (o.cmdLine ?? '').length; i++) si.setAt('cmd_line', i, o.cmdLine!.charCodeAt(i));

  put(0, A_FIRST_FREE, BigInt(L.firstFree));
  put(0, A_WINDOW, BigInt(o.window ?? 8));
  put(0, A_PATTERN_PAGES, BigInt(o.patternPages ?? 0));

  for (const [pfn, bytes] of pages) {
    const f = m.xc.foreignFrame(domid, p2m[pfn]!, true);
    if (typeof f === 'number') throw new Error(`test builder: frame of pfn ${pfn}: ${f}`);
    ok(f.write(0, bytes), `writing pfn ${pfn}`);
  }
  ok(m.xc.mmuextOp(domid, [{ cmd: MMUEXT_PIN_L4_TABLE, arg1: p2m[L.l4Pfn]! }]), 'pin L4');
  ok(m.gnttab.seedEntry(domid, GNTTAB_RESERVED_CONSOLE, { flags: GTF_permit_access, domid: 0, frame: p2m[L.consolePfn]! }), 'grant 0');
  ok(m.gnttab.seedEntry(domid, GNTTAB_RESERVED_XENSTORE, { flags: GTF_permit_access, domid: 0, frame: p2m[L.storePfn]! }), 'grant 1');

  const { bytes: ctx, view: c } = vcpu_guest_context.alloc();
  const regs = c.sub('user_regs');
  regs.set('rip', canonicalVa(img.entry));
  regs.set('rsi', canonicalVa(vaddr(SAVE_BASE + L.startInfoPfn * PAGE)));
  regs.set('rsp', canonicalVa(vaddr(SAVE_BASE + (L.stackPfn + 1) * PAGE)));
  regs.set('cs', FLAT_KERNEL_CS);
  regs.set('ss', FLAT_KERNEL_SS);
  regs.set('rflags', 0x200n);
  c.set('flags', BigInt(VGCF_online | VGCF_in_kernel));
  c.setAt('ctrlreg', 3, BigInt(p2m[L.l4Pfn]!) << 12n);
  ok(m.xc.setKernel(domid, img.name), 'set_kernel');
  ok(m.xc.setVcpuContext(domid, 0, ctx), 'setvcpucontext');
  if (o.paused !== true) ok(m.xc.unpauseDomain(domid), 'unpause');
  return { domid, layout: L, p2m };
}

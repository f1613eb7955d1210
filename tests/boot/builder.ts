/*
 * An in-test PV domain builder laying out an x86_64 guest exactly as libxc
 * does (the contract with hypervisor/tools/builder): guest RAM is PFN
 * 0..nr_pages-1, direct-mapped at the image's virtBase by bootstrap page
 * tables whose own frames are mapped read-only; from PFN 0 up:
 *
 *   kernel image (imageSize)  P2M array  start_info  xenstore  console
 *   ctrl_if page  page tables (L4, L3, L2s, L1s)  boot stack  | free ...
 *
 * start_info.shared_info is a machine address; store_mfn and
 * console.domU.mfn are MFNs; pt_base and mfn_list are virtual addresses;
 * the command line carries `ctrl_if=<pfn>,<port>`. Grant entries 0
 * (console) and 1 (xenstore) are seeded for dom0. vCPU 0 starts at the
 * image's entry with rsi = start_info, rsp = top of the boot stack, CR3 =
 * the (pinned) L4. Everything goes through the toolstack API (dom0's
 * hypercalls), as the real builder's does.
 */
import type { Machine } from '../../hypervisor/xen/machine.js';
import type { KernelImage } from '../../hypervisor/public/cpu.js';
import { canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import { start_info, MMUEXT_PIN_L4_TABLE, XEN_START_INFO_MAGIC } from '../../hypervisor/public/xen.js';
import {
  vcpu_guest_context, FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_online, VGCF_in_kernel,
  _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_USER,
} from '../../hypervisor/public/arch-x86_64.js';
import { GTF_permit_access, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE } from '../../hypervisor/public/grant_table.js';

const PAGE = 4096;
const PTES = 512;

export interface PvBuildOptions {
  readonly image: KernelImage;
  /** Guest RAM in MiB (default 16). */
  readonly memMiB?: number;
  /** Command line (ctrl_if=... is appended when ctrlIf is on). */
  readonly cmdline?: string;
  /** Give the guest a ctrl_if page and port (default true). */
  readonly ctrlIf?: boolean;
  /** start_info.magic (default xen-3.0-x86_64): for the hostile-start test. */
  readonly magic?: string;
  /** Leave it paused (default: unpause). */
  readonly paused?: boolean;
}

export interface PvDomain {
  readonly domid: number;
  readonly nrPages: number;
  /** pfn -> mfn. */
  readonly p2m: readonly number[];
  readonly p2mPfn: number;
  readonly startInfoPfn: number;
  readonly storePfn: number;
  readonly consolePfn: number;
  readonly ctrlIfPfn: number;
  readonly ptPfn: number;
  readonly nrPtFrames: number;
  readonly stackPfn: number;
  /** First PFN nothing of the builder's lives in. */
  readonly firstFreePfn: number;
  readonly storePort: number;
  readonly consolePort: number;
  readonly ctrlIfPort: number;
  readonly l4Mfn: number;
  readonly virtBase: Vaddr;
}

function ok(rc: number, what: string): void {
  if (rc < 0) throw new Error(`builder: ${what} failed: ${rc}`);
}

/** Write `bytes` into the guest's frame `mfn` at `off` (foreign map, dom0). */
function put(m: Machine, domid: number, mfn: number, off: number, bytes: Uint8Array): void {
  const f = m.xc.foreignFrame(domid, mfn, true);
  if (typeof f === 'number') throw new Error(`builder: frame ${mfn}: ${f}`);
  ok(f.write(off, bytes), `write frame ${mfn}`);
}

function u64s(values: readonly bigint[]): Uint8Array {
  const b = new Uint8Array(values.length * 8);
  const dv = new DataView(b.buffer);
  values.forEach((v, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, v), true));
  return b;
}

export function buildPvDomain(m: Machine, o: PvBuildOptions): PvDomain {
  const img = o.image;
  m.registerImage(img);
  const nr = (o.memMiB ?? 16) * 256;
  const virtBase = img.virtBase;
  if (virtBase % 2 ** 30 !== 0) throw new Error('builder: virtBase must be 1 GiB aligned');
  const imagePages = img.imageSize / PAGE;
  const p2mPfn = imagePages;
  const p2mPages = Math.ceil((nr * 8) / PAGE);
  const startInfoPfn = p2mPfn + p2mPages;
  const storePfn = startInfoPfn + 1;
  const consolePfn = storePfn + 1;
  const withCtrlIf = o.ctrlIf ?? true;
  const ctrlIfPfn = withCtrlIf ? consolePfn + 1 : 0;
  const ptPfn = (withCtrlIf ? ctrlIfPfn : consolePfn) + 1;
  const nL1 = Math.ceil(nr / PTES);
  const nL2 = Math.ceil(nL1 / PTES);
  const nrPtFrames = 2 + nL2 + nL1;
  const stackPfn = ptPfn + nrPtFrames;
  const firstFreePfn = stackPfn + 1;
  if (firstFreePfn >= nr) throw new Error(`builder: ${o.memMiB ?? 16} MiB is too small for the layout`);

  const domid = m.xc.createDomain({ maxVcpus: 1 });
  ok(domid, 'createdomain');
  ok(m.xc.setMaxMem(domid, (nr + 64) * 4), 'max_mem');
  const p2m = m.xc.populatePhysmap(domid, Array.from({ length: nr }, (_, i) => i));
  if (typeof p2m === 'number') throw new Error(`builder: populate_physmap: ${p2m}`);
  const l4Pfn = ptPfn;
  const l3Pfn = ptPfn + 1;
  const l2Pfn = ptPfn + 2;
  const l1Pfn = ptPfn + 2 + nL2;
  const isPt = (pfn: number): boolean => pfn >= ptPfn && pfn < ptPfn + nrPtFrames;
  const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_USER;
  const pte = (pfn: number, flags: number): bigint => (BigInt(p2m[pfn]!) << 12n) | BigInt(flags);

  // Page tables, written while they are still ordinary pages.
  const l4 = new Array<bigint>(PTES).fill(0n);
  l4[Math.floor(virtBase / 2 ** 39) % PTES] = pte(l3Pfn, upper);
  put(m, domid, p2m[l4Pfn]!, 0, u64s(l4));
  const l3 = new Array<bigint>(PTES).fill(0n);
  const l3First = Math.floor(virtBase / 2 ** 30) % PTES;
  for (let i = 0; i < nL2; i++) l3[l3First + i] = pte(l2Pfn + i, upper);
  put(m, domid, p2m[l3Pfn]!, 0, u64s(l3));
  for (let j = 0; j < nL2; j++) {
    const l2 = new Array<bigint>(PTES).fill(0n);
    for (let i = 0; i < PTES && j * PTES + i < nL1; i++) l2[i] = pte(l1Pfn + j * PTES + i, upper);
    put(m, domid, p2m[l2Pfn + j]!, 0, u64s(l2));
  }
  for (let j = 0; j < nL1; j++) {
    const l1 = new Array<bigint>(PTES).fill(0n);
    for (let i = 0; i < PTES && j * PTES + i < nr; i++) {
      const pfn = j * PTES + i;
      l1[i] = pte(pfn, _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER | (isPt(pfn) ? 0 : _PAGE_RW | _PAGE_DIRTY));
    }
    put(m, domid, p2m[l1Pfn + j]!, 0, u64s(l1));
  }

  // The P2M array.
  const p2mBytes = u64s(p2m.map((x) => BigInt(x)));
  for (let i = 0; i < p2mPages; i++) put(m, domid, p2m[p2mPfn + i]!, 0, p2mBytes.subarray(i * PAGE, Math.min((i + 1) * PAGE, p2mBytes.length)));

  // Event channels dom0 will bind, and the grant entries it will map.
  const storePort = m.xc.allocUnbound(0, domid);
  ok(storePort, 'store port');
  const consolePort = m.xc.allocUnbound(0, domid);
  ok(consolePort, 'console port');
  const ctrlIfPort = withCtrlIf ? m.xc.allocUnbound(0, domid) : 0;
  ok(ctrlIfPort, 'ctrl_if port');
  ok(m.gnttab.seedEntry(domid, GNTTAB_RESERVED_CONSOLE, { flags: GTF_permit_access, domid: 0, frame: p2m[consolePfn]! }), 'grant 0');
  ok(m.gnttab.seedEntry(domid, GNTTAB_RESERVED_XENSTORE, { flags: GTF_permit_access, domid: 0, frame: p2m[storePfn]! }), 'grant 1');

  // start_info.
  const { bytes, view: si } = start_info.alloc();
  const d = m.domain(domid)!;
  si.setString('magic', o.magic ?? XEN_START_INFO_MAGIC);
  si.set('nr_pages', BigInt(nr));
  si.set('shared_info', BigInt(d.sharedInfoMfn) << 12n);
  si.set('flags', 0);
  si.set('store_mfn', BigInt(p2m[storePfn]!));
  si.set('store_evtchn', storePort);
  si.sub('console').sub('domU').set('mfn', BigInt(p2m[consolePfn]!));
  si.sub('console').sub('domU').set('evtchn', consolePort);
  si.set('pt_base', canonicalVa((virtBase + ptPfn * PAGE) as Vaddr));
  si.set('nr_pt_frames', BigInt(nrPtFrames));
  si.set('mfn_list', canonicalVa((virtBase + p2mPfn * PAGE) as Vaddr));
  si.set('first_p2m_pfn', BigInt(p2mPfn));
  si.set('nr_p2m_frames', BigInt(p2mPages));
  const cmdline = [o.cmdline ?? '', withCtrlIf ? `ctrl_if=${ctrlIfPfn},${ctrlIfPort}` : ''].filter((s) => s !== '').join(' ');
  const cmdOff = start_info.offsetOf('cmd_line');
  for (let i = 0; i < cmdline.length && i < 1023; i++) bytes[cmdOff + i] = cmdline.charCodeAt(i) & 0xff;
  put(m, domid, p2m[startInfoPfn]!, 0, bytes);

  ok(m.xc.mmuextOp(domid, [{ cmd: MMUEXT_PIN_L4_TABLE, arg1: p2m[l4Pfn]! }]), 'pin L4');

  const ctx = new Uint8Array(vcpu_guest_context.size);
  const c = vcpu_guest_context.view(new DataView(ctx.buffer), 0);
  const regs = c.sub('user_regs');
  regs.set('rip', canonicalVa(img.entry));
  regs.set('rsp', canonicalVa((virtBase + (stackPfn + 1) * PAGE) as Vaddr));
  regs.set('rsi', canonicalVa((virtBase + startInfoPfn * PAGE) as Vaddr));
  regs.set('cs', FLAT_KERNEL_CS);
  regs.set('ss', FLAT_KERNEL_SS);
  regs.set('rflags', 0x200n);
  c.set('flags', BigInt(VGCF_online | VGCF_in_kernel));
  c.setAt('ctrlreg', 3, BigInt(p2m[l4Pfn]!) << 12n);
  ok(m.xc.setVcpuContext(domid, 0, ctx), 'setvcpucontext');
  ok(m.xc.setKernel(domid, img.name), 'set_kernel');
  if (o.paused !== true) ok(m.xc.unpauseDomain(domid), 'unpause');
  return {
    domid, nrPages: nr, p2m, p2mPfn, startInfoPfn, storePfn, consolePfn, ctrlIfPfn, ptPfn, nrPtFrames, stackPfn,
    firstFreePfn, storePort, consolePort, ctrlIfPort, l4Mfn: p2m[l4Pfn]!, virtBase,
  };
}

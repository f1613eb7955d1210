// A minimal domain builder for the tests (the real, libxc-like builder with
// start_info and the P2M is the toolstack's): create a domain through
// domctl, populate its RAM, write a 4-level page table that direct-maps
// all of it at the kernel's virtBase (page-table frames mapped read-only),
// pin the L4 with mmuext_op, fill the mailbox page, set vCPU 0 and bind the
// kernel image. Everything goes through the toolstack API, i.e. through
// real hypercalls issued by dom0.
import type { Machine } from '../../hypervisor/xen/machine.js';
import type { Domain } from '../../hypervisor/xen/domain.js';
import type { KernelImage } from '../../hypervisor/public/cpu.js';
import { canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import {
  vcpu_guest_context, FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_online, VGCF_in_kernel,
  _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_USER,
} from '../../hypervisor/public/arch-x86_64.js';
import { MMUEXT_PIN_L4_TABLE } from '../../hypervisor/public/xen.js';
import { A_SHINFO_MFN, A_SHINFO_VA, A_NR_PAGES, A_SPARE_VA, A_L1_MFN, A_L4_MFN } from '../kernels/guest.js';

/** VA slots after the direct map that have L1 entries but no mapping. */
const SPARE_SLOTS = 16;

export interface BuildOptions {
  /** Pages of guest RAM, page tables excluded (default 64). */
  readonly pages?: number;
  readonly vcpus?: number;
  /** Extra mailbox arguments: slot -> value. */
  readonly args?: Readonly<Record<number, number | bigint>>;
  /** Symbol to enter at (default the image's entry). */
  readonly entry?: string;
  /** Leave the domain paused (default: unpause). */
  readonly paused?: boolean;
}

export interface Built {
  readonly domid: number;
  readonly d: Domain;
  /** pfn -> mfn of all guest RAM, page tables included. */
  readonly p2m: readonly number[];
  readonly l4: number;
  readonly l1s: readonly number[];
  readonly virtBase: Vaddr;
  readonly nrPages: number;
  /** The mailbox page's MFN. */
  readonly mbox: number;
}

function ok(rc: number | object, what: string): void {
  if (typeof rc === 'number' && rc < 0) throw new Error(`builder: ${what} failed: ${rc}`);
}

export function build(m: Machine, img: KernelImage & { addr?: Readonly<Record<string, Vaddr>> }, o: BuildOptions = {}): Built {
  m.registerImage(img);
  const data = o.pages ?? 64;
  // Page tables needed to map T pages plus the spare slots, L1s first.
  let nL1 = 1;
  let nL2 = 1;
  for (;;) {
    const total = data + nL1 + nL2 + 2;
    const wantL1 = Math.ceil((total + SPARE_SLOTS) / 512);
    const wantL2 = Math.ceil(wantL1 / 512);
    if (wantL1 === nL1 && wantL2 === nL2) break;
    nL1 = wantL1;
    nL2 = wantL2;
  }
  if (nL2 > 1) throw new Error('builder: guest too large for one L2 (1 GiB)');
  const total = data + nL1 + nL2 + 2;
  const domid = m.xc.createDomain({ maxVcpus: o.vcpus ?? 1 });
  ok(domid, 'createdomain');
  ok(m.xc.setMaxMem(domid, (total + 64) * 4), 'max_mem');
  const p2m = m.xc.populatePhysmap(domid, Array.from({ length: total }, (_, i) => i));
  if (typeof p2m === 'number') throw new Error(`builder: populate_physmap: ${p2m}`);
  const l1s = p2m.slice(data, data + nL1);
  const l2 = p2m[data + nL1]!;
  const l3 = p2m[data + nL1 + 1]!;
  const l4 = p2m[data + nL1 + 2]!;
  const isPt = (pfn: number): boolean => pfn >= data;

  const virtBase = img.virtBase;
  if (virtBase % 2 ** 30 !== 0) throw new Error('builder: virtBase must be 1 GiB aligned');
  const pte = (mfn: number, flags: number): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(mfn) * 4096n | BigInt(flags), true);
    return b;
  };
  const write = (mfn: number, index: number, bytes: Uint8Array): void => {
    const f = m.xc.foreignFrame(domid, mfn, true);
    if (typeof f === 'number') throw new Error(`builder: foreign frame ${mfn}: ${f}`);
    ok(f.write(index * 8, bytes), `write pte ${mfn}[${index}]`);
  };
  const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_USER;
  write(l4, Math.floor(virtBase / 2 ** 39) % 512, pte(l3, upper));
  write(l3, Math.floor(virtBase / 2 ** 30) % 512, pte(l2, upper));
  for (let i = 0; i < nL1; i++) write(l2, i, pte(l1s[i]!, upper));
  for (let pfn = 0; pfn < total; pfn++) {
    const flags = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER | (isPt(pfn) ? 0 : _PAGE_RW | _PAGE_DIRTY);
    write(l1s[Math.floor(pfn / 512)]!, pfn % 512, pte(p2m[pfn]!, flags));
  }
  ok(m.xc.mmuextOp(domid, [{ cmd: MMUEXT_PIN_L4_TABLE, arg1: l4 }]), 'pin L4');

  const d = m.domain(domid)!;
  const mbox = p2m[0]!;
  const args = new Map<number, number | bigint>([
    [A_SHINFO_MFN, d.sharedInfoMfn],
    [A_SHINFO_VA, virtBase + total * 4096],
    [A_NR_PAGES, total],
    [A_SPARE_VA, virtBase + (total + 1) * 4096],
    [A_L1_MFN, l1s[0]!],
    [A_L4_MFN, l4],
  ]);
  for (const [k, v] of Object.entries(o.args ?? {})) args.set(Number(k), v);
  for (const [slot, v] of args) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
    write(mbox, slot, b);
  }

  const ctx = new Uint8Array(vcpu_guest_context.size);
  const c = vcpu_guest_context.view(new DataView(ctx.buffer), 0);
  const regs = c.sub('user_regs');
  const entryName = o.entry;
  const entry = entryName === undefined ? img.entry : img.addr?.[entryName];
  if (entry === undefined) throw new Error(`builder: no symbol ${entryName}`);
  regs.set('rip', canonicalVa(entry));
  // Stack: top of the last data page (the test kernels keep little there).
  regs.set('rsp', canonicalVa((virtBase + data * 4096 - 8) as Vaddr));
  regs.set('rsi', canonicalVa(virtBase));
  regs.set('cs', FLAT_KERNEL_CS);
  regs.set('ss', FLAT_KERNEL_SS);
  regs.set('rflags', 0x200n);
  c.set('flags', BigInt(VGCF_online | VGCF_in_kernel));
  c.setAt('ctrlreg', 3, BigInt(l4) << 12n);
  ok(m.xc.setVcpuContext(domid, 0, ctx), 'setvcpucontext');
  ok(m.xc.setKernel(domid, img.name), 'set_kernel');
  if (o.paused !== true) ok(m.xc.unpauseDomain(domid), 'unpause');
  return { domid, d, p2m, l4, l1s, virtBase, nrPages: total, mbox };
}

/** A result slot of a built domain's mailbox, read host-side. */
export function result(m: Machine, b: Built, i: number): bigint {
  return m.memory.readU64(b.mbox, 0x200 + 8 * i);
}

/** Signed result (hypercall return codes). */
export function rc(m: Machine, b: Built, i: number): number {
  return Number(BigInt.asIntN(64, result(m, b, i)));
}

export function variable(m: Machine, b: Built, i: number): number {
  return Number(BigInt.asIntN(64, m.memory.readU64(b.mbox, 0x400 + 8 * i)));
}

export function setArg(m: Machine, b: Built, i: number, v: number | bigint): void {
  m.memory.writeU64(b.mbox, 8 * i, BigInt.asUintN(64, BigInt(v)));
}

/*
 * `memtest`: a test kernel for save/restore. It boots from what a libxc-style
 * builder gave it (rsi = start_info, the P2M array at start_info.mfn_list),
 * publishes its P2M the way a PV kernel must (the 3-level
 * pfn_to_mfn_frame_list_list and max_pfn in shared_info.arch), then runs a
 * memory-verifying loop over the rest of its RAM: each entry checks a
 * window of pages against the pattern it last wrote there (tagged with the
 * page's pfn and generation) and writes the next generation. A page that
 * comes back from a restore with the wrong contents, at the wrong pfn, or
 * stale, counts as an error.
 *
 * Suspend (asked through the mailbox, the test's stand-in for
 * control/shutdown = "suspend"), as NetBSD's xen_prepare_suspend and Linux's
 * xen_pre_suspend do: store and console MFNs in start_info become PFNs,
 * shared_info is unmapped, then SCHEDOP_shutdown(SHUTDOWN_suspend) with
 * rdx = start_info's MFN and rip = `resumed`. There, rax says what happened:
 *   1  cancelled (xl save -c): undo the PFN conversion, remap shared_info
 *   0  a new domain: start_info was rewritten by the restore; map the new
 *      shared_info and republish the P2M frame list, which the restore
 *      cleared (the Mini-OS bug is forgetting this: variant 'forget', and
 *      'stale' puts the pre-suspend MFN back)
 *
 * Like every guest here it keeps nothing in JS between entries: the mailbox
 * page (PFN 0, the kernel's .data) holds its state.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { vaddr, type Vaddr } from '../../../hypervisor/public/types.js';
import {
  __HYPERVISOR_sched_op, __HYPERVISOR_update_va_mapping, UVMF_INVLPG, shared_info, start_info,
} from '../../../hypervisor/public/xen.js';
import { SCHEDOP_shutdown, SCHEDOP_yield, SHUTDOWN_suspend, sched_shutdown } from '../../../hypervisor/public/sched.js';
import { MACH2PHYS_VIRT_START_VA, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW } from '../../../hypervisor/public/arch-x86_64.js';
import { defineKernel, type TestKernel } from '../../kernels/image.js';

/** Direct map of guest RAM: L4 slot 273, above every slot Xen's saver clears (as Linux's PAGE_OFFSET). */
export const SAVE_BASE = vaddr(0x8880_0000_0000);
const MBOX = SAVE_BASE;
const SCRATCH = MBOX + 0x800;
const PAGE = 4096;
const FPP = 512;

/* Arguments (u64 at MBOX + 8 i), written by the builder and the test. */
/** First pfn the builder did not use: the frame-list pages, then the pattern region. */
export const A_FIRST_FREE = 0;
/** Pages checked and rewritten per entry. */
export const A_WINDOW = 1;
/** Non-zero: suspend now (the kernel clears it as its acknowledgement). */
export const A_SUSPEND = 2;
/** Pattern pages (0: all the rest of RAM). */
export const A_PATTERN_PAGES = 3;

/* Variables (u64 at MBOX + 0x400 + 8 i), the kernel's own. */
export const V_SI_VA = 0;
export const V_SHINFO_VA = 1;
export const V_CURSOR = 2;
export const V_SWEEP = 3;
export const V_ERRORS = 4;
/** Resumes in a new domain (rax 0). */
export const V_RESUMES = 5;
/** Cancelled suspends (rax 1). */
export const V_CANCELS = 6;
export const V_LAST_RAX = 7;
export const V_ENTRIES = 8;
/** MFN of the frame list list as last published. */
export const V_FLL_MFN = 9;
export const V_PAT_FIRST = 10;
export const V_PAT_COUNT = 11;
/** 1 + pfn of the first page found wrong (0: none). */
export const V_FIRST_BAD = 12;
export const V_SUSPENDS = 13;
export const V_CHECKED = 14;

export type ResumeBehaviour = 'rebuild' | 'forget' | 'stale';

export interface MemtestVariant {
  readonly name: string;
  readonly textBase: number;
  /** What the kernel does with its P2M frame list after a restore. */
  readonly onResume: ResumeBehaviour;
  /** Leave shared_info mapped across the suspend (a guest bug the saver must refuse). */
  readonly keepSharedInfoMapped?: boolean;
}

const argVa = (i: number): number => MBOX + 8 * i;
const varVa = (i: number): number => MBOX + 0x400 + 8 * i;
const arg = (cpu: GuestCpu, i: number): number => Number(cpu.mem.getBigUint64(argVa(i), true));
const getVar = (cpu: GuestCpu, i: number): number => Number(cpu.mem.getBigUint64(varVa(i), true));
const setVar = (cpu: GuestCpu, i: number, v: number | bigint): void => cpu.mem.setBigUint64(varVa(i), BigInt(v), true);
const incVar = (cpu: GuestCpu, i: number): void => setVar(cpu, i, getVar(cpu, i) + 1);
const va48 = (v: bigint): number => Number(v & 0xffff_ffff_ffffn);

function si(cpu: GuestCpu): ReturnType<typeof start_info.view> {
  return start_info.view(cpu.mem, getVar(cpu, V_SI_VA));
}

/** The guest's P2M entry for `pfn`. */
function p2m(cpu: GuestCpu, pfn: number): bigint {
  return cpu.mem.getBigUint64(va48(si(cpu).get('mfn_list')) + 8 * pfn, true);
}

/** The read-only M2P Xen maps into every PV guest. */
function m2p(cpu: GuestCpu, mfn: bigint): bigint {
  return cpu.mem.getBigUint64(MACH2PHYS_VIRT_START_VA + Number(mfn) * 8, true);
}

const pfnOfVa = (va: number): number => (va - SAVE_BASE) / PAGE;

/** The pattern of generation `gen` (>= 1) of page `pfn`, as 1024 u32. */
function pattern(pfn: number, gen: number): Uint32Array {
  const w = new Uint32Array(PAGE / 4);
  w[0] = pfn;
  w[1] = gen;
  const a = Math.imul(pfn, 0x9e37_79b1) ^ Math.imul(gen, 0x85eb_ca6b);
  for (let j = 2; j < w.length; j++) w[j] = (a ^ Math.imul(j, 0xc2b2_ae35)) >>> 0;
  return w;
}

function mapSharedInfo(cpu: GuestCpu): number {
  const pte = si(cpu).get('shared_info') | BigInt(_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY);
  return cpu.hypercall(__HYPERVISOR_update_va_mapping, getVar(cpu, V_SHINFO_VA), pte, UVMF_INVLPG);
}

/** Build the 3-level P2M frame list in the pages at A_FIRST_FREE and publish it in shared_info. */
function publishP2m(cpu: GuestCpu): void {
  const nrPages = Number(si(cpu).get('nr_pages'));
  const p2mPfn = pfnOfVa(va48(si(cpu).get('mfn_list')));
  const nFrames = Math.ceil(nrPages / FPP);
  const nLists = Math.ceil(nFrames / FPP);
  const fllPfn = arg(cpu, A_FIRST_FREE);
  const listVa = (l: number): number => SAVE_BASE + (fllPfn + 1 + l) * PAGE;
  for (let j = 0; j < nFrames; j++) cpu.mem.setBigUint64(listVa(Math.floor(j / FPP)) + 8 * (j % FPP), p2m(cpu, p2mPfn + j), true);
  const fllVa = SAVE_BASE + fllPfn * PAGE;
  for (let l = 0; l < nLists; l++) cpu.mem.setBigUint64(fllVa + 8 * l, p2m(cpu, fllPfn + 1 + l), true);
  const sh = getVar(cpu, V_SHINFO_VA);
  const fllMfn = p2m(cpu, fllPfn);
  cpu.mem.setBigUint64(sh + shared_info.offsetOf('arch.max_pfn'), BigInt(nrPages), true);
  cpu.mem.setBigUint64(sh + shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list'), fllMfn, true);
  setVar(cpu, V_FLL_MFN, fllMfn);
}

function yieldTo(cpu: GuestCpu, sym: Vaddr): void {
  cpu.regs.setVa('rip', sym);
  cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
}

export function defineMemtest(v: MemtestVariant): TestKernel {
  const k: TestKernel = defineKernel({
    name: v.name,
    virtBase: SAVE_BASE,
    imageSize: PAGE,
    textBase: v.textBase,
    notes: { suspendCancel: true },
    symbols: {
      start(cpu: GuestCpu) {
        const siVa = cpu.regs.getVa('rsi');
        setVar(cpu, V_SI_VA, siVa);
        const nrPages = Number(start_info.view(cpu.mem, siVa).get('nr_pages'));
        // shared_info goes in the spare L1 slot just past the direct map.
        setVar(cpu, V_SHINFO_VA, SAVE_BASE + nrPages * PAGE);
        mapSharedInfo(cpu);
        publishP2m(cpu);
        const nLists = Math.ceil(Math.ceil(nrPages / FPP) / FPP);
        const first = arg(cpu, A_FIRST_FREE) + 1 + nLists;
        const want = arg(cpu, A_PATTERN_PAGES);
        setVar(cpu, V_PAT_FIRST, first);
        setVar(cpu, V_PAT_COUNT, want === 0 ? nrPages - first : Math.min(want, nrPages - first));
        yieldTo(cpu, k.addr['loop']!);
      },

      loop(cpu: GuestCpu) {
        incVar(cpu, V_ENTRIES);
        if (arg(cpu, A_SUSPEND) !== 0) {
          cpu.mem.setBigUint64(argVa(A_SUSPEND), 0n, true);
          suspend(cpu);
          return;
        }
        const first = getVar(cpu, V_PAT_FIRST);
        const count = getVar(cpu, V_PAT_COUNT);
        let cursor = getVar(cpu, V_CURSOR);
        let sweep = getVar(cpu, V_SWEEP);
        for (let n = arg(cpu, A_WINDOW); n > 0 && count > 0; n--) {
          const pfn = first + cursor;
          const va = SAVE_BASE + pfn * PAGE;
          const have = cpu.mem.readBytes(va, PAGE);
          const words = new Uint32Array(have.buffer, have.byteOffset, PAGE / 4);
          const want = sweep === 0 ? new Uint32Array(PAGE / 4) : pattern(pfn, sweep);
          let ok = true;
          for (let j = 0; j < words.length && ok; j++) ok = words[j] === want[j];
          if (!ok) {
            incVar(cpu, V_ERRORS);
            if (getVar(cpu, V_FIRST_BAD) === 0) setVar(cpu, V_FIRST_BAD, pfn + 1);
          }
          incVar(cpu, V_CHECKED);
          const next = pattern(pfn, sweep + 1);
          cpu.mem.writeBytes(va, new Uint8Array(next.buffer));
          cursor++;
          if (cursor === count) {
            cursor = 0;
            sweep++;
          }
        }
        setVar(cpu, V_CURSOR, cursor);
        setVar(cpu, V_SWEEP, sweep);
        yieldTo(cpu, k.addr['loop']!);
      },

      resumed(cpu: GuestCpu) {
        const rax = cpu.regs.getNum('rax');
        setVar(cpu, V_LAST_RAX, BigInt.asUintN(64, BigInt(rax)));
        const s = si(cpu);
        const con = s.sub('console').sub('domU');
        if (rax === 1) {
          // Cancelled: same domain, same frames; undo what suspend did.
          s.set('store_mfn', p2m(cpu, Number(s.get('store_mfn'))));
          con.set('mfn', p2m(cpu, Number(con.get('mfn'))));
          incVar(cpu, V_CANCELS);
          mapSharedInfo(cpu);
        } else if (rax === 0) {
          incVar(cpu, V_RESUMES);
          mapSharedInfo(cpu);
          const sh = getVar(cpu, V_SHINFO_VA);
          if (v.onResume === 'rebuild') publishP2m(cpu);
          else if (v.onResume === 'stale') {
            cpu.mem.setBigUint64(sh + shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list'), BigInt(getVar(cpu, V_FLL_MFN)), true);
          }
        } else {
          incVar(cpu, V_ERRORS);
        }
        yieldTo(cpu, k.addr['loop']!);
      },
    },
  });

  function suspend(cpu: GuestCpu): void {
    const s = si(cpu);
    const con = s.sub('console').sub('domU');
    s.set('store_mfn', m2p(cpu, s.get('store_mfn')));
    con.set('mfn', m2p(cpu, con.get('mfn')));
    if (v.keepSharedInfoMapped !== true) cpu.hypercall(__HYPERVISOR_update_va_mapping, getVar(cpu, V_SHINFO_VA), 0n, UVMF_INVLPG);
    incVar(cpu, V_SUSPENDS);
    const startInfoMfn = p2m(cpu, pfnOfVa(getVar(cpu, V_SI_VA)));
    cpu.regs.setVa('rip', k.addr['resumed']!);
    const args = sched_shutdown.view(cpu.mem, SCRATCH);
    args.set('reason', SHUTDOWN_suspend);
    cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, SCRATCH, startInfoMfn);
  }

  return k;
}

/** The well-behaved kernel. */
export const memtestKernel = defineMemtest({ name: 'memtest', textBase: 0x8000_a000_0000, onResume: 'rebuild' });
/** Forgets to republish its P2M after a restore (Mini-OS's bug). */
export const forgetfulKernel = defineMemtest({ name: 'memtest-forget', textBase: 0x8000_a100_0000, onResume: 'forget' });
/** Republishes the frame list MFN it had before the save. */
export const staleKernel = defineMemtest({ name: 'memtest-stale', textBase: 0x8000_a200_0000, onResume: 'stale' });
/** Suspends with shared_info still mapped. */
export const sloppyKernel = defineMemtest({ name: 'memtest-sloppy', textBase: 0x8000_a300_0000, onResume: 'rebuild', keepSharedInfoMapped: true });

export const ALL_MEMTEST_KERNELS: readonly TestKernel[] = [memtestKernel, forgetfulKernel, staleKernel, sloppyKernel];

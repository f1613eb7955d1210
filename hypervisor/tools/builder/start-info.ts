/*
 * start_info and the initial vCPU context, as the x86_64 PV ABI wants them
 * at the kernel's entry (xen/include/public/xen.h, "start of day" layout):
 *
 *   rip = the image's entry, rsi = start_info (virtual), rsp = top of the
 *   boot stack, CR3 = the L4's MFN, flat kernel code/stack selectors, event
 *   and failsafe callbacks 0 (the kernel registers its own), events masked
 *   in vcpu_info until the kernel unmasks them.
 *
 * Pure functions over byte buffers: the builder writes the results.
 */
import {
  FLAT_KERNEL_CS, FLAT_KERNEL_DS, FLAT_KERNEL_SS, VGCF_in_kernel, VGCF_online, vcpu_guest_context,
} from '../../public/arch-x86_64.js';
import { MAX_GUEST_CMDLINE, XEN_START_INFO_MAGIC, start_info } from '../../public/xen.js';
import { PAGE_SIZE, canonicalVa, vaddr } from '../../public/types.js';
import { BuildError } from './errors.js';
import { pfnVa, type DomainLayout } from './layout.js';

/** What start_info says besides the layout. */
export interface StartInfoFacts {
  readonly sharedInfoMfn: number;
  readonly storeMfn: number;
  readonly storePort: number;
  readonly consoleMfn: number;
  readonly consolePort: number;
  /** SIF_* flags (0 for an ordinary domU). */
  readonly flags: number;
  readonly cmdLine: string;
}

/** RFLAGS.IF: the guest starts with (virtual) interrupts enabled, events still masked. */
const RFLAGS_IF = 0x200n;

/**
 * The kernel command line: `extra`, then `ctrl_if=<pfn>,<port>` (xenport's
 * way of handing Xen 2.0's control interface to the guest). A BuildError
 * when it does not fit in start_info.cmd_line with its NUL.
 */
export function commandLine(extra: string, ctrlIfPfn: number, ctrlIfPort: number): string {
  const param = `ctrl_if=${ctrlIfPfn},${ctrlIfPort}`;
  const line = extra.trim() === '' ? param : `${extra.trim()} ${param}`;
  if (line.length > MAX_GUEST_CMDLINE - 1) {
    throw new BuildError('start_info', `command line of ${line.length} bytes is longer than ${MAX_GUEST_CMDLINE - 1} (shorten extra)`);
  }
  if (/[^\x20-\x7e]/.test(line)) throw new BuildError('start_info', 'extra may contain only printable ASCII characters');
  return line;
}

/** The start_info page's bytes. */
export function startInfoPage(l: DomainLayout, f: StartInfoFacts): Uint8Array {
  const { bytes, view: si } = start_info.alloc();
  si.setString('magic', XEN_START_INFO_MAGIC);
  si.set('nr_pages', BigInt(l.nrPages));
  si.set('shared_info', BigInt(f.sharedInfoMfn) * BigInt(PAGE_SIZE));
  si.set('flags', f.flags);
  si.set('store_mfn', BigInt(f.storeMfn));
  si.set('store_evtchn', f.storePort);
  const con = si.sub('console').sub('domU');
  con.set('mfn', BigInt(f.consoleMfn));
  con.set('evtchn', f.consolePort);
  si.set('pt_base', canonicalVa(vaddr(pfnVa(l, l.l4Pfn))));
  si.set('nr_pt_frames', BigInt(l.nrPtFrames));
  si.set('mfn_list', canonicalVa(vaddr(pfnVa(l, l.p2mPfn))));
  si.set('mod_start', 0n);
  si.set('mod_len', 0n);
  for (let i = 0; i < f.cmdLine.length; i++) si.setAt('cmd_line', i, f.cmdLine.charCodeAt(i));
  si.set('first_p2m_pfn', BigInt(l.p2mPfn));
  si.set('nr_p2m_frames', BigInt(l.p2mPages));
  const page = new Uint8Array(PAGE_SIZE);
  page.set(bytes);
  return page;
}

/** vCPU 0's vcpu_guest_context at the kernel's entry. */
export function bootContext(l: DomainLayout, entry: number, l4Mfn: number): Uint8Array {
  const { bytes, view: c } = vcpu_guest_context.alloc();
  const regs = c.sub('user_regs');
  regs.set('rip', canonicalVa(vaddr(entry)));
  const stackTop = canonicalVa(vaddr(pfnVa(l, l.stackPfn + 1)));
  regs.set('rsp', stackTop);
  regs.set('rsi', canonicalVa(vaddr(pfnVa(l, l.startInfoPfn))));
  regs.set('cs', FLAT_KERNEL_CS);
  regs.set('ss', FLAT_KERNEL_SS);
  regs.set('ds', FLAT_KERNEL_DS);
  regs.set('es', FLAT_KERNEL_DS);
  regs.set('fs', FLAT_KERNEL_DS);
  regs.set('gs', FLAT_KERNEL_DS);
  regs.set('rflags', RFLAGS_IF);
  c.set('flags', BigInt(VGCF_online | VGCF_in_kernel));
  c.set('kernel_ss', BigInt(FLAT_KERNEL_SS));
  c.set('kernel_sp', stackTop);
  c.setAt('ctrlreg', 3, BigInt(l4Mfn) * BigInt(PAGE_SIZE));
  c.set('event_callback_eip', 0n);
  c.set('failsafe_callback_eip', 0n);
  return bytes;
}

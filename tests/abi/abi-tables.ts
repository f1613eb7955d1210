/*
 * Shared tables of the two ABI tests (json.test.ts, headers.test.ts):
 * which of our modules mirror Xen headers, which JSON struct name is which
 * of our layouts, which exports are xenport's own (so no Xen header or JSON
 * entry can check them), and the comparison helpers.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StructLayout, Fields, CType } from '../../hypervisor/public/layout.js';
import * as xen from '../../hypervisor/public/xen.js';
import * as arch from '../../hypervisor/public/arch-x86_64.js';
import * as sched from '../../hypervisor/public/sched.js';
import * as evtchn from '../../hypervisor/public/event_channel.js';
import * as gnttab from '../../hypervisor/public/grant_table.js';
import * as memory from '../../hypervisor/public/memory.js';
import * as vcpu from '../../hypervisor/public/vcpu.js';
import * as callback from '../../hypervisor/public/callback.js';
import * as elfnote from '../../hypervisor/public/elfnote.js';
import * as features from '../../hypervisor/public/features.js';
import * as errno from '../../hypervisor/public/errno.js';
import * as domctl from '../../hypervisor/public/domctl.js';
import * as ring from '../../hypervisor/public/io/ring.js';
import * as blkif from '../../hypervisor/public/io/blkif.js';
import * as netif from '../../hypervisor/public/io/netif.js';
import * as consoleIo from '../../hypervisor/public/io/console.js';
import * as xenbus from '../../hypervisor/public/io/xenbus.js';
import * as xsWire from '../../hypervisor/public/io/xs_wire.js';
import * as domainController from '../../hypervisor/public/domain_controller.js';

/** The folder holding package.json, found by walking up from this file
 * (compiled to build/tests/abi/ or .tmp/NAME/tests/abi/). */
export function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/**
 * Our mirrors of Xen's public headers. domctl.ts is our own ABI: only the
 * constants it keeps from Xen are checked (see XENPORT_OWN).
 * domain_controller.ts mirrors a Xen 2.0 header that 4.17 no longer has:
 * the probe checks it only where that header is installed, and json.test.ts
 * checks it against ARCHITECTURE §5.
 */
export const MIRRORS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  'xen.ts': xen,
  'arch-x86_64.ts': arch,
  'sched.ts': sched,
  'event_channel.ts': evtchn,
  'grant_table.ts': gnttab,
  'memory.ts': memory,
  'vcpu.ts': vcpu,
  'callback.ts': callback,
  'elfnote.ts': elfnote,
  'features.ts': features,
  'errno.ts': errno,
  'domctl.ts': domctl,
  'io/ring.ts': ring,
  'io/blkif.ts': blkif,
  'io/netif.ts': netif,
  'io/console.ts': consoleIo,
  'io/xenbus.ts': xenbus,
  'io/xs_wire.ts': xsWire,
  'domain_controller.ts': domainController,
};

/** Mirrors of headers Xen 4.17 does not ship: no coverage demanded of the probe. */
export const NOT_IN_XEN_4_17: ReadonlySet<string> = new Set(['domain_controller.ts']);

export function isLayout(v: unknown): v is StructLayout<Fields> {
  return typeof v === 'object' && v !== null && 'offsetOf' in v && 'fields' in v && 'isUnion' in v;
}

export type ConstValue = number | bigint | string;
export interface ExportedConst {
  readonly value: ConstValue;
  readonly module: string;
}
export interface ExportedLayout {
  readonly layout: StructLayout<Fields>;
  readonly module: string;
  readonly exportName: string;
}

/** Every primitive constant and every layout the mirrors export, by name. */
export function collectExports(): {
  constants: Map<string, ExportedConst>;
  layouts: Map<string, ExportedLayout>;
  conflicts: string[];
} {
  const constants = new Map<string, ExportedConst>();
  const layouts = new Map<string, ExportedLayout>();
  const conflicts: string[] = [];
  for (const [module, ns] of Object.entries(MIRRORS)) {
    for (const [exportName, value] of Object.entries(ns)) {
      if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'string') {
        const prev = constants.get(exportName);
        if (prev !== undefined && prev.value !== value)
          conflicts.push(`${exportName}: ${String(prev.value)} in ${prev.module} but ${String(value)} in ${module}`);
        if (prev === undefined) constants.set(exportName, { value, module });
      } else if (isLayout(value)) {
        const prev = layouts.get(value.name);
        if (prev !== undefined && prev.layout !== value)
          conflicts.push(`two different layouts named "${value.name}": ${prev.module} ${prev.exportName} and ${module} ${exportName}`);
        if (prev === undefined) layouts.set(value.name, { layout: value, module, exportName });
      }
    }
  }
  return { constants, layouts, conflicts };
}

/** Our layout for each struct name of xen-public-abi.json: the one explicit table. */
export const JSON_STRUCTS: Readonly<Record<string, StructLayout<Fields>>> = {
  'start_info_t': xen.start_info,
  'shared_info_t': xen.shared_info,
  'vcpu_info_t': xen.vcpu_info,
  'vcpu_time_info_t': xen.vcpu_time_info,
  'struct cpu_user_regs': arch.cpu_user_regs,
  'vcpu_guest_context_t': arch.vcpu_guest_context,
  'mmu_update_t': xen.mmu_update,
  'struct mmuext_op': xen.mmuext_op,
  'struct sched_shutdown': sched.sched_shutdown,
  'struct sched_poll': sched.sched_poll,
  'struct evtchn_alloc_unbound': evtchn.evtchn_alloc_unbound,
  'struct evtchn_bind_interdomain': evtchn.evtchn_bind_interdomain,
  'struct evtchn_bind_virq': evtchn.evtchn_bind_virq,
  'struct evtchn_bind_ipi': evtchn.evtchn_bind_ipi,
  'struct evtchn_close': evtchn.evtchn_close,
  'struct evtchn_send': evtchn.evtchn_send,
  'struct evtchn_status': evtchn.evtchn_status,
  'struct evtchn_unmask': evtchn.evtchn_unmask,
  'grant_entry_v1_t': gnttab.grant_entry_v1,
  'struct gnttab_setup_table': gnttab.gnttab_setup_table,
  'struct gnttab_map_grant_ref': gnttab.gnttab_map_grant_ref,
  'struct gnttab_unmap_grant_ref': gnttab.gnttab_unmap_grant_ref,
  'struct gnttab_copy': gnttab.gnttab_copy,
  'struct xen_memory_reservation': memory.xen_memory_reservation,
  'struct vcpu_set_singleshot_timer': vcpu.vcpu_set_singleshot_timer,
  'blkif_request_t': blkif.blkif_request,
  'struct blkif_request_segment': blkif.blkif_request_segment,
  'blkif_response_t': blkif.blkif_response,
  'blkif_sring_t': blkif.blkif_sring,
  'netif_tx_request_t': netif.netif_tx_request,
  'netif_tx_response_t': netif.netif_tx_response,
  'netif_rx_request_t': netif.netif_rx_request,
  'netif_rx_response_t': netif.netif_rx_response,
  'struct netif_extra_info': netif.netif_extra_info,
  'netif_tx_sring_t': netif.netif_tx_sring,
  'netif_rx_sring_t': netif.netif_rx_sring,
  'struct xsd_sockmsg': xsWire.xsd_sockmsg,
  'struct xenstore_domain_interface': xsWire.xenstore_domain_interface,
  'struct xencons_interface': consoleIo.xencons_interface,
};

/** JSON constant names that are C expressions rather than macro names, and our export for each. */
export const CONST_ALIASES: Readonly<Record<string, string>> = {
  '__CONST_RING_SIZE(blkif, 4096)': 'BLKIF_RING_SIZE',
  '__CONST_RING_SIZE(netif_tx, 4096)': 'NET_TX_RING_SIZE',
  '__CONST_RING_SIZE(netif_rx, 4096)': 'NET_RX_RING_SIZE',
};

/**
 * Exports of the mirrors that no Xen 4.17 header defines, so neither the
 * JSON nor the C probe can check them. Each with the reason.
 */
export const XENPORT_OWN: readonly { readonly match: RegExp; readonly why: string }[] = [
  { match: /^(BLKIF|NETIF)_NODE_/, why: 'xenstore node names: documented in the headers\' comments, not macros' },
  { match: /^(_PAGE_[A-Z0-9]+|PTE_[A-Z_]+|L[1-4]_PAGETABLE_SHIFT|PAGETABLE_ENTRIES)$/, why: 'x86 page-table bits: processor architecture, not Xen ABI' },
  { match: /^(HYPERVISOR_VIRT_START|HYPERVISOR_VIRT_END|MACH2PHYS_VIRT_START|MACH2PHYS_VIRT_END)_VA$/, why: '48-bit number forms of the bigint address constants' },
  { match: /^TI_(DPL_MASK|IF)$/, why: 'trap_info.flags bits: Xen has only TI_GET/SET_* macros' },
  { match: /^XEN_START_INFO_MAGIC$/, why: 'the builder writes it; no Xen macro' },
  { match: /^XEN_BLKIF_SECTOR_SIZE$/, why: 'the 512-byte unit blkif.h describes in prose' },
  { match: /^(EINTR|ERESTART)$/, why: 'Xen-internal errno values: the header shows them only to Xen itself' },
  { match: /^XEN_DOMCTL_(set_kernel|KERNEL_NAME_LEN|KERNEL_HASH_LEN|U_PAD)$/, why: 'xenport-only domctl' },
];

export function xenportOwnReason(name: string): string | undefined {
  return XENPORT_OWN.find((o) => o.match.test(name))?.why;
}

/** Must the C probe measure this layout? Not domctl.ts's (our own ABI), not Xen 2.0's. */
export function probeMustMeasure(e: ExportedLayout): boolean {
  return e.module !== 'domctl.ts' && !NOT_IN_XEN_4_17.has(e.module);
}

/** Must the C probe print this constant? Not xenport's own, not Xen 2.0's. */
export function probeMustPrint(name: string, e: ExportedConst): boolean {
  return xenportOwnReason(name) === undefined && !NOT_IN_XEN_4_17.has(e.module);
}

/**
 * Every member path of a layout that a C probe should report: all
 * top-level members, and the members of anonymous nested structs/unions
 * (records whose layout is not exported on its own, so only the parent
 * can check them), recursively.
 */
export function memberPaths(layout: StructLayout<Fields>, exported: ReadonlySet<StructLayout<Fields>>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [name, f] of Object.entries(layout.fields)) {
    const p = prefix + name;
    out.push(p);
    const t: CType = f.type;
    if (t.kind === 'record' && !exported.has(t.layout)) out.push(...memberPaths(t.layout, exported, `${p}.`));
  }
  return out;
}

/** Differences between a layout and expected size/offsets, one line each. */
export function compareStruct(
  label: string,
  layout: StructLayout<Fields>,
  size: number | undefined,
  offsets: Readonly<Record<string, number>>,
): string[] {
  const out: string[] = [];
  if (size !== undefined && layout.size !== size) out.push(`${label}: size is ${layout.size}, expected ${size}`);
  for (const [field, want] of Object.entries(offsets)) {
    let got: number;
    try {
      got = layout.offsetOf(field);
    } catch {
      out.push(`${label}: has no member ${field} (expected at offset ${want})`);
      continue;
    }
    if (got !== want) out.push(`${label}.${field}: offset is ${got}, expected ${want}`);
  }
  return out;
}

/** Does our constant equal a value printed as a signed 64-bit C integer? */
export function sameAsC(ours: ConstValue, c: bigint): boolean {
  if (typeof ours === 'bigint') return BigInt.asIntN(64, ours) === c;
  if (typeof ours === 'number') return Number.isInteger(ours) && BigInt(ours) === c;
  return false;
}

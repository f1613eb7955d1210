/*
 * The trace's tap on the hypercall gate: of every hypercall, the few that
 * are steps of the suspend and resume protocol (ARCHITECTURE §6), seen from
 * the hypervisor's side, as 'xen' records of the machine's trace. Nothing
 * in the guest is changed or asked; a call's arguments and OUT fields are
 * read back from the caller's memory after the handler ran.
 *
 *   a guest's                          record (event: detail)
 *   sched_op(SCHEDOP_shutdown)         SCHEDOP_shutdown: suspend, rdx = start_info mfn 0x..
 *   update_va_mapping of shared_info   shared_info unmapped / shared_info mapped: va, mfn
 *   set_callbacks                      set_callbacks: the kernel symbols
 *   GNTTABOP_setup_table               GNTTABOP_setup_table: frames, status
 *   EVTCHNOP_bind_virq, _bind_ipi,     EVTCHNOP_*: what was bound to which port,
 *     _alloc_unbound, _bind_interdomain,   which port was closed or unmasked
 *     _close, _unmask
 *   the toolstack's (dom0's)
 *   domctl createdomain, destroydomain, pausedomain, unpausedomain,
 *     resumedomain, setvcpucontext, shadow_op log-dirty on/off
 *                                      domctl <name>: about the target domain
 *   mmuext_op pin/unpin for a domain   MMUEXT_PIN_Ln_TABLE / MMUEXT_UNPIN_TABLE: mfns
 *
 * A failed call is recorded too, its detail ending in "= -ERRNO". Decoding
 * never throws into the gate: an unreadable argument just goes unrecorded.
 */
import {
  __HYPERVISOR_sched_op, __HYPERVISOR_update_va_mapping, __HYPERVISOR_set_callbacks, __HYPERVISOR_grant_table_op,
  __HYPERVISOR_event_channel_op, __HYPERVISOR_event_channel_op_compat, __HYPERVISOR_domctl, __HYPERVISOR_mmuext_op,
  DOMID_SELF, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, mmuext_op,
} from '../public/xen.js';
import * as xen from '../public/xen.js';
import { SCHEDOP_shutdown, SHUTDOWN_suspend, sched_shutdown } from '../public/sched.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_unmask,
  evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_ipi, evtchn_bind_virq, evtchn_close, evtchn_op, evtchn_unmask,
} from '../public/event_channel.js';
import { GNTTABOP_setup_table, gnttab_setup_table } from '../public/grant_table.js';
import {
  XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain, XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, XEN_DOMCTL_resumedomain,
  XEN_DOMCTL_setvcpucontext, XEN_DOMCTL_shadow_op, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, XEN_DOMCTL_SHADOW_OP_OFF, xen_domctl,
} from '../public/domctl.js';
import { _PAGE_PRESENT } from '../public/arch-x86_64.js';
import { errnoName } from '../public/errno.js';
import type { GuestMem } from '../public/cpu.js';
import { ptrArg, i32Arg, u32Arg, type CallCtx } from './hcall.js';
import type { HypercallObserver } from './dispatch.js';
import { lookupL1 } from './mm-vamem.js';
import { pteMfn } from './mm-validate.js';
import type { Trace } from './trace.js';
import type { Machine } from './machine.js';

type TraceMachine = Pick<Machine, 'domain' | 'memory'>;

/** VIRQ_* names by number. */
const VIRQ_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [k, v] of Object.entries(xen)) if (k.startsWith('VIRQ_') && typeof v === 'number' && names[v] === undefined) names[v] = k;
  return Object.freeze(names);
})();

const DOMCTL_NAMES: ReadonlyMap<number, string> = new Map([
  [XEN_DOMCTL_createdomain, 'createdomain'], [XEN_DOMCTL_destroydomain, 'destroydomain'],
  [XEN_DOMCTL_pausedomain, 'pausedomain'], [XEN_DOMCTL_unpausedomain, 'unpausedomain'],
  [XEN_DOMCTL_resumedomain, 'resumedomain'], [XEN_DOMCTL_setvcpucontext, 'setvcpucontext'],
  [XEN_DOMCTL_shadow_op, 'shadow_op'],
]);

const PIN_NAMES = ['MMUEXT_PIN_L1_TABLE', 'MMUEXT_PIN_L2_TABLE', 'MMUEXT_PIN_L3_TABLE', 'MMUEXT_PIN_L4_TABLE'] as const;
/** Pins listed one by one up to this many per call; more are counted per level. */
const PINS_LISTED = 4;
const EVTCHN_U = evtchn_op.offsetOf('u');

const hex = (n: number): string => `0x${n.toString(16)}`;
const withRc = (detail: string, rc: number): string => (rc >= 0 ? detail : `${detail}${detail === '' ? '' : ' '}= -${errnoName(rc)}`);

/** The hypercall observer that writes `trace` from `m`'s gate. */
export function traceHypercalls(m: TraceMachine, trace: Trace): HypercallObserver {
  const rec = (domid: number, event: string, detail: string): void => {
    trace.record(domid, 'xen', event, detail);
  };
  return {
    before(c, nr, a1) {
      // What update_va_mapping replaces: a guest's shared_info mapping going away is only visible before.
      if (nr !== __HYPERVISOR_update_va_mapping || c.privileged) return undefined;
      return quietly(() => mappedMfn(m, c, a1));
    },
    after(c, nr, a1, a2, a3, a4, _a5, rc, note) {
      quietly(() => {
        switch (nr) {
          case __HYPERVISOR_sched_op: return schedOp(m, c, a1, a2, rc, rec);
          case __HYPERVISOR_update_va_mapping: return vaMapping(m, c, a1, a2, rc, note, rec);
          case __HYPERVISOR_set_callbacks: return setCallbacks(m, c, a1, a2, rc, rec);
          case __HYPERVISOR_grant_table_op: return grantTableOp(c, a1, a2, rc, rec);
          case __HYPERVISOR_event_channel_op: return eventChannelOp(c, i32Arg(a1), ptrArg(a2), rc, rec);
          case __HYPERVISOR_event_channel_op_compat: {
            const va = ptrArg(a1);
            if (va === undefined) return undefined;
            return eventChannelOp(c, evtchn_op.view(c.mem, va).get('cmd') | 0, va + EVTCHN_U, rc, rec);
          }
          case __HYPERVISOR_domctl: return domctl(c, a1, rc, rec);
          case __HYPERVISOR_mmuext_op: return pins(c, a1, a2, a4, rc, rec);
          default: return undefined;
        }
      });
    },
  };
}

type Rec = (domid: number, event: string, detail: string) => void;

/** Run a decoder; a fault (or anything else) on the way means no record, never an exception in the gate. */
function quietly<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** The MFN the caller's page tables map at VA `a1`, if any. */
function mappedMfn(m: TraceMachine, c: CallCtx, a1: bigint): number | undefined {
  const d = m.domain(c.domid);
  const va = ptrArg(a1);
  if (d === undefined || va === undefined) return undefined;
  const loc = lookupL1(m.memory, d.mem.vcpu(c.vcpuId).cr3Mfn, va);
  if (loc === undefined) return undefined;
  const lo = m.memory.readU64Lo(loc.l1Mfn, loc.index * 8);
  return (lo & _PAGE_PRESENT) === 0 ? undefined : pteMfn(lo, m.memory.lastHigh);
}

function schedOp(m: TraceMachine, c: CallCtx, a1: bigint, a2: bigint, rc: number, rec: Rec): void {
  if (i32Arg(a1) !== SCHEDOP_shutdown || c.privileged) return;
  const arg = ptrArg(a2);
  if (arg === undefined) return;
  const reason = sched_shutdown.view(c.mem, arg).get('reason') & 0xff;
  const d = m.domain(c.domid);
  let detail = reasonName(reason);
  if (reason === SHUTDOWN_suspend && d?.suspendStartInfoMfn !== null && d?.suspendStartInfoMfn !== undefined) {
    detail += `, rdx = start_info mfn ${hex(d.suspendStartInfoMfn)}`;
  }
  rec(c.domid, 'SCHEDOP_shutdown', withRc(detail, rc));
}

function reasonName(reason: number): string {
  return ['poweroff', 'reboot', 'suspend', 'crash', 'watchdog', 'soft_reset'][reason] ?? `reason ${reason}`;
}

function vaMapping(m: TraceMachine, c: CallCtx, a1: bigint, a2: bigint, rc: number, oldMfn: unknown, rec: Rec): void {
  if (c.privileged) return;
  const d = m.domain(c.domid);
  if (d === undefined || d.sharedInfoMfn === 0) return;
  const si = d.sharedInfoMfn;
  const pte = BigInt.asUintN(64, a2);
  const lo = Number(pte & 0xffff_ffffn);
  const newMfn = (lo & _PAGE_PRESENT) === 0 ? undefined : pteMfn(lo, Number(pte >> 32n));
  const va = hex(ptrArg(a1) ?? 0);
  if (newMfn === si) rec(c.domid, 'shared_info mapped', withRc(`va ${va}, mfn ${hex(si)}`, rc));
  else if (oldMfn === si) rec(c.domid, 'shared_info unmapped', withRc(`va ${va}, mfn ${hex(si)}`, rc));
}

function setCallbacks(m: TraceMachine, c: CallCtx, a1: bigint, a2: bigint, rc: number, rec: Rec): void {
  if (c.privileged) return;
  const names = m.domain(c.domid)?.kernel?.symbolNames;
  const sym = (v: bigint): string => {
    const va = ptrArg(v);
    return (va === undefined ? undefined : names?.get(va)) ?? hex(Number(BigInt.asUintN(48, v)));
  };
  rec(c.domid, 'set_callbacks', withRc(`event ${sym(a1)}, failsafe ${sym(a2)}`, rc));
}

function grantTableOp(c: CallCtx, a1: bigint, a2: bigint, rc: number, rec: Rec): void {
  if (u32Arg(a1) !== GNTTABOP_setup_table || c.privileged) return;
  const va = ptrArg(a2);
  if (va === undefined) return;
  const v = gnttab_setup_table.view(c.mem, va);
  rec(c.domid, 'GNTTABOP_setup_table', withRc(`${v.get('nr_frames')} frame(s), status ${v.get('status')}`, rc));
}

function eventChannelOp(c: CallCtx, cmd: number, va: number | undefined, rc: number, rec: Rec): void {
  if (c.privileged || va === undefined) return;
  const mem: GuestMem = c.mem;
  const out = (port: number): string => (rc < 0 ? '' : ` -> port ${port}`);
  switch (cmd) {
    case EVTCHNOP_bind_virq: {
      const v = evtchn_bind_virq.view(mem, va);
      const virq = v.get('virq');
      rec(c.domid, 'EVTCHNOP_bind_virq', withRc(`${VIRQ_NAMES[virq] ?? `virq ${virq}`} vcpu ${v.get('vcpu')}${out(v.get('port'))}`, rc));
      return;
    }
    case EVTCHNOP_bind_ipi: {
      const v = evtchn_bind_ipi.view(mem, va);
      rec(c.domid, 'EVTCHNOP_bind_ipi', withRc(`vcpu ${v.get('vcpu')}${out(v.get('port'))}`, rc));
      return;
    }
    case EVTCHNOP_alloc_unbound: {
      const v = evtchn_alloc_unbound.view(mem, va);
      rec(c.domid, 'EVTCHNOP_alloc_unbound', withRc(`for d${v.get('remote_dom')}${out(v.get('port'))}`, rc));
      return;
    }
    case EVTCHNOP_bind_interdomain: {
      const v = evtchn_bind_interdomain.view(mem, va);
      rec(c.domid, 'EVTCHNOP_bind_interdomain', withRc(`d${v.get('remote_dom')} port ${v.get('remote_port')}${out(v.get('local_port'))}`, rc));
      return;
    }
    case EVTCHNOP_close:
      rec(c.domid, 'EVTCHNOP_close', withRc(`port ${evtchn_close.view(mem, va).get('port')}`, rc));
      return;
    case EVTCHNOP_unmask:
      rec(c.domid, 'EVTCHNOP_unmask', withRc(`port ${evtchn_unmask.view(mem, va).get('port')}`, rc));
      return;
    default:
      return;
  }
}

function domctl(c: CallCtx, a1: bigint, rc: number, rec: Rec): void {
  const va = ptrArg(a1);
  if (va === undefined) return;
  const op = xen_domctl.view(c.mem, va);
  const cmd = op.get('cmd');
  const name = DOMCTL_NAMES.get(cmd);
  if (name === undefined) return;
  // createdomain: `domain` is OUT (the new domid) once it succeeded.
  const domid = op.get('domain');
  let detail = '';
  if (cmd === XEN_DOMCTL_setvcpucontext) {
    const vc = op.sub('u').sub('vcpucontext');
    detail = `vcpu ${vc.get('vcpu')}${vc.get('ctxt') === 0n ? ' (reset)' : ''}`;
  } else if (cmd === XEN_DOMCTL_shadow_op) {
    const sop = op.sub('u').sub('shadow_op').get('op');
    if (sop === XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY) detail = 'log-dirty on';
    else if (sop === XEN_DOMCTL_SHADOW_OP_OFF) detail = 'log-dirty off';
    else return; // CLEAN and PEEK: every pre-copy round; the toolstack's steps say those
  }
  rec(domid, `domctl ${name}`, withRc(detail, rc));
}

function pins(c: CallCtx, a1: bigint, a2: bigint, a4: bigint, rc: number, rec: Rec): void {
  const va = ptrArg(a1);
  const count = u32Arg(a2) & 0x7fff_ffff;
  if (va === undefined || count === 0) return;
  const foreign = u32Arg(a4) & 0xffff;
  const domid = c.privileged && foreign !== DOMID_SELF ? foreign : c.domid;
  const byCmd = new Map<string, number[]>();
  for (let i = 0; i < Math.min(count, 1024); i++) {
    const op = mmuext_op.view(c.mem, va + i * mmuext_op.size);
    const cmd = op.get('cmd');
    if (cmd < MMUEXT_PIN_L1_TABLE || (cmd > MMUEXT_PIN_L4_TABLE && cmd !== MMUEXT_UNPIN_TABLE)) continue;
    const name = cmd === MMUEXT_UNPIN_TABLE ? 'MMUEXT_UNPIN_TABLE' : PIN_NAMES[cmd - MMUEXT_PIN_L1_TABLE]!;
    const mfns = byCmd.get(name) ?? [];
    mfns.push(Number(op.sub('arg1').get('mfn')));
    byCmd.set(name, mfns);
  }
  for (const [name, mfns] of byCmd) {
    const list = mfns.length <= PINS_LISTED ? `mfn ${mfns.map(hex).join(', ')}` : `${mfns.length} tables`;
    rec(domid, name, withRc(list, rc));
  }
}

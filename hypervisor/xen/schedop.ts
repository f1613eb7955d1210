/*
 * sched_op, set_timer_op and vcpu_op: the hypercalls that block, stop or
 * time a vCPU.
 *
 * A descheduling call (yield, block, poll, shutdown, VCPUOP_down of
 * oneself) marks the vCPU `descheduled`: its result stays in rax, the
 * kernel returns to the machine right after the call (its continuation
 * is already in rip), and the vCPU is entered at rip when it runs again.
 */
import {
  SCHEDOP_yield, SCHEDOP_block, SCHEDOP_shutdown, SCHEDOP_poll, SCHEDOP_remote_shutdown, SCHEDOP_shutdown_code,
  SHUTDOWN_suspend, SHUTDOWN_poweroff, sched_shutdown, sched_poll, sched_remote_shutdown,
} from '../public/sched.js';
import {
  VCPUOP_initialise, VCPUOP_up, VCPUOP_down, VCPUOP_is_up, VCPUOP_get_runstate_info,
  VCPUOP_set_periodic_timer, VCPUOP_stop_periodic_timer, VCPUOP_set_singleshot_timer, VCPUOP_stop_singleshot_timer,
  VCPUOP_register_vcpu_info, VCPU_SSHOTTMR_future, RUNSTATE_running, RUNSTATE_runnable, RUNSTATE_blocked, RUNSTATE_offline,
  vcpu_set_singleshot_timer, vcpu_set_periodic_timer, vcpu_register_vcpu_info, vcpu_runstate_info,
} from '../public/vcpu.js';
import { vcpu_info } from '../public/xen.js';
import { vcpu_guest_context } from '../public/arch-x86_64.js';
import { EINVAL, ENOSYS, EPERM, ESRCH, ENOENT, EEXIST, ETIME, EFAULT } from '../public/errno.js';
import { PAGE_SIZE } from '../public/types.js';
import { MAX_POLL_PORTS } from './evtchn.js';
import { guestAccess, ptrArg, i32Arg, type CallCtx, type HypercallHandler } from './hcall.js';
import { getPageAndType } from './mm.js';
import { PageType } from './frametable.js';
import { setContext } from './vcpu-context.js';
import type { Machine } from './machine.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

const UPCALL_PENDING = vcpu_info.offsetOf('evtchn_upcall_pending');
const UPCALL_MASK = vcpu_info.offsetOf('evtchn_upcall_mask');
const PENDING_SEL = vcpu_info.offsetOf('evtchn_pending_sel');
/** A timeout this far ahead (2^50 ns, ~13 days) is a guest bug; Xen fires it in 50 ms. */
const PATHOLOGICAL_TIMEOUT = 2 ** 50;
const PATHOLOGICAL_DELAY = 50_000_000;

function callerOf(m: Machine, c: CallCtx): { d: Domain; v: Vcpu } | undefined {
  const d = m.domain(c.domid);
  const v = d?.vcpus[c.vcpuId];
  return d === undefined || v === undefined ? undefined : { d, v };
}

/** local_events_need_delivery(): an upcall is pending and not masked. */
function eventsPending(v: Vcpu): boolean {
  const info = v.info;
  return info !== null && info.mem.getUint8(info.base + UPCALL_PENDING) !== 0 && info.mem.getUint8(info.base + UPCALL_MASK) === 0;
}

/** sched_op(cmd, arg). */
export function makeSchedOp(m: Machine): HypercallHandler {
  return (c, a1, a2) => guestAccess(() => {
    const who = callerOf(m, c);
    if (who === undefined) return -ESRCH;
    const { d, v } = who;
    const cmd = i32Arg(a1);
    const arg = ptrArg(a2);
    switch (cmd) {
      case SCHEDOP_yield:
        if (!d.isHost) v.descheduled = true;
        return 0;
      case SCHEDOP_block: {
        if (d.isHost) return -EINVAL;
        // Blocking enables event delivery (Xen's local_event_delivery_enable).
        const info = v.info;
        if (info !== null) info.mem.setUint8(info.base + UPCALL_MASK, 0);
        v.descheduled = true;
        if (!eventsPending(v)) m.sched.block(v, 'block');
        return 0;
      }
      case SCHEDOP_shutdown: {
        if (arg === undefined) return -EFAULT;
        const reason = sched_shutdown.view(c.mem, arg).get('reason');
        if (d.isHost) return -EINVAL;
        if ((reason & 0xff) === SHUTDOWN_suspend) d.suspendStartInfoMfn = Number(v.regs.get('rdx') & 0xf_ffff_ffff_ffffn);
        v.descheduled = true;
        m.shutdownDomain(d, reason);
        return 0;
      }
      case SCHEDOP_poll:
        if (arg === undefined) return -EFAULT;
        return poll(m, c, d, v, arg);
      case SCHEDOP_remote_shutdown: {
        if (!c.privileged) return -EPERM;
        if (arg === undefined) return -EFAULT;
        const r = sched_remote_shutdown.view(c.mem, arg);
        const target = m.domain(r.get('domain_id'));
        if (target === undefined || target.isHost) return -ESRCH;
        m.shutdownDomain(target, r.get('reason'));
        return 0;
      }
      case SCHEDOP_shutdown_code: {
        if (arg === undefined) return -EFAULT;
        const reason = sched_shutdown.view(c.mem, arg).get('reason');
        if (d.shutdownCode < 0) d.shutdownCode = reason & 0xff;
        return 0;
      }
      default:
        return -ENOSYS;
    }
  });
}

function poll(m: Machine, c: CallCtx, d: Domain, v: Vcpu, arg: number): number {
  if (d.isHost) return -EINVAL;
  const p = sched_poll.view(c.mem, arg);
  const nr = p.get('nr_ports');
  const timeout = p.get('timeout');
  const portsVa = ptrArg(p.get('ports'));
  if (nr > MAX_POLL_PORTS) return -EINVAL;
  if (portsVa === undefined) return -EFAULT;
  const ports: number[] = [];
  for (let i = 0; i < nr; i++) ports.push(c.mem.getUint32(portsVa + 4 * i, true));
  v.descheduled = true;
  if (eventsPending(v)) return 0;
  const rc = m.evtchn.poll(d.id, v.id, ports);
  if (rc < 0) {
    v.descheduled = false;
    return rc;
  }
  if (rc === 1) return 0;
  m.sched.block(v, 'poll');
  if (timeout !== 0n) m.timers.set(v.pollTimer, Number(timeout > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : timeout));
  return 0;
}

/** Arm the one-shot timer for absolute system time `deadline` (Xen's rules). */
function setSingleshot(m: Machine, v: Vcpu, deadline: number): void {
  const now = m.clock.now();
  if (deadline - now > PATHOLOGICAL_TIMEOUT) deadline = now + PATHOLOGICAL_DELAY;
  m.timers.set(v.singleshot, deadline);
}

/** set_timer_op(timeout): absolute ns; 0 stops the timer. */
export function makeSetTimerOp(m: Machine): HypercallHandler {
  return (c, a1) => {
    const who = callerOf(m, c);
    if (who === undefined) return -ESRCH;
    const t = BigInt.asUintN(64, a1);
    if (t === 0n) m.timers.cancel(who.v.singleshot);
    else setSingleshot(m, who.v, t > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(t));
    return 0;
  };
}

/** vcpu_op(cmd, vcpuid, arg). */
export function makeVcpuOp(m: Machine): HypercallHandler {
  return (c, a1, a2, a3) => guestAccess(() => {
    const d = m.domain(c.domid);
    if (d === undefined) return -ESRCH;
    const cmd = i32Arg(a1);
    const id = i32Arg(a2);
    const v = d.vcpus[id];
    if (id < 0 || v === undefined) return -ENOENT;
    const arg = ptrArg(a3);
    switch (cmd) {
      case VCPUOP_initialise: {
        if (arg === undefined) return -EFAULT;
        if (v.initialised) return -EEXIST;
        const bytes = c.mem.readBytes(arg, vcpu_guest_context.size);
        return setContext(m, d, v, bytes);
      }
      case VCPUOP_up:
        if (!v.initialised) return -EINVAL;
        v.up = true;
        m.sched.wake(v);
        return 0;
      case VCPUOP_down: {
        if (v.id === c.vcpuId) v.descheduled = true;
        // The last online vCPU going down is a power-off, as on Xen.
        if (!d.vcpus.some((o) => o !== v && o.up)) {
          m.shutdownDomain(d, SHUTDOWN_poweroff);
          return 0;
        }
        v.up = false;
        return 0;
      }
      case VCPUOP_is_up:
        return v.up ? 1 : 0;
      case VCPUOP_get_runstate_info: {
        if (arg === undefined) return -EFAULT;
        const r = vcpu_runstate_info.view(c.mem, arg);
        const state = !v.up ? RUNSTATE_offline : v.blocked !== 'none' ? RUNSTATE_blocked : v.id === c.vcpuId && d.id === c.domid ? RUNSTATE_running : RUNSTATE_runnable;
        r.set('state', state);
        r.set('state_entry_time', BigInt(m.clock.now()));
        r.setAt('time', RUNSTATE_running, BigInt(v.cpuTimeNs));
        r.setAt('time', RUNSTATE_runnable, 0n);
        r.setAt('time', RUNSTATE_blocked, 0n);
        r.setAt('time', RUNSTATE_offline, 0n);
        return 0;
      }
      case VCPUOP_set_singleshot_timer: {
        if (v.id !== c.vcpuId) return -EINVAL;
        if (arg === undefined) return -EFAULT;
        const t = vcpu_set_singleshot_timer.view(c.mem, arg);
        const deadline = t.get('timeout_abs_ns');
        const flags = t.get('flags');
        const dl = deadline > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(deadline);
        if ((flags & VCPU_SSHOTTMR_future) !== 0 && dl < m.clock.now()) return -ETIME;
        setSingleshot(m, v, dl);
        return 0;
      }
      case VCPUOP_stop_singleshot_timer:
        if (v.id !== c.vcpuId) return -EINVAL;
        m.timers.cancel(v.singleshot);
        return 0;
      case VCPUOP_set_periodic_timer: {
        if (arg === undefined) return -EFAULT;
        const period = vcpu_set_periodic_timer.view(c.mem, arg).get('period_ns');
        // Xen's floor: periods under 1 ms are refused.
        if (period < 1_000_000n) return -EINVAL;
        v.periodNs = period > 10n ** 15n ? 1e15 : Number(period);
        m.timers.set(v.periodic, m.clock.now() + v.periodNs);
        return 0;
      }
      case VCPUOP_stop_periodic_timer:
        v.periodNs = 0;
        m.timers.cancel(v.periodic);
        return 0;
      case VCPUOP_register_vcpu_info: {
        if (arg === undefined) return -EFAULT;
        return registerVcpuInfo(m, c, d, v, arg);
      }
      default:
        return -ENOSYS;
    }
  });
}

/**
 * VCPUOP_register_vcpu_info: move the vCPU's vcpu_info to (mfn, offset), a
 * frame of the domain's own. As Xen, the current contents move along and
 * every selector bit is set so the guest rescans all ports once.
 */
function registerVcpuInfo(m: Machine, c: CallCtx, d: Domain, v: Vcpu, arg: number): number {
  const r = vcpu_register_vcpu_info.view(c.mem, arg);
  const mfnBig = r.get('mfn');
  const offset = r.get('offset');
  if (r.get('rsvd') !== 0) return -EINVAL;
  if (offset > PAGE_SIZE - vcpu_info.size || offset % 8 !== 0) return -EINVAL;
  if (v.vcpuInfoAt !== null) return -EINVAL;
  if (mfnBig > BigInt(m.frames.nrFrames)) return -EINVAL;
  const mfn = Number(mfnBig);
  // A writable type reference, held for the domain's life, as Xen's map_vcpu_info.
  if (!d.mem.owns(mfn) || getPageAndType(m.mmEnv, mfn, d.id, PageType.Writable) !== 0) return -EINVAL;
  const mem = m.memory.frameMem(mfn);
  const old = v.info;
  if (old !== null) mem.writeBytes(offset, old.mem.readBytes(old.base, vcpu_info.size));
  else mem.writeBytes(offset, new Uint8Array(vcpu_info.size));
  mem.setBigUint64(offset + PENDING_SEL, 0xffff_ffff_ffff_ffffn, true);
  mem.setUint8(offset + UPCALL_PENDING, 1);
  v.info = { mem, base: offset };
  v.vcpuInfoAt = { mfn, offset };
  return 0;
}

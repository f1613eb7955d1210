/*
 * The toolstack's requests on control/shutdown (NetBSD's shutdown_xenbus.c,
 * Linux's drivers/xen/manage.c).
 *
 * Nodes (relative to /local/domain/<domid>/, all the guest's own):
 *   control/feature-poweroff, feature-reboot, feature-suspend
 *                       written "1" at boot: what this kernel handles
 *   control/shutdown    the toolstack writes "poweroff", "reboot",
 *                       "suspend", "halt"; the guest reads it and acks by
 *                       writing "" in the same transaction (the toolstack
 *                       times out on a suspend nobody acks). Writing ""
 *                       fires the watch again: "" is ignored.
 *
 * The watch callback is a chain on the xenbus thread:
 *   transaction start -> read -> write "" -> commit
 * and a commit that conflicts (EAGAIN: someone wrote the node meanwhile)
 * starts over, as NetBSD and Linux do. Then the request is carried out:
 *   poweroff  SCHEDOP_shutdown(SHUTDOWN_poweroff), after the devices'
 *             shutdown handlers (pmf)
 *   reboot    the same with SHUTDOWN_reboot
 *   suspend   the suspend hook (xenbus_set_suspend_hook; the save/restore
 *             path installs it), run as the next step of this chain so it
 *             may sleep; without one, "suspend not supported yet"
 *   halt, anything else: printed, ignored.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { SCHEDOP_shutdown, SHUTDOWN_poweroff, SHUTDOWN_reboot } from '../../../hypervisor/public/sched.js';
import { ksymtab, ksymaddr, ksymresolve, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { printf } from '../../../sys/kern/subr_prf.js';
import { pmf_system_shutdown } from '../../../sys/kern/kern_pmf.js';
import { kglobals, kg_addr, curlwp } from '../../../sys/sys/kernel.js';
import { preempt } from '../../../sys/kern/kern_synch.js';
import { RB_AUTOBOOT, RB_HALT } from '../../../sys/sys/reboot.js';
import { vptr, vptr_set } from '../../../sys/lib/libkern/libkern.js';
import { HYPERVISOR_sched_op } from '../include/hypercalls.js';
import { xenbus_softc, xenbus_softc_of, xb_addr } from './xenbus_var.js';
import {
  xs_transaction_start, xs_transaction_end, xs_read, xs_write, xs_result, xs_result_tx, xs_write_async, XS_EAGAIN, XS_ENOENT,
  XS_ENXIO,
} from './xenbus_xs.js';
import { xenbus_watch_path_async } from './xenbus_watch.js';

export const SHUTDOWN_NODE = 'control/shutdown';
/** Commits that may conflict before the handler gives up on a request. */
const SHUTDOWN_MAX_TRIES = 16;

/* sc_shutdown_how */
const HOW_NONE = 0;
const HOW_POWEROFF = 1;
const HOW_REBOOT = 2;
const HOW_SUSPEND = 3;
const HOW_HALT = 4;
const HOW_OTHER = 5;

const HOW_BY_NAME: Readonly<Record<string, number>> = Object.freeze({
  poweroff: HOW_POWEROFF, reboot: HOW_REBOOT, suspend: HOW_SUSPEND, halt: HOW_HALT,
});

function sd_view(cpu: GuestCpu, sc: number) {
  return xenbus_softc.view(cpu.mem, sc);
}

/** Boot step 3 (a job on the xenbus thread): advertise, then watch control/shutdown. */
export function xenbus_shutdown_setup(cpu: GuestCpu, sc: number): void {
  for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) xs_write_async(cpu, `control/${f}`, '1');
  const id = xenbus_watch_path_async(cpu, SHUTDOWN_NODE, 'xenbus_shutdown_handler', sc);
  if (id === 0) printf(cpu, 'xenbus_shutdown_setup: unable to watch control/shutdown\n');
  sd_view(cpu, sc).set('sc_shutdown_watch', id);
}

/**
 * What control/shutdown = "suspend" runs: `hook(cpu, sc, 0)` as a step of
 * the xenbus thread (later steps get sc too). 0 removes it. ENXIO before
 * xenbus attached.
 */
export function xenbus_set_suspend_hook(cpu: GuestCpu, hook: KSym): number {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return XS_ENXIO;
  vptr_set(sd_view(cpu, sc), 'sc_suspend_hook', ksymresolve(cpu, hook));
  return 0;
}

/** The watch fired: start a transaction. */
export function xenbus_shutdown_handler(cpu: GuestCpu, sc: number): void {
  const v = sd_view(cpu, sc);
  v.set('sc_shutdown_tries', 0);
  v.set('sc_shutdown_how', HOW_NONE);
  xs_transaction_start(cpu, 'xenbus_shutdown_txstarted');
}

export function xenbus_shutdown_txstarted(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const tx = xs_result_tx(r);
  if (tx === 0) {
    printf(cpu, 'xenbus_shutdown_handler: transaction_start failed (%d)\n', r.error);
    return;
  }
  sd_view(cpu, sc).set('sc_shutdown_tx', tx);
  xs_read(cpu, tx, SHUTDOWN_NODE, 'xenbus_shutdown_read');
}

export function xenbus_shutdown_read(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const v = sd_view(cpu, sc);
  const tx = v.get('sc_shutdown_tx');
  if (r.error !== 0 || r.value === '') {
    if (r.error !== 0 && r.error !== XS_ENOENT) printf(cpu, 'xenbus_shutdown_handler: read failed (%d)\n', r.error);
    v.set('sc_shutdown_how', HOW_NONE);
    xs_transaction_end(cpu, tx, false, 'xenbus_shutdown_ended');
    return;
  }
  const how = Object.prototype.hasOwnProperty.call(HOW_BY_NAME, r.value) ? (HOW_BY_NAME[r.value] as number) : HOW_OTHER;
  if (how === HOW_OTHER) printf(cpu, 'xenbus: ignoring shutdown request: %s\n', r.value);
  v.set('sc_shutdown_how', how);
  xs_write(cpu, tx, SHUTDOWN_NODE, '', 'xenbus_shutdown_acked');
}

export function xenbus_shutdown_acked(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (r.error !== 0) printf(cpu, 'xenbus_shutdown_handler: ack failed (%d)\n', r.error);
  xs_transaction_end(cpu, sd_view(cpu, sc).get('sc_shutdown_tx'), r.error === 0, 'xenbus_shutdown_ended');
}

export function xenbus_shutdown_ended(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const v = sd_view(cpu, sc);
  const how = v.get('sc_shutdown_how');
  if (r.error === XS_EAGAIN && how !== HOW_NONE) {
    const tries = v.get('sc_shutdown_tries') + 1;
    v.set('sc_shutdown_tries', tries);
    if (tries < SHUTDOWN_MAX_TRIES) {
      xs_transaction_start(cpu, 'xenbus_shutdown_txstarted');
      return;
    }
    printf(cpu, 'xenbus_shutdown_handler: gave up after %d conflicts\n', tries);
    return;
  }
  if (r.error !== 0 && how !== HOW_NONE) {
    printf(cpu, 'xenbus_shutdown_handler: transaction_end failed (%d)\n', r.error);
    return;
  }
  xenbus_shutdown_act(cpu, sc, how);
}

/** Carry out an acknowledged request. */
function xenbus_shutdown_act(cpu: GuestCpu, sc: number, how: number): void {
  switch (how) {
    case HOW_POWEROFF:
      printf(cpu, 'xenbus: poweroff requested\n');
      pmf_system_shutdown(cpu, RB_HALT);
      xenbus_shutdown_domain(cpu, SHUTDOWN_poweroff);
      return;
    case HOW_REBOOT:
      printf(cpu, 'xenbus: reboot requested\n');
      pmf_system_shutdown(cpu, RB_AUTOBOOT);
      xenbus_shutdown_domain(cpu, SHUTDOWN_reboot);
      return;
    case HOW_SUSPEND: {
      const hook = vptr(sd_view(cpu, sc), 'sc_suspend_hook');
      if (hook === 0) {
        printf(cpu, 'xenbus: suspend not supported yet\n');
        return;
      }
      printf(cpu, 'xenbus: suspend requested\n');
      kcall(cpu, hook, sc, 0);
      return;
    }
    case HOW_HALT:
      printf(cpu, 'xenbus: halt requested; ignored\n');
      return;
    default:
      return;
  }
}

/**
 * SCHEDOP_shutdown(reason): a descheduling hypercall, so the step ends
 * here. The vCPU is left at a continuation that asks again, should the
 * machine ever enter it, and the calling thread is parked (nothing after
 * the shutdown runs, not even the next job).
 */
export function xenbus_shutdown_domain(cpu: GuestCpu, reason: number): void {
  kglobals(cpu).sub('kg_shutdown').set('reason', reason);
  cpu.regs.setVa('rip', ksymaddr(cpu, 'xenbus_shutdown_halted'));
  HYPERVISOR_sched_op(cpu, SCHEDOP_shutdown, kg_addr('kg_shutdown'));
  if (curlwp(cpu) !== 0) preempt(cpu, 'xenbus_shutdown_parked');
}

/** Where a shut-down vCPU stays. */
export function xenbus_shutdown_halted(cpu: GuestCpu): void {
  HYPERVISOR_sched_op(cpu, SCHEDOP_shutdown, kg_addr('kg_shutdown'));
}

/** Where the thread that shut the domain down stays. */
export function xenbus_shutdown_parked(cpu: GuestCpu): void {
  cpu.regs.setVa('rip', ksymaddr(cpu, 'xenbus_shutdown_halted'));
  HYPERVISOR_sched_op(cpu, SCHEDOP_shutdown, kg_addr('kg_shutdown'));
  preempt(cpu, 'xenbus_shutdown_parked');
}

/** Which watch serves control/shutdown (0: none). */
export function xenbus_shutdown_watch_id(cpu: GuestCpu, sc: number): number {
  return cpu.mem.getUint32(xb_addr(sc, 'sc_shutdown_watch'), true);
}

export const xenbus_shutdown_ksyms = ksymtab({
  sd_view, xenbus_shutdown_setup, xenbus_set_suspend_hook, xenbus_shutdown_handler, xenbus_shutdown_txstarted,
  xenbus_shutdown_read, xenbus_shutdown_acked, xenbus_shutdown_ended, xenbus_shutdown_act, xenbus_shutdown_domain,
  xenbus_shutdown_halted, xenbus_shutdown_parked, xenbus_shutdown_watch_id,
});

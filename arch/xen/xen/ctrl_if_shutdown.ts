/*
 * CMSG_SHUTDOWN over ctrl_if: the Xen 2.0 way for dom0 to ask a guest to
 * power off, reboot, suspend, or handle a SysRq key (NetBSD's
 * xen_shutdown_handler in ctrl_if.c, Linux 2.4-xen's shutdown_handler).
 *
 * The receiver answers at once (length 0, echoing the request, so dom0's
 * `xl shutdown --ctrl-if` sees its request acknowledged) and names what
 * to do once the answer is out; the ctrl_if thread runs it:
 *
 *   POWEROFF  devices' shutdown handlers (pmf), then
 *             SCHEDOP_shutdown(SHUTDOWN_poweroff); the thread stays parked
 *   REBOOT    the same with SHUTDOWN_reboot
 *   SUSPEND   xen_suspend_request(cpu) of the save/restore path
 *             (arch/xen/xen/xen_suspend.ts), found by symbol so that this
 *             driver links with or without it; without it the request is
 *             answered and "suspend via ctrl_if not available yet" printed;
 *             a refusal (one already under way: EBUSY) is printed
 *   SYSRQ     msg[0] is the key: printed (there is no debugger to enter)
 *   other subtypes: printed, answered, ignored.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import {
  control_msg, CMSG_SHUTDOWN_POWEROFF, CMSG_SHUTDOWN_REBOOT, CMSG_SHUTDOWN_SUSPEND, CMSG_SHUTDOWN_SYSRQ,
} from '../../../hypervisor/public/domain_controller.js';
import { SHUTDOWN_poweroff, SHUTDOWN_reboot } from '../../../hypervisor/public/sched.js';
import { ksymtab, ksymaddr, kcall } from '../../../sys/kern/kern_ksyms.js';
import { printf } from '../../../sys/kern/subr_prf.js';
import { pmf_system_shutdown } from '../../../sys/kern/kern_pmf.js';
import { RB_AUTOBOOT, RB_HALT } from '../../../sys/sys/reboot.js';
import { xenbus_shutdown_domain } from '../xenbus/xenbus_shutdown.js';
import { ksymlookup } from './xen_machdep.js';

/** The save/restore path's entry point (xen_suspend.ts), looked up by name. */
export const XEN_SUSPEND_REQUEST = 'xen_suspend_request';

const MSG_BODY = control_msg.offsetOf('msg');

/** The CMSG_SHUTDOWN receiver: answer with length 0, and say what to do after. */
export function ctrl_if_shutdown_rx(cpu: GuestCpu, _sc: number, msg: number): number {
  const m = control_msg.view(cpu.mem, msg);
  const subtype = m.get('subtype');
  const len = m.get('length');
  m.set('length', 0);
  switch (subtype) {
    case CMSG_SHUTDOWN_POWEROFF:
      printf(cpu, 'ctrl_if0: poweroff requested\n');
      return ksymaddr(cpu, 'ctrl_if_do_poweroff');
    case CMSG_SHUTDOWN_REBOOT:
      printf(cpu, 'ctrl_if0: reboot requested\n');
      return ksymaddr(cpu, 'ctrl_if_do_reboot');
    case CMSG_SHUTDOWN_SUSPEND:
      printf(cpu, 'ctrl_if0: suspend requested\n');
      return ksymaddr(cpu, 'ctrl_if_do_suspend');
    case CMSG_SHUTDOWN_SYSRQ: {
      const key = len >= 1 ? cpu.mem.getUint8(msg + MSG_BODY) : 0;
      if (key >= 0x21 && key < 0x7f) printf(cpu, 'ctrl_if0: sysrq %c\n', key);
      else printf(cpu, 'ctrl_if0: sysrq without a printable key (0x%02x)\n', key);
      return 0;
    }
    default:
      printf(cpu, 'ctrl_if0: ignoring shutdown subtype %u\n', subtype);
      return 0;
  }
}

export function ctrl_if_do_poweroff(cpu: GuestCpu, _sc: number): void {
  pmf_system_shutdown(cpu, RB_HALT);
  xenbus_shutdown_domain(cpu, SHUTDOWN_poweroff);
}

export function ctrl_if_do_reboot(cpu: GuestCpu, _sc: number): void {
  pmf_system_shutdown(cpu, RB_AUTOBOOT);
  xenbus_shutdown_domain(cpu, SHUTDOWN_reboot);
}

export function ctrl_if_do_suspend(cpu: GuestCpu, _sc: number): void {
  const sym = ksymlookup(cpu, XEN_SUSPEND_REQUEST);
  if (sym === 0) {
    printf(cpu, 'ctrl_if0: suspend via ctrl_if not available yet\n');
    return;
  }
  const error = kcall(cpu, sym);
  if (error !== 0) printf(cpu, 'ctrl_if0: suspend not started (error %d)\n', error);
}

export const ctrl_if_shutdown_ksyms = ksymtab({ ctrl_if_shutdown_rx, ctrl_if_do_poweroff, ctrl_if_do_reboot, ctrl_if_do_suspend });

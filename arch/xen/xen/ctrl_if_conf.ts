/*
 * How the kernel configuration links ctrl_if (arch/xen/conf):
 *   CTRL_IF_KSYMTABS  after the other Xen drivers' tables (files.xen.ts)
 *   CTRL_IF_CFDATA    the `ctrl_if0 at hypervisor0` line (ioconf.ts)
 *
 * What other kernel code uses (see each file's opening comment):
 *   ctrl_if.ts           ctrl_if_register_receiver / ctrl_if_unregister_receiver,
 *                        ctrl_if_stats, ctrl_if_usable
 *   ctrl_if_tx.ts        ctrl_if_send (+ ctrl_if_result), ctrl_if_send_async
 *   ctrl_if_shutdown.ts  CMSG_SHUTDOWN
 */
import type { CfDesc } from '../../../sys/sys/device.js';
import type { KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { ctrl_if_softc, ctrl_if_var_ksyms } from './ctrl_if_var.js';
import { ctrl_if_ksyms } from './ctrl_if.js';
import { ctrl_if_tx_ksyms } from './ctrl_if_tx.js';
import { ctrl_if_shutdown_ksyms } from './ctrl_if_shutdown.js';

export const CTRL_IF_KSYMTABS: readonly KSymTab[] = Object.freeze([
  ctrl_if_var_ksyms,
  ctrl_if_ksyms,
  ctrl_if_tx_ksyms,
  ctrl_if_shutdown_ksyms,
]);

/** `ctrl_if0 at hypervisor0`. */
export const CTRL_IF_CFDATA: readonly CfDesc[] = Object.freeze([
  Object.freeze({ name: 'ctrl_if', atname: 'hypervisor', match: 'ctrl_if_match', attach: 'ctrl_if_attach', devsize: ctrl_if_softc.size }),
]);

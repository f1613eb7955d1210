/*
 * <xen/xenbus.h>: what the rest of the kernel uses of xenbus, and how the
 * kernel configuration links it in.
 *
 * Kernel configuration (arch/xen/conf):
 *   XENBUS_KSYMTABS  link after the Xen drivers' tables (files.xen.ts)
 *   XENBUS_CFDATA    `xenbus0 at hypervisor0` line for the device table (ioconf.ts)
 *
 * Drivers attaching at xenbus0 (match on xa_type: "vbd", "vif", ...):
 *   CfDesc { name: 'xbd', atname: 'xenbus', match, attach, devsize }
 *   attach gets `struct xenbusdev_attach_args` (xenbus_var.ts); xa_xbusd
 *   is the device for every xenbus_client call.
 *
 * xenstore (an lwp, or a chain on the xenbus thread; collect with xs_result):
 *   xs_read / xs_write / xs_directory / xs_mkdir / xs_rm (cpu, tx, path, [value,] cont)
 *   xs_transaction_start(cpu, cont) -> xs_result_tx(xs_result(cpu))
 *   xs_transaction_end(cpu, tx, commit, cont)      EAGAIN: start over
 *   xs_write_async(cpu, path, value)               nobody waits
 * watches (the callback runs on the xenbus thread and may sleep):
 *   xenbus_watch_path(cpu, path, func, arg, idp, cont)
 *   xenbus_watch_path_async(cpu, path, func, arg) -> id
 *   xenbus_unwatch(cpu, id); xenwatch_path(cpu); xenwatch_scratch(cpu)
 *   xenbus_defer(cpu, func, arg)                   run a chain on the xenbus thread
 * devices: see xenbus_client.ts.
 * the host: xenbus_publish(cpu, key, value)        data/<key>
 * save/restore: xs_suspend(cpu, cont) before pmf_system_suspend,
 *   xs_resume(cpu, sc, cancelled) (pmf resume does it with cancelled = false),
 *   xenbus_set_suspend_hook(cpu, sym)              what control/shutdown = suspend runs
 */
import type { CfDesc } from '../../../sys/sys/device.js';
import type { KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { xenbus_softc } from './xenbus_var.js';
import { xenbus_var_ksyms } from './xenbus_var.js';
import { xenbus_machdep_ksyms } from './xenbus_machdep.js';
import { xenbus_comms_ksyms } from './xenbus_comms.js';
import { xenbus_xs_ksyms } from './xenbus_xs.js';
import { xenbus_watch_ksyms } from './xenbus_watch.js';
import { xenbus_probe_ksyms } from './xenbus_probe.js';
import { xenbus_client_ksyms } from './xenbus_client.js';
import { xenbus_shutdown_ksyms } from './xenbus_shutdown.js';
import { xenbus_dev_ksyms } from './xenbus_dev.js';

export {
  xs_read, xs_write, xs_directory, xs_mkdir, xs_rm, xs_transaction_start, xs_transaction_end, xs_result, xs_result_tx,
  xs_strings, xs_write_async, xs_rm_async, xs_complete_now, xs_suspend, xs_suspended, xs_errno, type XsResult,
} from './xenbus_xs.js';
export {
  xenbus_watch_path, xenbus_watch_path_async, xenbus_unwatch, xenbus_defer, xenwatch_path, xenwatch_scratch,
} from './xenbus_watch.js';
export {
  xenbus_device_path, xenbus_otherend_path, xenbus_otherend_id, xenbus_device_dev, xenbus_switch_state,
  xenbus_switch_state_async, xenbus_read_driver_state, xenbus_result_state, xenbus_watch_otherend,
  xenbus_unwatch_otherend, xenbus_grant_ring, xenbus_alloc_evtchn, xenbus_dev_error, xenbus_dev_fatal, xenbus_continue,
} from './xenbus_client.js';
export { xs_resume, xenbus_device_find } from './xenbus_probe.js';
export { xenbus_set_suspend_hook } from './xenbus_shutdown.js';
export { xenbus_publish } from './xenbus_dev.js';
export { xenbus_softc_of, xenbusdev_attach_args, xenbus_device } from './xenbus_var.js';

/** xenbus's kernel text, in link order. */
export const XENBUS_KSYMTABS: readonly KSymTab[] = Object.freeze([
  xenbus_var_ksyms,
  xenbus_machdep_ksyms,
  xenbus_comms_ksyms,
  xenbus_xs_ksyms,
  xenbus_watch_ksyms,
  xenbus_probe_ksyms,
  xenbus_client_ksyms,
  xenbus_shutdown_ksyms,
  xenbus_dev_ksyms,
]);

/** `xenbus0 at hypervisor0`. */
export const XENBUS_CFDATA: readonly CfDesc[] = Object.freeze([
  Object.freeze({ name: 'xenbus', atname: 'hypervisor', match: 'xenbus_match', attach: 'xenbus_attach', devsize: xenbus_softc.size }),
]);

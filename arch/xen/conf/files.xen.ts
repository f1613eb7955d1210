/*
 * arch/xen's part of the kernel text, in link order (sys/conf/files.ts has
 * the MI part): the include helpers, x86 (entry, memory, upcall,
 * autoconf root), then the Xen drivers. Drivers added later go at the end,
 * so the addresses of everything here stay put.
 */
import type { KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { hypercalls_ksyms } from '../include/hypercalls.js';
import { xen_include_ksyms } from '../include/xen.js';
import { locore_ksyms } from '../x86/locore.js';
import { machdep_ksyms } from '../x86/machdep.js';
import { x86_xpmap_ksyms } from '../x86/x86_xpmap.js';
import { hypervisor_machdep_ksyms } from '../x86/hypervisor_machdep.js';
import { mainbus_ksyms } from '../x86/mainbus.js';
import { xen_machdep_ksyms } from '../xen/xen_machdep.js';
import { evtchn_ksyms } from '../xen/evtchn.js';
import { xengnt_ksyms } from '../xen/xengnt.js';
import { xen_clock_ksyms } from '../xen/xen_clock.js';
import { hypervisor_ksyms } from '../xen/hypervisor.js';
import { xencons_ksyms } from '../xen/xencons.js';
import { XENBUS_KSYMTABS } from '../xenbus/xenbus.js';
import { xen_suspend_machdep_ksyms } from '../xen/xen_suspend_machdep.js';
import { xen_suspend_ksyms } from '../xen/xen_suspend.js';
import { NET_KSYMTABS } from '../../../sys/net/net_conf.js';
import { XENNET_KSYMTABS } from '../xen/if_xennet_xenbus.js';
import { XBD_KSYMTABS } from '../xen/xbd_xenbus.js';
import { CTRL_IF_KSYMTABS } from '../xen/ctrl_if_conf.js';
import { WORKLOAD_KSYMTABS } from '../../../sys/workloads/workloads.js';
import { wl_blk_block_ksyms } from '../../../sys/workloads/wl_blk_block.js';
import { wl_blk_ksyms } from '../../../sys/workloads/wl_blk.js';
import { wl_net_ksyms } from '../../../sys/workloads/wl_net.js';

export const XEN_KSYMTABS: readonly KSymTab[] = Object.freeze([
  hypercalls_ksyms,
  xen_include_ksyms,
  locore_ksyms,
  machdep_ksyms,
  x86_xpmap_ksyms,
  hypervisor_machdep_ksyms,
  mainbus_ksyms,
  xen_machdep_ksyms,
  evtchn_ksyms,
  xengnt_ksyms,
  xen_clock_ksyms,
  hypervisor_ksyms,
  xencons_ksyms,
  ...XENBUS_KSYMTABS,
  xen_suspend_machdep_ksyms,
  xen_suspend_ksyms,
  ...NET_KSYMTABS,
  ...XENNET_KSYMTABS,
  ...XBD_KSYMTABS,
  ...CTRL_IF_KSYMTABS,
  ...WORKLOAD_KSYMTABS,
  wl_blk_block_ksyms,
  wl_blk_ksyms,
  wl_net_ksyms,
]);

/*
 * The kernel's device table (what config(1) makes of XEN3_DOMU into
 * ioconf.c): which drivers exist and where each attaches. The boot path
 * loads it with config_cfdata_attach before autoconfiguration.
 *
 *   mainbus0 (root)
 *   hypervisor0 at mainbus0
 *   xencons0 at hypervisor0
 *
 * Drivers that attach at hypervisor are offered by hypervisor0 in the
 * order of this table.
 */
import type { CfDesc } from '../../../sys/sys/device.js';
import { xencons_softc } from '../xen/xencons.js';
import { XENBUS_CFDATA } from '../xenbus/xenbus.js';
import { XENNET_CFDATA } from '../xen/if_xennet_xenbus.js';
import { XBD_CFDATA } from '../xen/xbd_xenbus.js';
import { CTRL_IF_CFDATA } from '../xen/ctrl_if_conf.js';

export const XEN3_DOMU_CFDATA: readonly CfDesc[] = Object.freeze([
  Object.freeze({ name: 'mainbus', atname: '', match: 'mainbus_match', attach: 'mainbus_attach', devsize: 0 }),
  Object.freeze({ name: 'hypervisor', atname: 'mainbus', match: 'hypervisor_match', attach: 'hypervisor_attach', devsize: 0 }),
  Object.freeze({ name: 'xencons', atname: 'hypervisor', match: 'xencons_match', attach: 'xencons_attach', devsize: xencons_softc.size }),
  ...XENBUS_CFDATA,
  ...XENNET_CFDATA,
  ...XBD_CFDATA,
  ...CTRL_IF_CFDATA,
]);

/*
 * Guest workloads for the machine tests: kernel text linked into a netbsd
 * image (defineNetbsdImage) and run by init from `workload=<name>`. They
 * keep their state in guest memory (lwp frame) and report on the console.
 *
 * Until the kernel configuration links xenbus (files.xen.ts, ioconf.ts),
 * `xbtest_attach` attaches xenbus0 under hypervisor0 the way autoconf
 * would; once it is linked, xenbus0 is there already and it does nothing.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { lwp_frame } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { config_cfdata_attach, device_lookup } from '../../sys/kern/subr_autoconf.js';
import { hypervisor_attach_child } from '../../arch/xen/xen/hypervisor.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { XEN_KSYMTABS } from '../../arch/xen/conf/files.xen.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { XENBUS_KSYMTABS, XENBUS_CFDATA } from '../../arch/xen/xenbus/xenbus.js';
import { xenbus_softc_of } from '../../arch/xen/xenbus/xenbus_var.js';
import {
  xs_read, xs_write, xs_result, xs_result_tx, xs_transaction_start, xs_transaction_end, XS_EAGAIN,
} from '../../arch/xen/xenbus/xenbus_xs.js';
import { xenbus_watch_path, xenwatch_path } from '../../arch/xen/xenbus/xenbus_watch.js';
import { xenbusdev_attach_args } from '../../arch/xen/xenbus/xenbus_var.js';
import {
  xenbus_grant_ring, xenbus_alloc_evtchn, xenbus_device_path, xenbus_watch_otherend, xenbus_switch_state,
  xenbus_switch_state_async, xenbus_dev_fatal,
} from '../../arch/xen/xenbus/xenbus_client.js';
import { xs_write_async } from '../../arch/xen/xenbus/xenbus_xs.js';
import { XenbusStateInitialised, XenbusStateConnected, XenbusStateClosing } from '../../hypervisor/public/io/xenbus.js';
import { aprint_normal } from '../../sys/kern/subr_prf.js';
import { device_private } from '../../sys/kern/subr_autoconf.js';
import { uvm_pagealloc } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { ptr_get, ptr_set, vptr } from '../../sys/lib/libkern/libkern.js';

const f32 = (cpu: GuestCpu, i: number): number => cpu.mem.getUint32(lwp_frame(cpu) + 4 * i, true);
const f32set = (cpu: GuestCpu, i: number, v: number): void => cpu.mem.setUint32(lwp_frame(cpu) + 4 * i, v, true);

/** xenbus0, attached now if the kernel configuration did not. */
function xbtest_attach(cpu: GuestCpu): boolean {
  if (xenbus_softc_of(cpu) !== 0) return true;
  config_cfdata_attach(cpu, XENBUS_CFDATA);
  const hv = device_lookup(cpu, 'hypervisor', 0);
  return hv !== 0 && hypervisor_attach_child(cpu, hv, 'xenbus') !== 0;
}

export const xenbusWorkloads = ksymtab({
  xbtest_attach,

  /** Just xenbus: boot, probe, shutdown watcher, data/boot. */
  workload_xenbus(cpu: GuestCpu): void {
    printf(cpu, 'xbtest: xenbus %s\n', xbtest_attach(cpu) ? 'up' : 'missing');
  },

  /** Write and read back our own node, watch another and print what fires. */
  workload_xbrw(cpu: GuestCpu): void {
    xbtest_attach(cpu);
    xs_write(cpu, 0, 'data/xbrw', 'written by the guest', 'xbrw_1');
  },
  xbrw_1(cpu: GuestCpu): void {
    printf(cpu, 'xbrw: write %d\n', xs_result(cpu).error);
    xs_read(cpu, 0, 'data/xbrw', 'xbrw_2');
  },
  xbrw_2(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'xbrw: read %d "%s"\n', r.error, r.value);
    xenbus_watch_path(cpu, 'data/poke', 'xbrw_poked', 0, 0, 'xbrw_3');
  },
  xbrw_3(cpu: GuestCpu): void {
    printf(cpu, 'xbrw: watch %d\n', xs_result(cpu).error);
  },
  xbrw_poked(cpu: GuestCpu): void {
    xs_read(cpu, 0, xenwatch_path(cpu), 'xbrw_poked_1');
  },
  xbrw_poked_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'xbrw: poked %s="%s" (%d)\n', xenwatch_path(cpu), r.value, r.error);
  },

  /** Increment data/counter in a transaction, pausing 20 ticks between read and write; retry on EAGAIN. */
  workload_xbtx(cpu: GuestCpu): void {
    xbtest_attach(cpu);
    xs_transaction_start(cpu, 'xbtx_1');
  },
  xbtx_1(cpu: GuestCpu): void {
    const tx = xs_result_tx(xs_result(cpu));
    f32set(cpu, 0, tx);
    xs_read(cpu, tx, 'data/counter', 'xbtx_2');
  },
  xbtx_2(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    f32set(cpu, 1, Number(r.value));
    printf(cpu, 'xbtx: read %s in tx (try %d)\n', r.value, f32(cpu, 2));
    kpause(cpu, 'xbtx', f32(cpu, 2) === 0 ? 20 : 1, 'xbtx_3');
  },
  xbtx_3(cpu: GuestCpu): void {
    xs_write(cpu, f32(cpu, 0), 'data/counter', String(f32(cpu, 1) + 1), 'xbtx_4');
  },
  xbtx_4(cpu: GuestCpu): void {
    xs_result(cpu);
    xs_transaction_end(cpu, f32(cpu, 0), true, 'xbtx_5');
  },
  xbtx_5(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'xbtx: commit %d\n', r.error);
    if (r.error === XS_EAGAIN) {
      f32set(cpu, 2, f32(cpu, 2) + 1);
      xs_transaction_start(cpu, 'xbtx_1');
    }
  },
});

/*
 * tbdrv: a frontend for device type "tbx", enough of a split driver to use
 * every xenbus_client call against the real hypervisor: a ring page
 * granted to the backend, an unbound port for it, the nodes written, the
 * handshake driven by the backend's state.
 */
export const TBDRV_CFDATA = Object.freeze([{ name: 'tbdrv', atname: 'xenbus', match: 'tbdrv_match', attach: 'tbdrv_attach', devsize: 16 }]);

export const tbdrvSyms = ksymtab({
  tbdrv_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
    return xenbusdev_attach_args.view(cpu.mem, aux).getString('xa_type') === 'tbx' ? 1 : 0;
  },
  tbdrv_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    const xbusd = vptr(xenbusdev_attach_args.view(cpu.mem, aux), 'xa_xbusd');
    aprint_normal(cpu, ': test frontend\n');
    ptr_set(cpu.mem, device_private(cpu, self), xbusd);
    const ring = uvm_pagealloc(cpu, UVM_KMF_ZERO);
    const ref = ring === 0 ? -12 : xenbus_grant_ring(cpu, xbusd, ring);
    const port = xenbus_alloc_evtchn(cpu, xbusd);
    if (ref < 0 || port < 0) return;
    const path = xenbus_device_path(cpu, xbusd);
    xs_write_async(cpu, `${path}/ring-ref`, String(ref));
    xs_write_async(cpu, `${path}/event-channel`, String(port));
    xenbus_watch_otherend(cpu, xbusd, 'tbdrv_backend_changed');
    xenbus_switch_state_async(cpu, xbusd, XenbusStateInitialised);
  },
  tbdrv_backend_changed(cpu: GuestCpu, dev: number, state: number): void {
    const xbusd = ptr_get(cpu.mem, device_private(cpu, dev));
    printf(cpu, 'tbdrv: backend state %d\n', state);
    if (state === XenbusStateConnected) xenbus_switch_state(cpu, xbusd, XenbusStateConnected, 'tbdrv_connected');
    else if (state === XenbusStateClosing) xenbus_dev_fatal(cpu, xbusd, 5, 'backend is closing');
  },
  tbdrv_connected(cpu: GuestCpu): void {
    printf(cpu, 'tbdrv: connected (%d)\n', xs_result(cpu).error);
  },
  /** xenbus plus the tbdrv driver table line: the host adds the device afterwards. */
  workload_xbdrv(cpu: GuestCpu): void {
    xbtest_attach(cpu);
    config_cfdata_attach(cpu, TBDRV_CFDATA);
    printf(cpu, 'xbdrv: ready\n');
  },
});

/** A netbsd image with xenbus (linked here if the configuration does not yet) and these workloads. */
export function xenbusImage(extra: readonly KSymTab[] = []): LinkedKernelImage {
  const linked = XENBUS_KSYMTABS.every((t) => XEN_KSYMTABS.includes(t));
  return defineNetbsdImage([...(linked ? [] : XENBUS_KSYMTABS), xenbusWorkloads, tbdrvSyms, ...extra], 'netbsd-xenbus');
}

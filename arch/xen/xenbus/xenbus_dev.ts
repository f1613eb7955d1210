/*
 * What the guest tells the host through xenstore: the data/ directory.
 *
 * NetBSD's xenbus_dev gives userland raw xenstore access; this kernel has
 * no userland, so workloads and drivers get the one thing they need from
 * it, `xenbus_publish(cpu, key, value)`: write `data/<key>` (relative to
 * /local/domain/<domid>, a directory the builder made the guest's own).
 * Nobody waits for the write; it goes out in order with every other
 * request, and a failure is printed.
 *
 * Nodes written at boot, once the probe and the shutdown watcher are up:
 *   data/kernel          "NetBSD/xen"
 *   data/kernel-version  the version hash of the running kernel text, the
 *                        one the toolstack recorded when it booted the image
 *   data/boot            "complete"
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import type { KernCpu } from '../../../sys/kern/kern_ksyms.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { aprint_verbose } from '../../../sys/kern/subr_prf.js';
import { KERNBASE, KERNEL_IMAGE_SIZE } from '../include/vmparam.js';
import { xenbus_softc, XBF_BOOTED } from './xenbus_var.js';
import { xs_write_async, XS_EINVAL } from './xenbus_xs.js';

export const XENBUS_DATA_DIR = 'data';

/** A key under data/: one or more path elements of xenstore's allowed characters. */
export function xenbus_publish_key_ok(key: string): boolean {
  return key.length > 0 && key.length <= 256 && /^[A-Za-z0-9_@-]+(\/[A-Za-z0-9_@-]+)*$/.test(key);
}

/**
 * Write data/<key> = value for the host to read. 0 once queued, else an
 * errno (ENXIO: no xenbus; EIO: xenbus failed; EINVAL: bad key).
 */
export function xenbus_publish(cpu: GuestCpu, key: string, value: string): number {
  if (!xenbus_publish_key_ok(key)) return XS_EINVAL;
  return xs_write_async(cpu, `${XENBUS_DATA_DIR}/${key}`, value);
}

/** The version hash of the running kernel text, as its image computes it. */
export function xenbus_kernel_version(cpu: GuestCpu): string {
  const text = (cpu as Partial<KernCpu>).ktext;
  if (text === undefined) return 'unknown';
  return text.versionHash(`virtBase=${KERNBASE.toString(16)} imageSize=${KERNEL_IMAGE_SIZE.toString(16)}`);
}

/** Boot step 4 (a job on the xenbus thread): say who we are and that boot is done. */
export function xenbus_boot_publish(cpu: GuestCpu, sc: number): void {
  xenbus_publish(cpu, 'kernel', 'NetBSD/xen');
  xenbus_publish(cpu, 'kernel-version', xenbus_kernel_version(cpu));
  xenbus_publish(cpu, 'boot', 'complete');
  const v = xenbus_softc.view(cpu.mem, sc);
  v.set('sc_flags', v.get('sc_flags') | XBF_BOOTED);
  aprint_verbose(cpu, 'xenbus: boot complete\n');
}

export const xenbus_dev_ksyms = ksymtab({ xenbus_publish_key_ok, xenbus_publish, xenbus_kernel_version, xenbus_boot_publish });

/*
 * pmf(9): power management of the device tree, the frame of save/restore.
 *
 * A driver registers suspend and resume handlers when it attaches
 * (kernel symbols `fn(cpu, dev)` returning true for success; 0 means "no
 * work needed"). pmf_system_suspend() suspends every device, leaves first,
 * so a bus is never quiesced under a child still using it; resume goes
 * roots first, so a child finds its bus working again.
 *
 * Unlike NetBSD, which logs a failed device suspend and carries on, a
 * device that refuses makes the whole suspend fail: the devices already
 * suspended are resumed (roots first) and the caller sees false, with the
 * system as it was. Save/restore must not go ahead with a device in an
 * unknown state. As in NetBSD, a device that never registered blocks
 * suspend before anything is touched.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { device, DVF_ACTIVE, DVF_POWER_HANDLERS, DVF_DRIVER_SUSPENDED } from '../sys/device.js';
import { vptr, vptr_set } from '../lib/libkern/libkern.js';
import { ksymtab, kcall, ksymresolve, type KSym } from './kern_ksyms.js';
import { alldevs, device_is_active, device_parent, device_xname } from './subr_autoconf.js';
import { aprint_debug, aprint_error } from './subr_prf.js';

/** Host-side trace (DEBUG=guest:pmf). */
const dbg = createDebug('guest:pmf');

/** Register a device's handlers (0 or '' for none). Always succeeds. */
export function pmf_device_register(cpu: GuestCpu, dev: number, suspend: KSym = 0, resume: KSym = 0, shutdown: KSym = 0): boolean {
  const v = device.view(cpu.mem, dev);
  vptr_set(v, 'dv_driver_suspend', ksymresolve(cpu, suspend));
  vptr_set(v, 'dv_driver_resume', ksymresolve(cpu, resume));
  vptr_set(v, 'dv_driver_shutdown', ksymresolve(cpu, shutdown));
  v.set('dv_flags', v.get('dv_flags') | DVF_POWER_HANDLERS);
  return true;
}

export function pmf_device_deregister(cpu: GuestCpu, dev: number): void {
  const v = device.view(cpu.mem, dev);
  vptr_set(v, 'dv_driver_suspend', 0);
  vptr_set(v, 'dv_driver_resume', 0);
  vptr_set(v, 'dv_driver_shutdown', 0);
  v.set('dv_flags', v.get('dv_flags') & ~DVF_POWER_HANDLERS);
}

export function device_pmf_is_registered(cpu: GuestCpu, dev: number): boolean {
  return (device.view(cpu.mem, dev).get('dv_flags') & DVF_POWER_HANDLERS) !== 0;
}

/** Suspend one device; false if it is not registered or its handler refuses. */
export function pmf_device_suspend(cpu: GuestCpu, dev: number): boolean {
  const v = device.view(cpu.mem, dev);
  if (!device_pmf_is_registered(cpu, dev)) return false;
  if (v.get('dv_flags') & DVF_DRIVER_SUSPENDED) return true;
  const fn = vptr(v, 'dv_driver_suspend');
  if (dbg.enabled) dbg('suspend %s', device_xname(cpu, dev));
  if (fn !== 0 && kcall(cpu, fn, dev) === 0) {
    if (dbg.enabled) dbg('%s refused to suspend', device_xname(cpu, dev));
    return false;
  }
  v.set('dv_flags', v.get('dv_flags') | DVF_DRIVER_SUSPENDED);
  return true;
}

/** Resume one device; false if its handler fails (it stays suspended). */
export function pmf_device_resume(cpu: GuestCpu, dev: number): boolean {
  const v = device.view(cpu.mem, dev);
  if ((v.get('dv_flags') & DVF_DRIVER_SUSPENDED) === 0) return true;
  const fn = vptr(v, 'dv_driver_resume');
  if (dbg.enabled) dbg('resume %s', device_xname(cpu, dev));
  if (fn !== 0 && kcall(cpu, fn, dev) === 0) return false;
  v.set('dv_flags', v.get('dv_flags') & ~DVF_DRIVER_SUSPENDED);
  return true;
}

function pmf_dv_depth(cpu: GuestCpu, dev: number): number {
  return device.view(cpu.mem, dev).get('dv_depth');
}
function pmf_dv_order(cpu: GuestCpu, dev: number): number {
  return device.view(cpu.mem, dev).get('dv_order');
}

/** Devices deepest first; among equals, the last attached first. */
export function pmf_leaves_first(cpu: GuestCpu): number[] {
  return alldevs(cpu).sort((a, b) => pmf_dv_depth(cpu, b) - pmf_dv_depth(cpu, a) || pmf_dv_order(cpu, b) - pmf_dv_order(cpu, a));
}

/** Devices roots first; among equals, in attach order. */
export function pmf_roots_first(cpu: GuestCpu): number[] {
  return alldevs(cpu).sort((a, b) => pmf_dv_depth(cpu, a) - pmf_dv_depth(cpu, b) || pmf_dv_order(cpu, a) - pmf_dv_order(cpu, b));
}

/**
 * Suspend every attached device, leaves first. On any refusal, resume the
 * ones already suspended and return false.
 */
export function pmf_system_suspend(cpu: GuestCpu): boolean {
  const devs = pmf_leaves_first(cpu);
  for (const d of devs) {
    if ((device.view(cpu.mem, d).get('dv_flags') & DVF_ACTIVE) && !device_pmf_is_registered(cpu, d)) {
      aprint_error(cpu, 'pmf_system_suspend: %s does not support power management\n', device_xname(cpu, d));
      return false;
    }
  }
  aprint_debug(cpu, 'Suspending devices:');
  const done: number[] = [];
  for (const d of devs) {
    if (!device_is_active(cpu, d)) continue;
    aprint_debug(cpu, ' %s', device_xname(cpu, d));
    if (!pmf_device_suspend(cpu, d)) {
      aprint_debug(cpu, '(failed)\n');
      aprint_error(cpu, 'pmf_system_suspend: %s refused to suspend, resuming %d device(s)\n', device_xname(cpu, d), done.length);
      for (let i = done.length - 1; i >= 0; i--) {
        const r = done[i] as number;
        if (!pmf_device_resume(cpu, r)) aprint_error(cpu, 'pmf_system_suspend: %s failed to resume\n', device_xname(cpu, r));
      }
      return false;
    }
    done.push(d);
  }
  aprint_debug(cpu, '.\n');
  return true;
}

/**
 * Resume every suspended device, roots first; a device whose parent is
 * still suspended is skipped. False if any handler failed.
 */
export function pmf_system_resume(cpu: GuestCpu): boolean {
  let rv = true;
  aprint_debug(cpu, 'Resuming devices:');
  for (const d of pmf_roots_first(cpu)) {
    const flags = device.view(cpu.mem, d).get('dv_flags');
    if ((flags & DVF_ACTIVE) === 0 || device_is_active(cpu, d)) continue;
    const parent = device_parent(cpu, d);
    if (parent !== 0 && !device_is_active(cpu, parent)) continue;
    aprint_debug(cpu, ' %s', device_xname(cpu, d));
    if (!pmf_device_resume(cpu, d)) {
      aprint_debug(cpu, '(failed)');
      rv = false;
    }
  }
  aprint_debug(cpu, '.\n');
  return rv;
}

/** Run every shutdown handler, leaves first (poweroff/reboot). */
export function pmf_system_shutdown(cpu: GuestCpu, howto: number): void {
  for (const d of pmf_leaves_first(cpu)) {
    const fn = vptr(device.view(cpu.mem, d), 'dv_driver_shutdown');
    if (fn !== 0 && kcall(cpu, fn, d, howto) === 0) aprint_debug(cpu, '%s: shutdown failed\n', device_xname(cpu, d));
  }
}

export const kern_pmf_ksyms = ksymtab({
  pmf_device_register, pmf_device_deregister, device_pmf_is_registered, pmf_device_suspend, pmf_device_resume,
  pmf_dv_depth, pmf_dv_order, pmf_leaves_first, pmf_roots_first, pmf_system_suspend, pmf_system_resume, pmf_system_shutdown,
});

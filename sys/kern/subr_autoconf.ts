/*
 * Autoconfiguration: the device tree, built by asking each parent's
 * children in the device table whether they match what the parent found.
 *
 *   config_cfdata_attach(cpu, table)        the boot path loads the table
 *   config_rootfound(cpu, 'hypervisor', aux) attaches a root
 *   config_found(cpu, parent, aux, print)   a bus attaches what it found
 *
 * Attaching prints "xencons0 at hypervisor0" (or "hypervisor0 (root)")
 * and then calls the driver's attach, which finishes the line, as NetBSD
 * drivers do (": Xen Virtual Console Driver\n"). Each device gets a zeroed
 * softc of the size its table line asks for. All of it is in guest memory:
 * the table (struct cfdata), the devices (struct device) and their softcs.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { cfdata, device, DEVNAMELEN, DVF_ACTIVE, DVF_PRIV_ALLOC, DVF_CLASS_SUSPENDED, DVF_DRIVER_SUSPENDED, DVF_BUS_SUSPENDED, type CfDesc } from '../sys/device.js';
import { kglobals, kg_addr } from '../sys/kernel.js';
import { TAILQ_FIRST, TAILQ_NEXT, TAILQ_INSERT_TAIL } from '../sys/queue.js';
import { kstr_get, strlcpy, vptr, vptr_set } from '../lib/libkern/libkern.js';
import { ksymtab, ksymaddr, kcall, ksymresolve, type KSym } from './kern_ksyms.js';
import { kmem_zalloc, kmem_free } from './subr_kmem.js';
import { aprint_normal, aprint_error } from './subr_prf.js';

/** Host-side trace (DEBUG=guest:autoconf). */
const dbg = createDebug('guest:autoconf');

const CF_LIST = cfdata.offsetOf('cf_list');
const DV_LIST = device.offsetOf('dv_list');
const DV_XNAME = device.offsetOf('dv_xname');

/** Messages for a print function's verdict on an unmatched child. */
const UNCONF_MSGS = Object.freeze(['', ' not configured\n', ' unsupported\n']);

/** Copy device table lines into guest memory, after those already loaded. */
export function config_cfdata_attach(cpu: GuestCpu, table: readonly CfDesc[]): void {
  for (const d of table) {
    if (d.name.length >= DEVNAMELEN || d.atname.length >= DEVNAMELEN) throw new RangeError(`device table: name ${d.name} at ${d.atname} too long`);
    const cf = kmem_zalloc(cpu, cfdata.size);
    if (cf === 0) {
      aprint_error(cpu, 'config_cfdata_attach: out of memory for %s\n', d.name);
      return;
    }
    const v = cfdata.view(cpu.mem, cf);
    v.setString('cf_name', d.name);
    v.setString('cf_atname', d.atname);
    vptr_set(v, 'cf_match', ksymaddr(cpu, d.match));
    vptr_set(v, 'cf_attach', ksymaddr(cpu, d.attach));
    v.set('cf_devsize', d.devsize);
    TAILQ_INSERT_TAIL(cpu.mem, kg_addr('kg_cfdata'), cf + CF_LIST);
  }
}

/** Every device, in attach order (a JS array valid for this entry only). */
export function alldevs(cpu: GuestCpu): number[] {
  const out: number[] = [];
  const head = kg_addr('kg_alldevs');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) out.push(link - DV_LIST);
  return out;
}

export function device_xname(cpu: GuestCpu, dev: number): string {
  return kstr_get(cpu.mem, dev + DV_XNAME, DEVNAMELEN);
}

/** Guest address of the device's name (a C string), e.g. for %s. */
export function device_xname_addr(dev: number): number {
  return dev + DV_XNAME;
}

/** Driver name of a device ("xencons" for xencons0). */
export function device_cfname(cpu: GuestCpu, dev: number): string {
  const cf = vptr(device.view(cpu.mem, dev), 'dv_cfdata');
  return cf === 0 ? '' : cfdata.view(cpu.mem, cf).getString('cf_name');
}

export function device_private(cpu: GuestCpu, dev: number): number {
  return vptr(device.view(cpu.mem, dev), 'dv_private');
}

export function device_parent(cpu: GuestCpu, dev: number): number {
  return vptr(device.view(cpu.mem, dev), 'dv_parent');
}

export function device_unit(cpu: GuestCpu, dev: number): number {
  return device.view(cpu.mem, dev).get('dv_unit');
}

/** Attached, and not suspended. */
export function device_is_active(cpu: GuestCpu, dev: number): boolean {
  const f = device.view(cpu.mem, dev).get('dv_flags');
  return (f & DVF_ACTIVE) !== 0 && (f & (DVF_CLASS_SUSPENDED | DVF_DRIVER_SUSPENDED | DVF_BUS_SUSPENDED)) === 0;
}

/** The device called `xname`, or 0. */
export function device_find_by_xname(cpu: GuestCpu, xname: string): number {
  for (const d of alldevs(cpu)) if (device_xname(cpu, d) === xname) return d;
  return 0;
}

/** Unit `unit` of driver `name`, or 0 (NetBSD's device_lookup). */
export function device_lookup(cpu: GuestCpu, name: string, unit: number): number {
  for (const d of alldevs(cpu)) if (device_unit(cpu, d) === unit && device_cfname(cpu, d) === name) return d;
  return 0;
}

/** Lowest unit number driver `name` has free. */
function config_unit_alloc(cpu: GuestCpu, name: string): number {
  const used = new Set<number>();
  for (const d of alldevs(cpu)) if (device_cfname(cpu, d) === name) used.add(device_unit(cpu, d));
  let u = 0;
  while (used.has(u)) u++;
  return u;
}

/**
 * Ask every table line that attaches at `parent`'s driver to match `aux`;
 * returns the line with the highest non-zero priority (the first on ties), or 0.
 */
export function config_search(cpu: GuestCpu, parent: number, aux: number): number {
  const atname = parent === 0 ? '' : device_cfname(cpu, parent);
  const head = kg_addr('kg_cfdata');
  let best = 0;
  let bestPri = 0;
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const cf = link - CF_LIST;
    const v = cfdata.view(cpu.mem, cf);
    if (v.getString('cf_atname') !== atname) continue;
    const pri = kcall(cpu, vptr(v, 'cf_match'), parent, cf, aux);
    if (pri > bestPri) {
      best = cf;
      bestPri = pri;
    }
  }
  return best;
}

/**
 * Attach a device for table line `cf` under `parent` (0 for a root).
 * `print(cpu, aux, 0)` may add locators to the attach line. Returns the
 * device, or 0 when memory ran out.
 */
export function config_attach(cpu: GuestCpu, parent: number, cf: number, aux: number, print: KSym = 0): number {
  const cv = cfdata.view(cpu.mem, cf);
  const name = cv.getString('cf_name');
  const devsize = cv.get('cf_devsize');
  const dev = kmem_zalloc(cpu, device.size);
  if (dev === 0) {
    aprint_error(cpu, '%s: out of memory for device\n', name);
    return 0;
  }
  let priv = 0;
  if (devsize > 0) {
    priv = kmem_zalloc(cpu, devsize);
    if (priv === 0) {
      kmem_free(cpu, dev, device.size);
      aprint_error(cpu, '%s: out of memory for softc\n', name);
      return 0;
    }
  }
  const unit = config_unit_alloc(cpu, name);
  const g = kglobals(cpu);
  const dv = device.view(cpu.mem, dev);
  strlcpy(cpu.mem, dev + DV_XNAME, `${name}${unit}`, DEVNAMELEN);
  dv.set('dv_unit', unit);
  dv.set('dv_depth', parent === 0 ? 0 : device.view(cpu.mem, parent).get('dv_depth') + 1);
  dv.set('dv_order', g.get('kg_ndevs'));
  dv.set('dv_flags', DVF_ACTIVE | (priv !== 0 ? DVF_PRIV_ALLOC : 0));
  vptr_set(dv, 'dv_parent', parent);
  vptr_set(dv, 'dv_cfdata', cf);
  vptr_set(dv, 'dv_private', priv);
  g.set('kg_ndevs', g.get('kg_ndevs') + 1);
  TAILQ_INSERT_TAIL(cpu.mem, kg_addr('kg_alldevs'), dev + DV_LIST);
  if (dbg.enabled) dbg('attach %s%d depth %d softc %d bytes', name, unit, dv.get('dv_depth'), devsize);

  if (parent === 0) {
    aprint_normal(cpu, '%s (root)', dev + DV_XNAME);
  } else {
    aprint_normal(cpu, '%s at %s', dev + DV_XNAME, parent + DV_XNAME);
    const p = ksymresolve(cpu, print);
    if (p !== 0) kcall(cpu, p, aux, 0);
  }
  kcall(cpu, vptr(cv, 'cf_attach'), parent, dev, aux);
  return dev;
}

/**
 * A bus found something (described by `aux`): attach the best-matching
 * child. With no match, `print(cpu, aux, pnp)` describes it, pnp being the
 * parent's name, and the verdict it returns (UNCONF, UNSUPP, QUIET) is
 * printed. Returns the new device, or 0.
 */
export function config_found(cpu: GuestCpu, parent: number, aux: number, print: KSym = 0): number {
  const cf = config_search(cpu, parent, aux);
  if (cf !== 0) return config_attach(cpu, parent, cf, aux, print);
  const p = ksymresolve(cpu, print);
  if (p !== 0) {
    const verdict = kcall(cpu, p, aux, parent === 0 ? 0 : parent + DV_XNAME);
    aprint_normal(cpu, '%s', UNCONF_MSGS[verdict] ?? '');
  }
  return 0;
}

/** Attach the root device `rootname` (a table line at ''). */
export function config_rootfound(cpu: GuestCpu, rootname: string, aux: number): number {
  const head = kg_addr('kg_cfdata');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const v = cfdata.view(cpu.mem, link - CF_LIST);
    if (v.getString('cf_name') === rootname && v.getString('cf_atname') === '') {
      return config_attach(cpu, 0, link - CF_LIST, aux);
    }
  }
  aprint_error(cpu, 'root device %s not configured\n', rootname);
  return 0;
}

export const subr_autoconf_ksyms = ksymtab({
  config_cfdata_attach, alldevs, device_xname, device_xname_addr, device_cfname, device_private, device_parent,
  device_unit, device_is_active, device_find_by_xname, device_lookup, config_unit_alloc, config_search,
  config_attach, config_found, config_rootfound,
});

import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, u32 } from '../../hypervisor/public/layout.js';
import { MACHDEP_DATA_VA } from '../../arch/xen/include/vmparam.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import {
  config_cfdata_attach, config_rootfound, config_found, device_xname, device_private, device_lookup,
  device_find_by_xname, device_is_active, device_parent, alldevs,
} from '../../sys/kern/subr_autoconf.js';
import { pmf_device_register, pmf_device_deregister, pmf_system_suspend, pmf_system_resume } from '../../sys/kern/kern_pmf.js';
import { aprint_normal } from '../../sys/kern/subr_prf.js';
import { kmem_zalloc, kmem_free } from '../../sys/kern/subr_kmem.js';
import { kstr_get, strlcpy } from '../../sys/lib/libkern/libkern.js';
import { UNCONF, QUIET, type CfDesc } from '../../sys/sys/device.js';
import { Harness, tlog, tlogRead, tlogClear } from './harness.js';

/* What a test bus found: struct test_attach_args { u32 ta_type; u32 ta_id; } */
const taa = struct('struct test_attach_args', { ta_type: u32, ta_id: u32 });
const T_HYPERVISOR = 1, T_CONS = 2, T_XENBUS = 3, T_VBD = 4, T_VIF = 5, T_THING = 99;
/* The device a test wants to refuse suspending: a name in guest memory. */
const REFUSE_VA = MACHDEP_DATA_VA + 0x20000;

/** Find one child of `parent` described by (type, id), as a bus does. */
function found(cpu: GuestCpu, parent: number, type: number, id: number, print: string): number {
  const aux = kmem_zalloc(cpu, taa.size);
  const v = taa.view(cpu.mem, aux);
  v.set('ta_type', type);
  v.set('ta_id', id);
  const dev = config_found(cpu, parent, aux, print);
  kmem_free(cpu, aux, taa.size);
  return dev;
}

const type = (cpu: GuestCpu, aux: number): number => taa.view(cpu.mem, aux).get('ta_type');

const drivers = ksymtab({
  t_match_any: (): number => 1,
  t_mainbus_attach(cpu: GuestCpu, _parent: number, self: number): void {
    aprint_normal(cpu, '\n');
    pmf_device_register(cpu, self, 't_suspend', 't_resume');
    found(cpu, self, T_HYPERVISOR, 0, '');
  },
  t_hypervisor_match: (cpu: GuestCpu, _p: number, _cf: number, aux: number): number => (type(cpu, aux) === T_HYPERVISOR ? 1 : 0),
  t_hypervisor_attach(cpu: GuestCpu, _parent: number, self: number): void {
    aprint_normal(cpu, ': Xen 4.17\n');
    pmf_device_register(cpu, self, 't_suspend', 't_resume');
    found(cpu, self, T_CONS, 0, 't_print');
    found(cpu, self, T_XENBUS, 0, 't_print');
    found(cpu, self, T_THING, 0, 't_print');
  },
  /** Describes an unmatched child ("thing99 at hypervisor0"); adds " id N" to matched ones. */
  t_print(cpu: GuestCpu, aux: number, pnp: number): number {
    const v = taa.view(cpu.mem, aux);
    const names = ['', '', 'xencons', 'xenbus', 'xbd', 'vif'];
    if (pnp !== 0) {
      aprint_normal(cpu, '%s at %s', names[v.get('ta_type')] ?? `thing${v.get('ta_type')}`, pnp);
      return UNCONF;
    }
    if (v.get('ta_type') === T_VBD) aprint_normal(cpu, ' id %d', v.get('ta_id'));
    return QUIET;
  },
  t_xencons_match: (cpu: GuestCpu, _p: number, _cf: number, aux: number): number => (type(cpu, aux) === T_CONS ? 1 : 0),
  t_xencons_attach(cpu: GuestCpu, _parent: number, self: number): void {
    aprint_normal(cpu, ': Xen Virtual Console Driver\n');
    pmf_device_register(cpu, self, 't_suspend', 't_resume');
  },
  t_xenbus_match: (cpu: GuestCpu, _p: number, _cf: number, aux: number): number => (type(cpu, aux) === T_XENBUS ? 1 : 0),
  t_xenbus_attach(cpu: GuestCpu, _parent: number, self: number): void {
    aprint_normal(cpu, ': Xen Virtual Bus Interface\n');
    pmf_device_register(cpu, self, 't_suspend', 't_resume');
    found(cpu, self, T_VBD, 768, 't_print');
    found(cpu, self, T_VBD, 832, 't_print');
    found(cpu, self, T_VIF, 0, 't_print');
  },
  t_xbd_match: (cpu: GuestCpu, _p: number, _cf: number, aux: number): number => (type(cpu, aux) === T_VBD ? 2 : 0),
  t_xbdlow_match: (cpu: GuestCpu, _p: number, _cf: number, aux: number): number => (type(cpu, aux) === T_VBD ? 1 : 0),
  t_xbd_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    cpu.mem.setUint32(device_private(cpu, self), taa.view(cpu.mem, aux).get('ta_id'), true);
    aprint_normal(cpu, ': Xen Virtual Block Device\n');
    pmf_device_register(cpu, self, 't_suspend', 't_resume');
  },
  t_suspend(cpu: GuestCpu, dev: number): boolean {
    const name = device_xname(cpu, dev);
    if (name === kstr_get(cpu.mem, REFUSE_VA, 16)) {
      tlog(cpu, `S!${name} `);
      return false;
    }
    tlog(cpu, `S:${name} `);
    return true;
  },
  t_resume(cpu: GuestCpu, dev: number): boolean {
    tlog(cpu, `R:${device_xname(cpu, dev)} `);
    return true;
  },
});

const TABLE: readonly CfDesc[] = [
  { name: 'mainbus', atname: '', match: 't_match_any', attach: 't_mainbus_attach', devsize: 0 },
  { name: 'hypervisor', atname: 'mainbus', match: 't_hypervisor_match', attach: 't_hypervisor_attach', devsize: 0 },
  { name: 'xencons', atname: 'hypervisor', match: 't_xencons_match', attach: 't_xencons_attach', devsize: 32 },
  { name: 'xenbus', atname: 'hypervisor', match: 't_xenbus_match', attach: 't_xenbus_attach', devsize: 0 },
  { name: 'xbdlow', atname: 'xenbus', match: 't_xbdlow_match', attach: 't_xbd_attach', devsize: 64 },
  { name: 'xbd', atname: 'xenbus', match: 't_xbd_match', attach: 't_xbd_attach', devsize: 64 },
];

function configure(): Harness {
  const h = Harness.boot({ extra: [drivers] });
  config_cfdata_attach(h.cpu, TABLE);
  config_rootfound(h.cpu, 'mainbus', 0);
  return h;
}

const ALL_LEAVES_FIRST = ['xbd1', 'xbd0', 'xenbus0', 'xencons0', 'hypervisor0', 'mainbus0'];

test('autoconfiguration prints the attach lines NetBSD prints, children under their parents', (t) => {
  const h = configure();
  t.is(h.fake.console, [
    'mainbus0 (root)',
    'hypervisor0 at mainbus0: Xen 4.17',
    'xencons0 at hypervisor0: Xen Virtual Console Driver',
    'xenbus0 at hypervisor0: Xen Virtual Bus Interface',
    'xbd0 at xenbus0 id 768: Xen Virtual Block Device',
    'xbd1 at xenbus0 id 832: Xen Virtual Block Device',
    'vif at xenbus0 not configured',
    'thing99 at hypervisor0 not configured',
    '',
  ].join('\n'));
});

test('the device tree: names, units, parents, softcs; the best match wins', (t) => {
  const h = configure();
  t.deepEqual(alldevs(h.cpu).map((d) => device_xname(h.cpu, d)), ['mainbus0', 'hypervisor0', 'xencons0', 'xenbus0', 'xbd0', 'xbd1']);
  const xbd1 = device_lookup(h.cpu, 'xbd', 1);
  t.is(xbd1, device_find_by_xname(h.cpu, 'xbd1'));
  t.is(device_parent(h.cpu, xbd1), device_find_by_xname(h.cpu, 'xenbus0'));
  t.is(device_lookup(h.cpu, 'xbdlow', 0), 0, 'priority 2 beat priority 1');
  const sc = device_private(h.cpu, xbd1);
  t.not(sc, 0);
  t.is(h.fake.mem.getUint32(sc, true), 832, 'attach wrote its softc');
  t.true(h.fake.mem.readBytes(sc + 4, 60).every((b) => b === 0), 'the rest of the softc is zeroed');
  t.is(device_private(h.cpu, device_find_by_xname(h.cpu, 'mainbus0')), 0, 'no softc when devsize is 0');
});

test('pmf suspends leaves first and resumes roots first', (t) => {
  const h = configure();
  t.true(pmf_system_suspend(h.cpu));
  t.is(tlogRead(h), ALL_LEAVES_FIRST.map((n) => `S:${n} `).join(''));
  t.true(alldevs(h.cpu).every((d) => !device_is_active(h.cpu, d)));
  tlogClear(h);
  t.true(pmf_system_resume(h.cpu));
  t.is(tlogRead(h), [...ALL_LEAVES_FIRST].reverse().map((n) => `R:${n} `).join(''));
  t.true(alldevs(h.cpu).every((d) => device_is_active(h.cpu, d)));
});

test('a device that refuses makes suspend fail cleanly: the ones already suspended are resumed', (t) => {
  const h = configure();
  strlcpy(h.fake.mem, REFUSE_VA, 'xenbus0', 16);
  const console = h.fake.console.length;
  t.false(pmf_system_suspend(h.cpu));
  t.is(tlogRead(h), 'S:xbd1 S:xbd0 S!xenbus0 R:xbd0 R:xbd1 ', 'leaves first until the refusal, then back roots first');
  t.true(alldevs(h.cpu).every((d) => device_is_active(h.cpu, d)), 'every device is running again');
  t.is(h.fake.console.slice(console), 'pmf_system_suspend: xenbus0 refused to suspend, resuming 2 device(s)\n');
  tlogClear(h);
  strlcpy(h.fake.mem, REFUSE_VA, '', 16);
  t.true(pmf_system_suspend(h.cpu), 'a later attempt can succeed');
  t.is(tlogRead(h), ALL_LEAVES_FIRST.map((n) => `S:${n} `).join(''));
});

test('a device without power handlers blocks suspend before anything is touched', (t) => {
  const h = configure();
  pmf_device_deregister(h.cpu, device_find_by_xname(h.cpu, 'xencons0'));
  t.false(pmf_system_suspend(h.cpu));
  t.is(tlogRead(h), '');
  t.regex(h.fake.console, /pmf_system_suspend: xencons0 does not support power management\n$/);
});

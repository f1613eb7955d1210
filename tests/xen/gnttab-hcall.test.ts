import test from 'ava';
import { gtFixture } from './gnttab-fixture.js';
import { fakeGuestMem, callCtx } from './evtchn-fixture.js';
import {
  GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_setup_table, GNTTABOP_query_size, GNTTABOP_copy,
  GNTTABOP_set_version, GNTTABOP_get_version, GNTTABOP_transfer, GNTMAP_device_map, GNTCOPY_dest_gref,
  GNTST_okay, GNTST_bad_gntref, GNTST_bad_virt_addr, GTF_permit_access, GTF_reading, GTF_writing,
  gnttab_map_grant_ref, gnttab_unmap_grant_ref, gnttab_setup_table, gnttab_query_size, gnttab_copy,
  gnttab_set_version, gnttab_get_version,
} from '../../hypervisor/public/grant_table.js';
import { DOMID_SELF } from '../../hypervisor/public/xen.js';
import { EFAULT, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, ESRCH } from '../../hypervisor/public/errno.js';
import { makeGrantTableOp } from '../../hypervisor/xen/gnttab-hcall.js';
import type { GuestMem } from '../../hypervisor/public/cpu.js';

const BASE = 0x20_0000;

function setup() {
  const f = gtFixture();
  const op = makeGrantTableOp(f.gt);
  const mem = fakeGuestMem(BASE, 2 * 4096);
  const call = (domid: number, cmd: number, count: number, m: GuestMem = mem, va = BASE) =>
    op(callCtx(domid, m), BigInt(cmd), BigInt(va), BigInt(count), 0n, 0n);
  return { f, op, mem, call };
}

test('setup_table writes the frame list and status', (t) => {
  const { f, mem, call } = setup();
  const v = gnttab_setup_table.view(mem, BASE);
  v.set('dom', DOMID_SELF);
  v.set('nr_frames', 2);
  v.set('frame_list', BigInt(BASE + 4096));
  t.is(call(1, GNTTABOP_setup_table, 1), 0);
  t.is(v.get('status'), GNTST_okay);
  const frames = f.gt.tableFrames(1);
  t.is(mem.getBigUint64(BASE + 4096, true), BigInt(frames[0]!));
  t.is(mem.getBigUint64(BASE + 4104, true), BigInt(frames[1]!));
});

test('setup_table with an unwritable frame list is GNTST_bad_virt_addr; count must be 1', (t) => {
  const { mem, call } = setup();
  const v = gnttab_setup_table.view(mem, BASE);
  v.set('dom', DOMID_SELF);
  v.set('nr_frames', 1);
  v.set('frame_list', 0x4000_0000n);
  t.is(call(1, GNTTABOP_setup_table, 1), 0);
  t.is(v.get('status'), GNTST_bad_virt_addr);
  t.is(call(1, GNTTABOP_setup_table, 2), -EINVAL);
});

test('query_size fills in the sizes', (t) => {
  const { mem, call } = setup();
  const v = gnttab_query_size.view(mem, BASE);
  v.set('dom', DOMID_SELF);
  t.is(call(1, GNTTABOP_query_size, 1), 0);
  t.is(v.get('nr_frames'), 1);
  t.is(v.get('max_nr_frames'), 32);
  t.is(v.get('status'), GNTST_okay);
});

test('a map batch reports a status per op and handles only for the good ones', (t) => {
  const { f, mem, call } = setup();
  const page = f.page(1);
  f.grant(1, 7, 0, page);
  const a = gnttab_map_grant_ref.view(mem, BASE);
  const b = gnttab_map_grant_ref.view(mem, BASE + gnttab_map_grant_ref.size);
  for (const [v, ref] of [[a, 7], [b, 9999]] as const) {
    v.set('dom', 1);
    v.set('ref', ref);
    v.set('flags', GNTMAP_device_map);
    v.set('handle', 0xdead);
  }
  t.is(call(0, GNTTABOP_map_grant_ref, 2), 0);
  t.is(a.get('status'), GNTST_okay);
  t.is(a.get('dev_bus_addr'), BigInt(page) << 12n);
  t.is(b.get('status'), GNTST_bad_gntref);
  t.is(b.get('handle'), 0xdead, 'a failed op leaves its handle alone');
  t.is(f.flags(1, 7), GTF_permit_access | GTF_reading | GTF_writing);

  const u = gnttab_unmap_grant_ref.view(mem, BASE + 4096);
  u.set('handle', a.get('handle'));
  u.set('dev_bus_addr', a.get('dev_bus_addr'));
  t.is(call(0, GNTTABOP_unmap_grant_ref, 1, mem, BASE + 4096), 0);
  t.is(u.get('status'), GNTST_okay);
  t.is(f.flags(1, 7), GTF_permit_access);
});

test('copy takes a 64-bit frame number for an own page', (t) => {
  const { f, mem, call } = setup();
  const buf = f.page(0);
  const guest = f.page(1);
  f.memory.writeBytes(buf, 0, Uint8Array.of(5, 6));
  f.grant(1, 2, 0, guest);
  const v = gnttab_copy.view(mem, BASE);
  v.sub('source').sub('u').set('gmfn', BigInt(buf));
  v.sub('source').set('domid', DOMID_SELF);
  v.sub('dest').sub('u').set('ref', 2);
  v.sub('dest').set('domid', 1);
  v.sub('dest').set('offset', 10);
  v.set('len', 2);
  v.set('flags', GNTCOPY_dest_gref);
  t.is(call(0, GNTTABOP_copy, 1), 0);
  t.is(v.get('status'), GNTST_okay);
  t.deepEqual([...f.memory.readBytes(guest, 10, 2)], [5, 6]);
});

test('hypercall-level errors: command bits, count, unknown command, no table, bad pointer', (t) => {
  const { f, op, mem, call } = setup();
  t.is(call(1, GNTTABOP_query_size | (1 << 12), 1), -EINVAL);
  t.is(call(1, GNTTABOP_map_grant_ref, 0x8000_0000), -EINVAL);
  t.is(call(1, 99, 1), -ENOSYS);
  t.is(call(1, GNTTABOP_transfer, 1), -EOPNOTSUPP);
  t.is(call(7, GNTTABOP_query_size, 1), -ENOSYS, 'a domain without a grant table');
  t.is(call(1, GNTTABOP_query_size, 1, mem, BASE + 3 * 4096), -EFAULT);
  t.is(op(callCtx(1, mem), BigInt(GNTTABOP_map_grant_ref), 0x8000_0000_0000n, 1n, 0n, 0n), -EFAULT);
  t.is(call(1, GNTTABOP_map_grant_ref, 0), 0, 'an empty batch');
  f.grant(1, 1, 0, f.page(1));
  t.is(call(0, GNTTABOP_map_grant_ref, 3, mem, BASE + 2 * 4096 - gnttab_map_grant_ref.size), -EFAULT,
    'the batch runs off the mapping');
});

test('set_version: v1 is the only version; get_version reports it', (t) => {
  const { mem, call } = setup();
  const s = gnttab_set_version.view(mem, BASE);
  s.set('version', 1);
  t.is(call(1, GNTTABOP_set_version, 1), 0);
  s.set('version', 2);
  t.is(call(1, GNTTABOP_set_version, 1), -ENOSYS);
  t.is(s.get('version'), 1);
  s.set('version', 3);
  t.is(call(1, GNTTABOP_set_version, 1), -EINVAL);
  const g = gnttab_get_version.view(mem, BASE);
  g.set('dom', DOMID_SELF);
  t.is(call(1, GNTTABOP_get_version, 1), 0);
  t.is(g.get('version'), 1);
  g.set('dom', 2);
  t.is(call(1, GNTTABOP_get_version, 1), -EPERM);
  g.set('dom', 9);
  t.is(call(0, GNTTABOP_get_version, 1), -ESRCH);
});

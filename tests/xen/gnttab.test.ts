import test from 'ava';
import { gtFixture } from './gnttab-fixture.js';
import {
  GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access, GTF_reading, GTF_writing, GTF_readonly,
  GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_dev_addr,
  GNTST_bad_page, GNTST_permission_denied, GNTST_no_space, GRANT_ENTRIES_V1_PER_FRAME,
} from '../../hypervisor/public/grant_table.js';
import { DOMID_SELF } from '../../hypervisor/public/xen.js';
import { EEXIST, EINVAL, ESRCH } from '../../hypervisor/public/errno.js';
import { OWNER_XEN, OWNER_FREE, OWNER_ZOMBIE, PageType } from '../../hypervisor/xen/frametable.js';
import { GNTPIN_MAX } from '../../hypervisor/xen/gnttab-table.js';

const DEV = GNTMAP_device_map;
const DEV_RO = GNTMAP_device_map | GNTMAP_readonly;

test('a new table has one hypervisor-owned frame the domain may map; max is 32', (t) => {
  const f = gtFixture();
  const [mfn] = f.gt.tableFrames(1);
  t.is(f.gt.tableFrames(1).length, 1);
  t.is(f.frames.owner[mfn!], OWNER_XEN);
  t.is(f.gt.tableFrameOwner(mfn!), 1);
  t.deepEqual(f.gt.querySize(f.caller(1), DOMID_SELF), { status: GNTST_okay, nrFrames: 1, maxNrFrames: 32 });
  t.is(f.gt.createTable(1), -EEXIST);
  t.is(f.gt.createTable(7, { initialFrames: 3, maxFrames: 2 }), -EINVAL);
});

test('setup_table grows the table and returns its frames; the old frames stay', (t) => {
  const f = gtFixture();
  const first = f.gt.tableFrames(1)[0];
  const r = f.gt.setupTable(f.caller(1), DOMID_SELF, 4);
  t.is(r.status, GNTST_okay);
  t.is(r.frames.length, 4);
  t.is(r.frames[0], first);
  t.deepEqual(f.gt.setupTable(f.caller(1), 1, 2).frames, r.frames.slice(0, 2), 'asking for fewer does not shrink');
  t.is(f.gt.querySize(f.caller(1), DOMID_SELF).nrFrames, 4);
});

test('setup_table past the maximum is GNTST_general_error and does not grow', (t) => {
  const f = gtFixture();
  f.addTable(5, { maxFrames: 4 });
  t.is(f.gt.setupTable(f.caller(5), DOMID_SELF, 4).status, GNTST_okay);
  t.is(f.gt.setupTable(f.caller(5), DOMID_SELF, 5).status, GNTST_general_error);
  t.is(f.gt.tableFrames(5).length, 4);
});

test('setup_table and query_size of another domain need privilege', (t) => {
  const f = gtFixture();
  t.is(f.gt.setupTable(f.caller(2), 1, 1).status, GNTST_permission_denied);
  t.is(f.gt.querySize(f.caller(2), 1).status, GNTST_permission_denied);
  t.is(f.gt.setupTable(f.caller(0), 1, 2).status, GNTST_okay);
  t.is(f.gt.setupTable(f.caller(0), 9, 1).status, GNTST_bad_domain);
});

test('map RW: handle, dev_bus_addr, GTF_reading|GTF_writing, grantMaps, writable reference', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 8, 0, page);
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 8, flags: DEV });
  t.is(r.status, GNTST_okay);
  t.is(r.devBusAddr, BigInt(page) << 12n);
  t.is(r.mfn as number, page);
  t.is(f.flags(1, 8), GTF_permit_access | GTF_reading | GTF_writing);
  t.is(f.frames.grantMaps[page], 1);
  t.is(f.writable.get(page), 1);
  t.is(f.gt.mapsHeldBy(0), 1);
  t.like(f.gt.mapping(0, r.handle), { dom: 1, ref: 8, mfn: page });
});

test('map RO sets only GTF_reading and takes no writable reference', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 8, 0, page);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 8, flags: DEV_RO }).status, GNTST_okay);
  t.is(f.flags(1, 8), GTF_permit_access | GTF_reading);
  t.is(f.writable.size, 0);
});

test('unmap clears the flags the last mapping of each kind held', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 8, 0, page);
  const rw = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 8, flags: DEV });
  const ro = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 8, flags: DEV_RO });
  t.is(f.frames.grantMaps[page], 2);
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: rw.handle, devBusAddr: rw.devBusAddr }), GNTST_okay);
  t.is(f.flags(1, 8), GTF_permit_access | GTF_reading, 'no writer left, a reader still is');
  t.is(f.writable.size, 0);
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: ro.handle, devBusAddr: ro.devBusAddr }), GNTST_okay);
  t.is(f.flags(1, 8), GTF_permit_access);
  t.is(f.frames.grantMaps[page], 0);
  t.deepEqual(f.gt.activeGrants(1), []);
});

test('a read-only grant maps read-only but not writable', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 3, 0, page, true);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 3, flags: DEV }).status, GNTST_general_error);
  t.is(f.flags(1, 3), GTF_permit_access | GTF_readonly, 'a refused map leaves no flag behind');
  const ro = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 3, flags: DEV_RO });
  t.is(ro.status, GNTST_okay);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 3, flags: DEV }).status, GNTST_general_error, 'not even while mapped RO');
  t.is(f.frames.grantMaps[page], 1);
});

test('a grant made to another domain cannot be mapped (GNTST_general_error, as Xen)', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 5, 2, page);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 5, flags: DEV }).status, GNTST_general_error);
  t.is(f.flags(1, 5), GTF_permit_access);
  t.is(f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 5, flags: DEV }).status, GNTST_okay);
});

test('map argument checks: bad ref, no map kind, unknown domain, invalid entry, foreign frame', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 0, page);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: GRANT_ENTRIES_V1_PER_FRAME, flags: DEV }).status, GNTST_bad_gntref);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: GNTMAP_readonly }).status, GNTST_bad_gntref);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 9, ref: 1, flags: DEV }).status, GNTST_bad_domain);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: DOMID_SELF, ref: 1, flags: DEV }).status, GNTST_bad_domain);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 2, flags: DEV }).status, GNTST_general_error, 'GTF_invalid entry');
  f.grant(1, 4, 0, f.page(2));
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 4, flags: DEV }).status, GNTST_bad_page, 'frame of another domain');
  t.is(f.flags(1, 4), GTF_permit_access);
  f.grant(1, 6, 0, 0xfff_ffff);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 6, flags: DEV }).status, GNTST_bad_page, 'no such frame');
  t.is(f.gt.mapsHeldBy(0), 0, 'failed maps hold no handle');
});

test('unmap of a bad handle is GNTST_bad_handle, also the second time', (t) => {
  const f = gtFixture();
  f.grant(1, 1, 0, f.page(1));
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: 0, devBusAddr: 1n }), GNTST_bad_handle);
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: r.handle, devBusAddr: r.devBusAddr }), GNTST_okay);
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: r.handle, devBusAddr: r.devBusAddr }), GNTST_bad_handle);
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: -1 }), GNTST_bad_handle);
  t.is(f.gt.unmapGrantRef(f.caller(1), { handle: r.handle }), GNTST_bad_handle, 'handles are per domain');
});

test('unmap with a dev_bus_addr of another frame is GNTST_bad_dev_addr and keeps the map', (t) => {
  const f = gtFixture();
  f.grant(1, 1, 0, f.page(1));
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: r.handle, devBusAddr: r.devBusAddr + 4096n }), GNTST_bad_dev_addr);
  t.is(f.gt.mapsHeldBy(0), 1);
});

test('unmap naming neither address removes nothing (as Xen)', (t) => {
  const f = gtFixture();
  f.grant(1, 1, 0, f.page(1));
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  t.is(f.gt.unmapGrantRef(f.caller(0), { handle: r.handle }), GNTST_okay);
  t.is(f.gt.mapsHeldBy(0), 1);
  t.is(f.gt.unmapHandle(f.caller(0), r.handle), GNTST_okay);
  t.is(f.gt.mapsHeldBy(0), 0);
});

test('a granter revoking a mapped grant cannot make the mapping vanish', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 0, page);
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  // The guest clears the entry behind Xen's back (ignoring GTF_reading/writing).
  f.gt.seedEntry(1, 1, { flags: (f.flags(1, 1) & ~GTF_permit_access), domid: 0, frame: 0 });
  t.is(f.flags(1, 1), GTF_reading | GTF_writing, 'the in-use flags stay visible');
  t.like(f.gt.mapping(0, r.handle), { mfn: page }, 'the mapping still names the original frame');
  const again = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO });
  t.is(again.status, GNTST_okay, 'while pinned, Xen goes by the active entry');
  t.is(again.mfn as number, page);
  f.gt.unmapHandle(f.caller(0), r.handle);
  f.gt.unmapHandle(f.caller(0), again.handle);
  t.is(f.flags(1, 1), 0);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_general_error, 'revoked once unpinned');
});

test('a grant in use by one domain cannot be mapped by another', (t) => {
  const f = gtFixture();
  f.grant(1, 1, 0, f.page(1));
  f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  f.gt.seedEntry(1, 1, { flags: f.flags(1, 1), domid: 2, frame: f.gt.readEntry(1, 1)!.frame });
  t.is(f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_general_error);
});

test('a frame whose type forbids writing (page table) cannot be mapped writable', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 0, page);
  f.refuseWritable.add(page);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV }).status, GNTST_general_error);
  t.is(f.flags(1, 1), GTF_permit_access, 'pins and flags undone');
  t.is(f.frames.grantMaps[page], 0);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_okay);
});

test('without MMU hooks a frame typed as a page table is refused for writing', (t) => {
  const f = gtFixture(false);
  const page = f.page(1);
  f.frames.type[page] = PageType.L1;
  f.grant(1, 1, 0, page);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV }).status, GNTST_general_error);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: GNTMAP_host_map }).status, GNTST_general_error, 'no MMU, no host maps');
});

test('host_map goes through the MMU hooks, and so does its unmap', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 2, page);
  const r = f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 1, flags: GNTMAP_host_map, hostAddr: 0x7000_0000n });
  t.is(r.status, GNTST_okay);
  t.deepEqual(f.hostMaps, [`+d2@70000000=${page}`]);
  t.is(f.gt.unmapGrantRef(f.caller(2), { handle: r.handle, hostAddr: 0x7000_0000n }), GNTST_okay);
  t.deepEqual(f.hostMaps, [`+d2@70000000=${page}`, `-d2@70000000=${page}`]);
  t.is(f.writable.size, 0);
});

test('the MMU may map a frame while (and only while) a host_map of it is held', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 2, page, true);
  f.grant(1, 2, 2, page);
  t.false(f.gt.isForeignMappable(2, page, false));
  let duringCreate: boolean | undefined;
  const gt = f.gt as unknown as { env: { createHostMapping: (...a: unknown[]) => number } };
  const create = gt.env.createHostMapping;
  gt.env.createHostMapping = (...a) => { duringCreate = f.gt.isForeignMappable(2, page, false); return create(...a); };
  const ro = f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 1, flags: GNTMAP_host_map | GNTMAP_readonly, hostAddr: 0x1000n });
  t.true(duringCreate, 'already true while the MMU installs the entry');
  t.true(f.gt.isForeignMappable(2, page, false));
  t.false(f.gt.isForeignMappable(2, page, true), 'read-only grant mapping: no writable PTE');
  t.false(f.gt.isForeignMappable(0, page, false), 'only the domain holding the mapping');
  const rw = f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 2, flags: GNTMAP_host_map, hostAddr: 0x2000n });
  t.true(f.gt.isForeignMappable(2, page, true));
  f.gt.unmapHandle(f.caller(2), rw.handle);
  t.false(f.gt.isForeignMappable(2, page, true));
  f.gt.unmapHandle(f.caller(2), ro.handle);
  t.false(f.gt.isForeignMappable(2, page, false));
});

test('a domain may map its own grant table frames, nobody else may', (t) => {
  const f = gtFixture();
  const mfn = f.gt.tableFrames(1)[0]!;
  t.true(f.gt.isForeignMappable(1, mfn, true));
  t.false(f.gt.isForeignMappable(2, mfn, false));
});

test('running out of grant handles is GNTST_no_space', (t) => {
  const f = gtFixture();
  f.addTable(4, { maxMaptrack: 2 });
  f.grant(1, 1, 4, f.page(1));
  t.is(f.gt.mapGrantRef(f.caller(4), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_okay);
  t.is(f.gt.mapGrantRef(f.caller(4), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_okay);
  t.is(f.gt.mapGrantRef(f.caller(4), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_no_space);
});

test('pin counts stop at 128 maps of one kind', (t) => {
  const f = gtFixture();
  f.grant(1, 1, 0, f.page(1));
  for (let i = 0; i < GNTPIN_MAX; i++) f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO });
  t.is(f.gt.mapsHeldBy(0), GNTPIN_MAX);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO }).status, GNTST_general_error);
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV }).status, GNTST_okay, 'another kind still counts from 0');
});

test('destroying a mapping domain releases its maps on the granter', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 2, page);
  f.gt.mapGrantRef(f.caller(2), { dom: 1, ref: 1, flags: DEV });
  f.gt.destroy(2);
  t.is(f.flags(1, 1), GTF_permit_access);
  t.is(f.frames.grantMaps[page], 0);
  t.is(f.writable.size, 0);
  t.deepEqual(f.gt.activeGrants(1), []);
  t.deepEqual(f.released, [], 'the granter is alive: its frame is not released');
});

test('a granter destroyed with outstanding maps: the frame waits for the last unmap', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  const tableFrame = f.gt.tableFrames(1)[0]!;
  f.grant(1, 1, 0, page);
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV });
  f.gt.destroy(1);
  t.false(f.gt.hasTable(1));
  t.is(f.frames.owner[tableFrame], OWNER_FREE, 'table frames are freed');
  t.is(f.frames.grantMaps[page], 1, 'the core must not free the granted frame yet');
  t.deepEqual(f.released, []);
  t.like(f.gt.mapping(0, r.handle), { mfn: page }, 'dom0 still holds a valid mapping');
  t.is(f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV }).status, GNTST_bad_domain);
  t.is(f.gt.unmapHandle(f.caller(0), r.handle), GNTST_okay);
  t.is(f.frames.grantMaps[page], 0);
  t.deepEqual(f.released, [page]);
  t.is(f.writable.size, 0);
});

test('a table frame still mapped at destroy is left to the core', (t) => {
  const f = gtFixture();
  const tableFrame = f.gt.tableFrames(2)[0]!;
  f.frames.refCount[tableFrame] = 1;
  f.gt.destroy(2);
  t.deepEqual(f.released, [tableFrame]);
  t.is(f.frames.owner[tableFrame], OWNER_ZOMBIE, 'orphaned: the MMU frees it at its last unmap');
  t.is(f.gt.tableFrameOwner(tableFrame), undefined);
});

test('seedEntry writes entries the way the builder seeds console and xenstore', (t) => {
  const f = gtFixture();
  const ring = f.page(1);
  t.is(f.gt.seedEntry(1, 1, { flags: GTF_permit_access, domid: 0, frame: ring }), 0);
  t.deepEqual(f.gt.readEntry(1, 1), { flags: GTF_permit_access, domid: 0, frame: ring });
  t.is(f.gt.seedEntry(1, GRANT_ENTRIES_V1_PER_FRAME, { flags: 0, domid: 0, frame: 0 }), -EINVAL);
  t.is(f.gt.seedEntry(9, 0, { flags: 0, domid: 0, frame: 0 }), -ESRCH);
  t.is(f.gt.readEntry(1, -1), undefined);
});

test('a granted frame the MMU orphaned is handed back at its last unmap', (t) => {
  const f = gtFixture();
  const page = f.page(1);
  f.grant(1, 1, 0, page);
  const r = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 1, flags: DEV_RO });
  f.frames.owner[page] = OWNER_ZOMBIE; // the granter's memory was relinquished first
  f.gt.unmapHandle(f.caller(0), r.handle);
  t.deepEqual(f.released, [page]);
});

import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { OWNER_FREE, OWNER_XEN, OWNER_ZOMBIE } from '../../hypervisor/xen/frametable.js';
import { A_PARAM } from '../kernels/guest.js';
import { helloKernel, spinKernel } from '../kernels/basic.js';
import { hostileKernel } from '../kernels/hostile.js';
import { build } from './builder.js';
import { GNTMAP_host_map, GNTST_bad_virt_addr, GNTST_okay } from '../../hypervisor/public/grant_table.js';

/** Owners of every frame that is not free. */
function owners(m: Machine): Map<number, number> {
  const out = new Map<number, number>();
  for (let mfn = 0; mfn < m.frames.nrFrames; mfn++) {
    const o = m.frames.owner[mfn]!;
    if (o !== OWNER_FREE) out.set(o, (out.get(o) ?? 0) + 1);
  }
  return out;
}

test('1000 domains created, booted, shut down and destroyed leak no frame', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024, scrambleSeed: 42 });
  const free = m.frames.freeFrames;
  const before = owners(m);
  for (let i = 0; i < 1000; i++) {
    const b = build(m, helloKernel, { pages: 8 });
    if (m.runUntil(() => b.d.shuttingDown, 100) !== 'done') return t.fail(`domain ${i} did not shut down`);
    if (m.xc.destroyDomain(b.domid) !== 0) return t.fail(`destroy ${i}`);
  }
  t.is(m.frames.freeFrames, free);
  t.deepEqual(owners(m), before, 'the same frames are owned by dom0 and Xen as before');
  t.deepEqual(m.domains.map((d) => d.id), [0]);
  t.is(m.timers.size, 0);
  t.deepEqual(m.log.bugs, []);
});

test('domain ids are reused only after the rover wraps, and destroyed ids vanish from getdomaininfo', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024 });
  const a = m.xc.createDomain();
  t.is(m.xc.destroyDomain(a), 0);
  const b = m.xc.createDomain();
  t.not(b, a, 'the next id, not the freed one');
  t.is(m.xc.getDomainInfo(a), undefined);
  const list = m.xc.listDomains();
  t.deepEqual(Array.isArray(list) ? list.map((i) => i.domid) : list, [0, b]);
});

test('a granted frame outlives its destroyed owner while mapped, then is freed at the last unmap', (t) => {
  const m = new Machine({ memoryBytes: 32 * 1024 * 1024 });
  const free = m.frames.freeFrames;
  const taker = build(m, hostileKernel, { entry: 'grantTake', paused: true });
  const giver = build(m, hostileKernel, { entry: 'grantOffer', paused: true });
  m.memory.writeU64(giver.mbox, 8 * A_PARAM, BigInt(taker.domid));
  m.memory.writeU64(giver.mbox, 8 * (A_PARAM + 2), BigInt(giver.p2m[6]!));
  m.xc.unpauseDomain(giver.domid);
  m.runUntil(() => giver.d.shuttingDown, 1000);
  m.memory.writeU64(taker.mbox, 8 * A_PARAM, BigInt(giver.domid));
  m.memory.writeU64(taker.mbox, 8 * (A_PARAM + 1), BigInt(taker.p2m[7]!));
  m.xc.unpauseDomain(taker.domid);
  m.runUntil(() => taker.d.shuttingDown, 1000);
  t.is(m.gnttab.mapsHeldBy(taker.domid), 2, 'writable and read-only maps of the grant');
  const granted = giver.p2m[6]!;
  t.is(m.xc.destroyDomain(giver.domid), 0);
  t.is(m.frames.owner[granted], OWNER_ZOMBIE, 'still mapped by the taker');
  t.is(m.xc.destroyDomain(taker.domid), 0);
  t.is(m.frames.owner[granted], OWNER_FREE);
  t.is(m.frames.freeFrames, free);
});

test('dom0 host mappings are named by address: 0 is refused, any other one unmapHandle removes', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024 });
  const giver = build(m, hostileKernel, { entry: 'grantOffer', paused: true });
  m.memory.writeU64(giver.mbox, 8 * A_PARAM, 0n);
  m.memory.writeU64(giver.mbox, 8 * (A_PARAM + 2), BigInt(giver.p2m[6]!));
  m.xc.unpauseDomain(giver.domid);
  m.runUntil(() => giver.d.shuttingDown, 1000);
  const dom0 = { domid: 0, vcpuId: 0, privileged: true };
  const zero = m.gnttab.mapGrantRef(dom0, { dom: giver.domid, ref: 8, flags: GNTMAP_host_map, hostAddr: 0n });
  t.is(zero.status, GNTST_bad_virt_addr, 'a host map at address 0 could never be unmapped');
  t.is(m.gnttab.mapsHeldBy(0), 0);
  const r = m.gnttab.mapGrantRef(dom0, { dom: giver.domid, ref: 8, flags: GNTMAP_host_map, hostAddr: 0x1000n });
  t.is(r.status, GNTST_okay);
  t.is(m.gnttab.mapsHeldBy(0), 1);
  t.is(m.gnttab.unmapHandle(dom0, r.handle), GNTST_okay);
  t.is(m.gnttab.mapsHeldBy(0), 0, 'the mapping is gone');
  t.is(m.frames.grantMaps[giver.p2m[6]!], 0, 'and the frame is no longer counted as mapped');
});

test('destroying a running domain (not shut down) releases everything too', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024 });
  const free = m.frames.freeFrames;
  const b = build(m, spinKernel, { vcpus: 3 });
  m.runUntil(() => false, 10);
  t.is(m.xc.destroyDomain(b.domid), 0);
  t.is(m.xc.destroyDomain(b.domid), -3, 'gone');
  t.is(m.frames.freeFrames, free);
  t.is(m.runToIdle(), 'idle', 'nothing left to run');
  t.true([...owners(m).keys()].every((o) => o === 0 || o === OWNER_XEN));
});

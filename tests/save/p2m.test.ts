/*
 * `xl p2m`: the guest's published P2M, cross-checked with the M2P; and what
 * the saver says when the two disagree or the tree names foreign frames.
 */
import test from 'ava';
import { SaveError, formatP2m, p2mOf, saveDomain, waitForSuspend } from '../../hypervisor/tools/save/index.js';
import { machphysUpdate } from '../../hypervisor/tools/save/deps.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import { memtestKernel } from './kernels/memtest.js';
import { Collector, askSuspend, guest, machine } from './fixture.js';

test('p2mOf reads the P2M the guest published: what the builder gave it, and the M2P agrees', (t) => {
  const m = machine({ seed: 70 });
  const g = guest(m, memtestKernel, { pages: 700 });
  const r = p2mOf(m, g.domid);
  t.is(r.maxPfn, 700);
  t.deepEqual(r.entries.map((e) => e.mfn), g.p2m);
  t.deepEqual(r.mismatches, []);
  const lines = formatP2m(r).trimEnd().split('\n');
  t.is(lines.length, 700);
  t.is(lines[0], `0x0 0x${g.p2m[0]!.toString(16)}`);
});

test('a P2M that the M2P contradicts shows up in p2mOf and stops a save', async (t) => {
  const m = machine({ seed: 71 });
  const g = guest(m, memtestKernel, { pages: 256 });
  t.is(machphysUpdate(m.xc, g.domid, [g.p2m[100]!], [101]), 0);
  const r = p2mOf(m, g.domid);
  t.deepEqual(r.mismatches, [{ pfn: 100, mfn: g.p2m[100]!, m2pPfn: 101 }]);
  askSuspend(m, g.domid);
  await waitForSuspend(m, g.domid, 1e9);
  const e = await t.throwsAsync(saveDomain(m, g.domid, new Collector().sink), { instanceOf: SaveError });
  t.is(e?.code, 'p2m-entry');
  t.regex(e?.message ?? '', /the P2M maps pfn 0x64 to mfn 0x[0-9a-f]+, but the M2P maps that frame to pfn 0x65/);
});

test('a frame list naming a frame of another domain is refused by name', (t) => {
  const m = machine({ seed: 72 });
  const a = guest(m, memtestKernel, { pages: 256 });
  const b = guest(m, memtestKernel, { pages: 256 });
  // Point a's frame list list at one of b's frames (as a hostile or confused guest could).
  const sh = m.domain(a.domid)!.sharedInfo;
  sh.setBigUint64(shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list'), BigInt(b.p2m[3]!), true);
  const e = t.throws(() => p2mOf(m, a.domid), { instanceOf: SaveError });
  t.is(e?.code, 'p2m-frame-list');
  t.regex(e?.message ?? '', /the P2M frame list list \(shared_info.arch.pfn_to_mfn_frame_list_list\) is mfn 0x[0-9a-f]+, which is not a frame of the domain/);
});

test('an absurd max_pfn is refused before anything is allocated', (t) => {
  const m = machine({ seed: 73 });
  const g = guest(m, memtestKernel, { pages: 256 });
  m.domain(g.domid)!.sharedInfo.setBigUint64(shared_info.offsetOf('arch.max_pfn'), 1n << 40n, true);
  const e = t.throws(() => p2mOf(m, g.domid), { instanceOf: SaveError });
  t.is(e?.code, 'bad-max-pfn');
});

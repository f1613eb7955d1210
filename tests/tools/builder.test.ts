import test from 'ava';
import { start_info } from '../../hypervisor/public/xen.js';
import { vcpu_guest_context, _PAGE_PRESENT, _PAGE_RW } from '../../hypervisor/public/arch-x86_64.js';
import { GTF_permit_access } from '../../hypervisor/public/grant_table.js';
import { canonicalVa, vaddr } from '../../hypervisor/public/types.js';
import { PageType } from '../../hypervisor/xen/frametable.js';
import { BuildError } from '../../hypervisor/tools/builder/errors.js';
import { planLayout, pfnVa, isPageTablePfn } from '../../hypervisor/tools/builder/layout.js';
import { commandLine } from '../../hypervisor/tools/builder/start-info.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import { probeKernel, PROBE_BASE } from './builder-kernel.js';
import { config, host } from './builder-fixture.js';

const probe16 = planLayout(probeKernel, 4096);

test('layout: image, P2M, start_info, store, console, ctrl_if, L4/L3/L2/L1, stack, in that order from PFN 0', (t) => {
  const l = probe16;
  t.is(l.imagePages, 1);
  t.is(l.p2mPfn, 1);
  t.is(l.p2mPages, 8, '4096 PFNs * 8 bytes = 8 pages');
  t.deepEqual([l.startInfoPfn, l.storePfn, l.consolePfn, l.ctrlIfPfn], [9, 10, 11, 12]);
  t.is(l.l4Pfn, 13);
  t.deepEqual([l.l3.pfn, l.l3.count, l.l2.pfn, l.l2.count, l.l1.pfn, l.l1.count], [14, 1, 15, 1, 16, 8]);
  t.is(l.nrPtFrames, 11);
  t.is(l.stackPfn, 24);
  t.is(l.firstFreePfn, 25);
});

test('layout: a direct map that straddles 1 GiB and 512 GiB boundaries gets a table per region touched', (t) => {
  // 2 MiB below a 512 GiB boundary, 8 MiB long: two L3s, two L2s, four L1s.
  const img = { name: 'odd', virtBase: vaddr(5 * 2 ** 39 - 2 ** 21), imageSize: 4096 };
  const l = planLayout(img, 2048);
  t.is(l.l3.count, 2);
  t.is(l.l2.count, 2);
  t.is(l.l1.count, 4);
});

test('layout: refusals name what does not fit', (t) => {
  const tiny = t.throws(() => planLayout({ name: 'big', virtBase: PROBE_BASE, imageSize: 8 * 2 ** 20 }, 1024), { instanceOf: BuildError });
  t.is(tiny.step, 'layout');
  t.regex(tiny.message, /memory must be at least 9 MiB/);
  const xen = t.throws(() => planLayout({ name: 'inxen', virtBase: vaddr(0x8000_0000_0000), imageSize: 4096 }, 1024), { instanceOf: BuildError });
  t.regex(xen.message, /Xen's reserved L4 slots 256..271/);
});

test('command line: extra then ctrl_if=<pfn>,<port>; too long is refused', (t) => {
  t.is(commandLine(' root=xbd0a ', 12, 3), 'root=xbd0a ctrl_if=12,3');
  t.is(commandLine('', 12, 3), 'ctrl_if=12,3');
  t.throws(() => commandLine('x'.repeat(1020), 12, 3), { instanceOf: BuildError, message: /longer than 1023/ });
});

async function built(t: Parameters<typeof host>[0], extra = 'nostore'): Promise<{ h: MachineHost; b: BuiltDomain }> {
  const h = await host(t);
  const b = await h.create(config('g1', { extra }), true);
  return { h, b };
}

test('start_info: magic, sizes, machine addresses and virtual addresses as the ABI says', async (t) => {
  const { h, b } = await built(t, 'root=xbd0a nostore');
  const l = b.layout;
  const si = start_info.view(h.m.memory.frameMem(b.startInfoMfn), 0);
  t.is(si.getString('magic'), 'xen-3.0-x86_64');
  t.is(si.get('nr_pages'), 4096n);
  t.is(si.get('shared_info'), BigInt(h.m.domain(b.domid)!.sharedInfoMfn) * 4096n, 'shared_info is a machine address');
  t.is(si.get('flags'), 0);
  t.is(si.get('store_mfn'), BigInt(b.storeMfn));
  t.is(si.get('store_evtchn'), b.storePort);
  t.is(si.sub('console').sub('domU').get('mfn'), BigInt(b.consoleMfn));
  t.is(si.sub('console').sub('domU').get('evtchn'), b.consolePort);
  t.is(si.get('pt_base'), canonicalVa(vaddr(pfnVa(l, l.l4Pfn))));
  t.is(si.get('nr_pt_frames'), BigInt(l.nrPtFrames));
  t.is(si.get('mfn_list'), canonicalVa(vaddr(pfnVa(l, l.p2mPfn))));
  t.is(si.get('first_p2m_pfn'), BigInt(l.p2mPfn));
  t.is(si.get('nr_p2m_frames'), BigInt(l.p2mPages));
  t.is(si.getString('cmd_line'), `root=xbd0a nostore ctrl_if=${l.ctrlIfPfn},${b.ctrlIfPort}`);
  t.is(b.storeMfn, b.p2m[l.storePfn]!);
  t.is(b.consoleMfn, b.p2m[l.consolePfn]!);
  const ports = new Set([b.storePort, b.consolePort, b.ctrlIfPort]);
  t.is(ports.size, 3, 'three distinct ports');
  for (const p of ports) {
    const ch = h.m.evtchn.channels(b.domid).find((c) => c.localPort === p);
    t.is(ch?.dom, 0, `port ${p} of the guest is for dom0`);
  }
});

test('P2M array holds exactly the MFNs the domain owns, and the M2P maps each back to its PFN', async (t) => {
  const { h, b } = await built(t);
  const d = h.m.domain(b.domid)!;
  const owned = new Set(d.mem.ownedFrames());
  t.is(owned.size, 4096);
  let identity = 0;
  for (let pfn = 0; pfn < 4096; pfn++) {
    const page = b.p2m[b.layout.p2mPfn + Math.floor(pfn / 512)]!;
    const mfn = Number(h.m.memory.readU64(page, 8 * (pfn % 512)));
    t.is(mfn, b.p2m[pfn]!, `mfn_list[${pfn}]`);
    t.true(owned.delete(mfn), `mfn ${mfn} of pfn ${pfn} is the domain's, once`);
    t.is(h.m.frames.m2p[mfn], pfn, `M2P of mfn ${mfn}`);
    if (mfn === pfn) identity++;
  }
  t.is(owned.size, 0, 'every owned frame is in the P2M');
  t.true(identity < 8, 'the allocator scrambles MFNs');
});

test('page tables map every PFN at virtBase + pfn*4096; page-table frames read-only; L4 pinned', async (t) => {
  const { h, b } = await built(t);
  const mem = h.m.memory;
  const l = b.layout;
  const frameOf = (pte: bigint): number => Number((pte >> 12n) & 0xff_ffff_ffffn);
  const ptMfns = new Set(Array.from({ length: l.nrPtFrames }, (_, i) => b.p2m[l.ptPfn + i]!));
  let leaves = 0;
  for (let pfn = 0; pfn < l.nrPages; pfn++) {
    const va = pfnVa(l, pfn);
    let table = b.l4Mfn;
    for (const shift of [39, 30, 21]) {
      const e = mem.readU64(table, 8 * (Math.floor(va / 2 ** shift) % 512));
      t.true((Number(e & 0xfffn) & _PAGE_PRESENT) !== 0);
      table = frameOf(e);
      t.true(ptMfns.has(table), 'upper entries point at the bootstrap tables');
    }
    const leaf = mem.readU64(table, 8 * (Math.floor(va / 4096) % 512));
    if (frameOf(leaf) !== b.p2m[pfn]) t.fail(`pfn ${pfn} maps mfn ${frameOf(leaf)}, not ${b.p2m[pfn]}`);
    const rw = (Number(leaf & 0xfffn) & _PAGE_RW) !== 0;
    if (rw === isPageTablePfn(l, pfn)) t.fail(`pfn ${pfn}: RW=${rw} but page table=${isPageTablePfn(l, pfn)}`);
    if ((leaf >> 63n) !== 1n) t.fail(`pfn ${pfn} is not NX`);
    leaves++;
  }
  t.is(leaves, 4096);
  // Nothing else is mapped: count present leaf entries in every L1.
  let present = 0;
  for (let i = 0; i < l.l1.count; i++) {
    for (let s = 0; s < 512; s++) if ((mem.readU64(b.p2m[l.l1.pfn + i]!, 8 * s) & 1n) !== 0n) present++;
  }
  t.is(present, 4096);
  t.is(h.m.frames.pinned[b.l4Mfn], 1, 'L4 pinned');
  t.is(h.m.frames.type[b.l4Mfn], PageType.L4);
  for (let i = 0; i < l.l1.count; i++) t.is(h.m.frames.type[b.p2m[l.l1.pfn + i]!], PageType.L1);
});

test('grant entries 0 (console) and 1 (xenstore) are granted to dom0', async (t) => {
  const { h, b } = await built(t);
  t.deepEqual(h.m.gnttab.readEntry(b.domid, 0), { flags: GTF_permit_access, domid: 0, frame: b.consoleMfn });
  t.deepEqual(h.m.gnttab.readEntry(b.domid, 1), { flags: GTF_permit_access, domid: 0, frame: b.storeMfn });
});

test('vCPU 0 starts at the entry with rsi = start_info, rsp = top of the boot stack, CR3 = the L4', async (t) => {
  const { h, b } = await built(t);
  const ctx = h.m.xc.getVcpuContext(b.domid, 0);
  if (typeof ctx === 'number') return t.fail(`getvcpucontext: ${ctx}`);
  const c = vcpu_guest_context.view(new DataView(ctx.buffer, ctx.byteOffset), 0);
  const r = c.sub('user_regs');
  const l = b.layout;
  t.is(r.get('rip'), canonicalVa(probeKernel.entry));
  t.is(r.get('rsi'), canonicalVa(vaddr(pfnVa(l, l.startInfoPfn))));
  t.is(r.get('rsp'), canonicalVa(vaddr(pfnVa(l, l.stackPfn + 1))));
  t.is(r.get('cs'), 0xe033);
  t.is(r.get('ss'), 0xe02b);
  t.is(c.getAt('ctrlreg', 3), BigInt(b.l4Mfn) << 12n);
  t.is(c.get('event_callback_eip'), 0n);
  t.is(c.get('failsafe_callback_eip'), 0n);
  t.true(h.m.domain(b.domid)!.vcpus[0]!.up);
  t.is(h.m.domain(b.domid)!.kernel, probeKernel);
});

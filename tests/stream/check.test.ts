import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  PageType,
  StreamError,
  VCPU_CONTEXT_CR3,
  VCPU_CONTEXT_RDX,
  checkImage,
  parseImage,
  type CheckResult,
  type StreamErrorCode,
} from '../../hypervisor/tools/stream/index.js';
import { CONFIG, META, checkpointedBytes, concat, fakeGuest, imageBytes, randomChunks, type FakeGuest } from './fake-guest.js';

const u64At = (bytes: Uint8Array, at: number): bigint => new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(at, true);

/** A fake guest with one page's data rewritten. */
function withPage(g: FakeGuest, pfn: number, f: (dv: DataView) => void): FakeGuest {
  return {
    ...g,
    pages: g.pages.map((p) => {
      if (p.pfn !== pfn || p.data === undefined) return p;
      const data = p.data.slice();
      f(new DataView(data.buffer));
      return { ...p, data };
    }),
  };
}

function withCr3(g: FakeGuest, cr3: bigint, rdx = 0n): FakeGuest {
  const context = g.vcpus[0]!.context.slice();
  const dv = new DataView(context.buffer);
  dv.setBigUint64(VCPU_CONTEXT_CR3, cr3, true);
  dv.setBigUint64(VCPU_CONTEXT_RDX, rdx, true);
  return { ...g, vcpus: [{ ...g.vcpus[0]!, context }] };
}

function only(t: import('ava').ExecutionContext, r: CheckResult, code: StreamErrorCode, record: string, detail: RegExp): StreamError | undefined {
  t.false(r.ok);
  t.is(r.errors.length, 1, r.errors.map((e) => e.message).join('\n'));
  const e = r.errors[0];
  t.true(e instanceof StreamError);
  t.like(e, { code, record });
  if (e) t.regex(e.detail, detail);
  return e;
}

test('a good image passes, with a summary of what it holds', async (t) => {
  const r = await checkImage(await imageBytes(fakeGuest({ maxPfn: 1200, vcpus: 2 })));
  t.deepEqual(r.errors, []);
  t.true(r.ok);
  t.like(r.summary, { maxPfn: 1200, vcpus: [0, 1], checkpoints: 0, config: { format: 'xl.cfg', text: CONFIG } });
  t.deepEqual(r.summary.xenportMeta, META);
  t.deepEqual(r.summary.pagesByLevel, [1200 - 2 - 6, 3, 1, 1, 1]);
});

test('a checkpointed image passes', async (t) => {
  const r = await checkImage(await checkpointedBytes(fakeGuest(), 2));
  t.deepEqual(r.errors, []);
  t.is(r.summary.checkpoints, 2);
});

test('a PTE naming a pfn at or beyond max_pfn is caught, at the PTE', async (t) => {
  const g = fakeGuest();
  const l1 = g.l1Pfns[0]!;
  const bytes = await imageBytes(withPage(g, l1, (dv) => dv.setBigUint64(8 * 20, (16n << 12n) | 0x67n, true)));
  t.is(parseImage(bytes).error, undefined, 'well-formed: only the checker sees it');
  const e = only(t, await checkImage(bytes), 'pfn-out-of-range', 'PAGE_DATA', /L1 pfn 0x4 entry 20 maps frame 0x10, not a pfn below max_pfn 0x10/);
  t.is(u64At(bytes, e!.offset), (16n << 12n) | 0x67n, 'the error offset points at the PTE');
});

test('non-present entries are ignored, superpages and Xen L4 slots are not', async (t) => {
  const g = fakeGuest();
  const junk = await imageBytes(withPage(g, g.l1Pfns[0]!, (dv) => dv.setBigUint64(8 * 30, 0xfffff000n, true)));
  t.true((await checkImage(junk)).ok, 'a non-present PTE may hold anything');
  const pse = await imageBytes(withPage(g, 3, (dv) => dv.setBigUint64(8 * 9, (5n << 12n) | 0xe3n, true)));
  only(t, await checkImage(pse), 'bad-pagetable', 'PAGE_DATA', /L2 pfn 0x3 entry 9 is a superpage/);
  const xen = await imageBytes(withPage(g, g.l4Pfn, (dv) => dv.setBigUint64(8 * 256, (2n << 12n) | 0x63n, true)));
  only(t, await checkImage(xen), 'bad-pagetable', 'PAGE_DATA', /L4 pfn 0x1 entry 256 is a Xen slot/);
});

test('a CR3 that is not a pfn << 12 is caught, at CR3', async (t) => {
  const bytes = await imageBytes(withCr3(fakeGuest(), (1n << 12n) | 0x18n));
  const e = only(t, await checkImage(bytes), 'bad-vcpu', 'X86_PV_VCPU_BASIC', /vCPU 0 CR3 0x1018 is not a pfn << 12/);
  t.is(u64At(bytes, e!.offset), 0x1018n);
});

test('a CR3 beyond max_pfn, or naming a page that is not an L4 table, is caught', async (t) => {
  const g = fakeGuest();
  only(t, await checkImage(await imageBytes(withCr3(g, 0x40000n << 12n))), 'pfn-out-of-range', 'X86_PV_VCPU_BASIC', /CR3 0x40000000 names pfn 0x40000/);
  only(t, await checkImage(await imageBytes(withCr3(g, 2n << 12n))), 'bad-vcpu', 'X86_PV_VCPU_BASIC', /saved as L3TAB, not an L4 table/);
  only(t, await checkImage(await imageBytes(withCr3(g, 1n << 12n, 99n))), 'pfn-out-of-range', 'X86_PV_VCPU_BASIC', /rdx \(start_info\) 0x63/);
});

test('P2M frames must be pfns below max_pfn saved as ordinary pages', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const p2m = parseImage(bytes).items.find((i) => i.type === 'X86_PV_P2M_FRAMES')!.offset;
  const frameAt = p2m + 16;
  const beyond = bytes.slice();
  new DataView(beyond.buffer).setBigUint64(frameAt, 77n, true);
  const e = only(t, await checkImage(beyond), 'pfn-out-of-range', 'X86_PV_P2M_FRAMES', /P2M frame 0 is pfn 0x4d/);
  t.is(e?.offset, frameAt);
  const table = bytes.slice();
  new DataView(table.buffer).setBigUint64(frameAt, 3n, true);
  only(t, await checkImage(table), 'bad-value', 'END', /P2M frame 0 \(pfn 0x3\) is saved as L2TAB/);
});

test('every pfn below max_pfn must be saved', async (t) => {
  const g = fakeGuest();
  const r = await checkImage(await imageBytes({ ...g, pages: g.pages.filter((p) => p.pfn !== 7 && p.pfn !== 9) }));
  only(t, r, 'missing', 'END', /2 pfns below max_pfn never saved \(0x7, 0x9\)/);
});

test('shared_info.arch.max_pfn must match the P2M', async (t) => {
  const g = fakeGuest();
  const sharedInfo = g.sharedInfo.slice();
  new DataView(sharedInfo.buffer).setBigUint64(3088, 15n, true);
  only(t, await checkImage(await imageBytes({ ...g, sharedInfo })), 'bad-value', 'SHARED_INFO', /max_pfn is 0xf, but the P2M covers 0x10/);
});

test('records in an order the spec allows but Xen never writes are flagged', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const items = parseImage(bytes).items;
  const tsc = items.find((i) => i.type === 'TSC_INFO')!.offset;
  const sh = items.find((i) => i.type === 'SHARED_INFO')!.offset;
  const vcpu = items.find((i) => i.type === 'X86_PV_VCPU_BASIC')!.offset;
  const swapped = concat([bytes.subarray(0, tsc), bytes.subarray(sh, vcpu), bytes.subarray(tsc, sh), bytes.subarray(vcpu)]);
  t.is(parseImage(swapped).error, undefined);
  only(t, await checkImage(swapped), 'bad-order', 'TSC_INFO', /after a record that the x86 PV layout puts later/);
});

test('a parse error is the one error reported', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const r = await checkImage(bytes.subarray(0, 5000));
  only(t, r, 'truncated', 'PAGE_DATA', /needs/);
});

test('checkImage reads a file path and a stream of chunks', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-check-'));
  try {
    const bytes = await imageBytes(fakeGuest({ maxPfn: 600, vcpus: 2 }));
    const file = path.join(dir, 'guest.img');
    writeFileSync(file, bytes);
    const fromFile = await checkImage(file);
    t.true(fromFile.ok, fromFile.errors.map((e) => e.message).join('\n'));
    t.is(fromFile.summary.bytes, bytes.length);
    const fromStream = await checkImage(Readable.from(randomChunks(bytes, 5, 10_000)));
    t.deepEqual(fromStream.summary, fromFile.summary);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pinned and unpinned L4 tables are both fine for CR3', async (t) => {
  const g = fakeGuest();
  const unpinned = { ...g, pages: g.pages.map((p) => (p.pfn === g.l4Pfn ? { ...p, type: PageType.L4TAB } : p)) };
  t.true((await checkImage(await imageBytes(unpinned))).ok);
});

import test from 'ava';
import { Writable } from 'node:stream';
import {
  PAGE_DATA_MAX_BATCH,
  PAGE_SIZE,
  PageType,
  SaveStreamWriter,
  StreamParser,
  parseImage,
  writeSaveImage,
  type ItemOfType,
  type PageInput,
  type StreamItem,
} from '../../hypervisor/tools/stream/index.js';
import { CONFIG, META, checkpointedBytes, fakeGuest, imageBytes, prng, randInt, type FakeGuest } from './fake-guest.js';

const kinds = (items: readonly StreamItem[]): string[] => items.map((i) => `${i.layer}:${i.type}`);

function pagesOf(items: readonly StreamItem[]): PageInput[] {
  const out: PageInput[] = [];
  for (const it of items) {
    if (it.type !== 'PAGE_DATA') continue;
    for (const p of it.pages) out.push(p.data === undefined ? { pfn: p.pfn, type: p.type } : { pfn: p.pfn, type: p.type, data: p.data });
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

function assertSamePages(t: import('ava').ExecutionContext, got: readonly PageInput[], want: readonly PageInput[]): void {
  t.is(got.length, want.length, 'as many pages read back as written');
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g.pfn !== w.pfn || g.type !== w.type || (g.data === undefined) !== (w.data === undefined) || (g.data && w.data && !sameBytes(g.data, w.data))) {
      t.fail(`page ${i}: read pfn ${g.pfn} type ${g.type}, wrote pfn ${w.pfn} type ${w.type} (or the data differs)`);
      return;
    }
  }
  t.pass();
}

test('write -> read gives back every header and record, in the spec order', async (t) => {
  const g = fakeGuest();
  const { items, error } = parseImage(await imageBytes(g));
  t.is(error, undefined);
  t.deepEqual(kinds(items), [
    'xl:XL_HEADER',
    'libxl:LIBXL_HEADER',
    'libxl:LIBXC_CONTEXT',
    'libxc:IMAGE_HEADER',
    'libxc:DOMAIN_HEADER',
    'libxc:X86_PV_INFO',
    'libxc:STATIC_DATA_END',
    'libxc:X86_PV_P2M_FRAMES',
    'libxc:PAGE_DATA',
    'libxc:TSC_INFO',
    'libxc:SHARED_INFO',
    'libxc:X86_PV_VCPU_BASIC',
    'libxc:END',
    'libxl:END',
  ]);
  const by = <T extends StreamItem['type']>(type: T) => items.find((i) => i.type === type) as ItemOfType<T>;
  const xl = by('XL_HEADER');
  t.deepEqual(xl.config, { format: 'xl.cfg', text: CONFIG });
  t.deepEqual(xl.xenportMeta, META);
  t.is(xl.mandatoryFlags, 2, 'STREAMV2 only: the config is xl.cfg text, not JSON');
  t.like(by('IMAGE_HEADER'), { version: 3, options: 0 });
  t.like(by('DOMAIN_HEADER'), { domainType: 1, pageShift: 12, xenMajor: 4, xenMinor: 17 });
  t.like(by('X86_PV_INFO'), { guestWidth: 8, ptLevels: 4 });
  t.like(by('X86_PV_P2M_FRAMES'), { startPfn: 0, endPfn: 15 });
  t.deepEqual(by('X86_PV_P2M_FRAMES').frames, [BigInt(g.p2mPfns[0]!)]);
  t.like(by('TSC_INFO'), { mode: 0, khz: 2_500_000, nsec: 1_234_567_890_123n, incarnation: 1 });
  t.true(sameBytes(by('SHARED_INFO').data, g.sharedInfo));
  t.is(by('X86_PV_VCPU_BASIC').vcpuId, 0);
  t.true(sameBytes(by('X86_PV_VCPU_BASIC').context, g.vcpus[0]!.context));
  assertSamePages(t, pagesOf(items), g.pages);
});

test('every record starts on an 8-byte boundary after the xl header', async (t) => {
  const { items } = parseImage(await imageBytes(fakeGuest({ vcpus: 2, blobs: true })));
  const libxlStart = items.find((i) => i.type === 'LIBXL_HEADER')!.offset;
  for (const it of items) if (it.layer !== 'xl') t.is((it.offset - libxlStart) % 8, 0, `${it.type} at ${it.offset}`);
});

test('more than 1024 pages go out as several PAGE_DATA records of at most 1024 pfns', async (t) => {
  const g = fakeGuest({ maxPfn: 2500, seed: 7 });
  const { items, error } = parseImage(await imageBytes(g));
  t.is(error, undefined);
  const batches = items.flatMap((i) => (i.type === 'PAGE_DATA' ? [i.pages.length] : []));
  t.deepEqual(batches, [PAGE_DATA_MAX_BATCH, PAGE_DATA_MAX_BATCH, 2500 - 2 * PAGE_DATA_MAX_BATCH]);
  assertSamePages(t, pagesOf(items), g.pages);
  t.is((items.find((i) => i.type === 'X86_PV_P2M_FRAMES') as ItemOfType<'X86_PV_P2M_FRAMES'>).frames.length, 5);
});

test('vCPU blobs and several vCPUs round-trip; empty blobs are elided', async (t) => {
  const g = fakeGuest({ vcpus: 3, blobs: true });
  const withEmpty: FakeGuest = { ...g, vcpus: [...g.vcpus.slice(0, 2), { ...g.vcpus[2]!, extended: new Uint8Array(0), xsave: new Uint8Array(0), msrs: new Uint8Array(0) }] };
  const { items, error } = parseImage(await imageBytes(withEmpty));
  t.is(error, undefined);
  const vcpuRecs = items.flatMap((i) => ('vcpuId' in i ? [`${i.type}/${i.vcpuId}/${i.context.length}`] : []));
  t.deepEqual(vcpuRecs, [
    'X86_PV_VCPU_BASIC/0/5168', 'X86_PV_VCPU_EXTENDED/0/40', 'X86_PV_VCPU_XSAVE/0/576', 'X86_PV_VCPU_MSRS/0/32',
    'X86_PV_VCPU_BASIC/1/5168', 'X86_PV_VCPU_EXTENDED/1/40', 'X86_PV_VCPU_XSAVE/1/576', 'X86_PV_VCPU_MSRS/1/32',
    'X86_PV_VCPU_BASIC/2/5168',
  ]);
});

test('bare libxl and bare libxc streams round-trip too', async (t) => {
  const g = fakeGuest();
  const libxl = parseImage(await imageBytes(g, 'libxl'), { format: 'libxl' });
  t.is(libxl.error, undefined);
  t.is(libxl.items[0]?.type, 'LIBXL_HEADER');
  const libxc = parseImage(await imageBytes(g, 'libxc'), { format: 'libxc' });
  t.is(libxc.error, undefined);
  t.deepEqual(kinds(libxc.items).slice(0, 2), ['libxc:IMAGE_HEADER', 'libxc:DOMAIN_HEADER']);
  t.is(libxc.items.at(-1)?.type, 'END');
  assertSamePages(t, pagesOf(libxc.items), g.pages);
});

test('a checkpointed stream alternates libxc CHECKPOINT and libxl CHECKPOINT_END', async (t) => {
  const g = fakeGuest();
  const { items, error } = parseImage(await checkpointedBytes(g, 2));
  t.is(error, undefined);
  const marks = kinds(items).filter((k) => /CHECKPOINT|:END|PAGE_DATA|VCPU/.test(k));
  t.deepEqual(marks, [
    'libxc:PAGE_DATA', 'libxc:X86_PV_VCPU_BASIC', 'libxc:CHECKPOINT', 'libxl:CHECKPOINT_END',
    'libxc:PAGE_DATA', 'libxc:X86_PV_VCPU_BASIC', 'libxc:CHECKPOINT', 'libxl:CHECKPOINT_END',
    'libxc:PAGE_DATA', 'libxc:X86_PV_VCPU_BASIC', 'libxc:END', 'libxl:END',
  ]);
  t.is(pagesOf(items).length, g.pages.length + 2 * 3);
});

test('pages may come from an async iterable and from several writePages calls (pre-copy rounds)', async (t) => {
  const g = fakeGuest({ maxPfn: 40 });
  const chunks: Uint8Array[] = [];
  const w = new SaveStreamWriter((c) => void chunks.push(c));
  await w.start(g);
  await w.writeP2mFrames(g.p2m);
  async function* round(pages: readonly PageInput[]): AsyncGenerator<PageInput> {
    for (const p of pages) {
      await Promise.resolve();
      yield p;
    }
  }
  t.is(await w.writePages(round(g.pages)), 40);
  t.is(await w.writePages(round(g.pages.slice(5, 9))), 4);
  await w.writeEndOfCheckpoint(g);
  const summary = await w.finish();
  t.is(summary.pages, 44);
  const bytes = new Uint8Array(summary.bytes);
  let at = 0;
  for (const c of chunks) bytes.set(c, (at += c.length) - c.length);
  const { items, error } = parseImage(bytes);
  t.is(error, undefined);
  t.is(items.filter((i) => i.type === 'PAGE_DATA').length, 2);
});

test('the writer refuses calls out of order and values it cannot write', async (t) => {
  const g = fakeGuest();
  const fresh = (): SaveStreamWriter => new SaveStreamWriter(() => undefined);
  const w = fresh();
  await t.throwsAsync(() => w.writeP2mFrames(g.p2m), { instanceOf: RangeError, message: /phase 'new'/ });
  await t.throwsAsync(() => w.start({ config: CONFIG }), { instanceOf: RangeError, message: /xenportMeta/ });
  await w.start(g);
  await t.throwsAsync(() => w.writeP2mFrames({ maxPfn: 16, frames: [5, 6] }), { message: /expected 1/ });
  await t.throwsAsync(() => w.writeP2mFrames({ maxPfn: 16, frames: [16] }), { message: /not below maxPfn/ });
  await w.writeP2mFrames(g.p2m);
  await t.throwsAsync(() => w.finish(), { message: /phase 'pages'/ });
  await t.throwsAsync(() => w.writeEndOfCheckpoint({ ...g, vcpus: [{ id: 0, context: new Uint8Array(100) }] }), { message: /5168/ });
  await t.throwsAsync(() => w.writeEndOfCheckpoint({ ...g, sharedInfo: new Uint8Array(3136) }), { message: /shared info is 3136 bytes/ });

  const badPages: [PageInput, RegExp][] = [
    [{ pfn: 16, type: PageType.NOTAB, data: new Uint8Array(PAGE_SIZE) }, /not below maxPfn 16/],
    [{ pfn: 3, type: PageType.NOTAB, data: new Uint8Array(10) }, /needs 4096 bytes/],
    [{ pfn: 3, type: PageType.XTAB, data: new Uint8Array(PAGE_SIZE) }, /carries no data/],
    [{ pfn: 3, type: 6 as PageType }, /unknown page type/],
  ];
  for (const [page, message] of badPages) {
    const pw = fresh();
    await pw.start(g);
    await pw.writeP2mFrames(g.p2m);
    await t.throwsAsync(() => pw.writePages([page]), { instanceOf: RangeError, message });
    await t.throwsAsync(() => pw.writePages(g.pages), { message: /phase 'failed'/ }, 'a failed writePages leaves the writer unusable');
  }
});

test('a slow Writable sink gets backpressure: the writer never runs far ahead of it', async (t) => {
  const g = fakeGuest({ maxPfn: 8192, seed: 3 });
  let written = 0;
  const sink = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      setImmediate(cb);
    },
  });
  let produced = 0;
  let maxAhead = 0;
  async function* pages(): AsyncGenerator<PageInput> {
    for (const p of g.pages) {
      produced++;
      maxAhead = Math.max(maxAhead, produced * PAGE_SIZE - written);
      yield p;
    }
  }
  const summary = await writeSaveImage(sink, { ...g, pages: pages() });
  await new Promise<void>((resolve) => sink.end(resolve));
  t.is(written, summary.bytes);
  t.true(maxAhead < 3 * PAGE_DATA_MAX_BATCH * PAGE_SIZE, `produced at most ~2 batches ahead of the sink (was ${maxAhead} bytes)`);
});

test('a sink that fails makes the write fail and the writer unusable', async (t) => {
  const g = fakeGuest({ maxPfn: 2500 });
  let calls = 0;
  const w = new SaveStreamWriter(async () => {
    if (++calls > 1) throw new Error('disk full');
  });
  await w.start(g);
  await w.writeP2mFrames(g.p2m);
  await t.throwsAsync(() => w.writePages(g.pages), { message: 'disk full' });
  await t.throwsAsync(() => w.writeEndOfCheckpoint(g), { message: /phase 'failed'/ });
});

test('a long seeded random stream of writes and reads agrees page for page', async (t) => {
  const r = prng(99);
  const g = fakeGuest({ maxPfn: 1500, seed: 11 });
  // Shuffle the page order: the format allows any order.
  const pages = [...g.pages];
  for (let i = pages.length - 1; i > 0; i--) {
    const j = randInt(r, 0, i + 1);
    [pages[i], pages[j]] = [pages[j]!, pages[i]!];
  }
  const p = new StreamParser();
  const items: StreamItem[] = [];
  await writeSaveImage((c) => void items.push(...p.push(c).items), { ...g, pages });
  const end = p.end();
  items.push(...end.items);
  t.is(end.error, undefined);
  t.true(end.done);
  assertSamePages(t, pagesOf(items), pages);
});

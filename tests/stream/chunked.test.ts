import test from 'ava';
import { Readable } from 'node:stream';
import { StreamParser, parseImage, readStream, type StreamItem } from '../../hypervisor/tools/stream/index.js';
import { checkpointedBytes, fakeGuest, imageBytes, randomChunks } from './fake-guest.js';

function parseChunks(chunks: readonly Uint8Array[]): { items: StreamItem[]; error: unknown; done: boolean } {
  const p = new StreamParser();
  const items: StreamItem[] = [];
  for (const c of chunks) {
    const s = p.push(c);
    items.push(...s.items);
    if (s.error) break;
  }
  const end = p.end();
  items.push(...end.items);
  return { items, error: end.error, done: end.done };
}

test('random chunk sizes (50 seeds) give exactly the items of a whole-buffer parse', async (t) => {
  const bytes = await imageBytes(fakeGuest({ vcpus: 2, blobs: true }));
  const whole = parseImage(bytes);
  t.is(whole.error, undefined);
  for (let seed = 1; seed <= 50; seed++) {
    const r = parseChunks(randomChunks(bytes, seed, 9000));
    t.is(r.error, undefined, `seed ${seed}`);
    t.true(r.done);
    t.deepEqual(r.items, whole.items, `seed ${seed}`);
  }
});

test('one byte at a time gives the same items', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const r = parseChunks(Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)));
  t.is(r.error, undefined);
  t.deepEqual(r.items, parseImage(bytes).items);
});

test('large multi-batch and checkpointed streams survive random chunking', async (t) => {
  for (const bytes of [await imageBytes(fakeGuest({ maxPfn: 2500, seed: 2 })), await checkpointedBytes(fakeGuest(), 3)]) {
    const whole = parseImage(bytes);
    t.is(whole.error, undefined);
    for (const seed of [101, 202, 303]) t.deepEqual(parseChunks(randomChunks(bytes, seed, 200_000)).items, whole.items);
  }
});

test('items arrive as soon as their bytes do, not at the end', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const p2m = parseImage(bytes).items.find((i) => i.type === 'X86_PV_P2M_FRAMES')!.offset;
  const p = new StreamParser();
  const first = p.push(bytes.subarray(0, p2m + 8));
  t.deepEqual(first.items.map((i) => i.type), ['XL_HEADER', 'LIBXL_HEADER', 'LIBXC_CONTEXT', 'IMAGE_HEADER', 'DOMAIN_HEADER', 'X86_PV_INFO', 'STATIC_DATA_END']);
  t.false(first.done);
  t.is(p.push(bytes.subarray(p2m + 8)).done, true);
});

test('readStream reads a Node Readable and yields the same items', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const items: StreamItem[] = [];
  for await (const it of readStream(Readable.from(randomChunks(bytes, 9, 5000).map((c) => Buffer.from(c))))) items.push(it);
  t.deepEqual(items, parseImage(bytes).items);
});

test('a migration socket carries more after END: allowTrailing keeps it for the caller', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  const after = new TextEncoder().encode('domain received, ready to unpause');
  const p = new StreamParser({ allowTrailing: true });
  p.push(bytes);
  const s = p.push(after);
  t.is(s.error, undefined);
  t.true(s.done);
  t.deepEqual(p.remainder(), after);
});

import test, { type ExecutionContext } from 'ava';
import {
  StreamError,
  StreamParser,
  checkImage,
  parseImage,
  type ItemOfType,
  type StreamErrorCode,
  type StreamItem,
} from '../../hypervisor/tools/stream/index.js';
import { concat, fakeGuest, imageBytes, prng, randInt, randomChunks } from './fake-guest.js';

const good = await imageBytes(fakeGuest());
const goodItems = parseImage(good).items;

const item = <T extends StreamItem['type']>(type: T, nth = 0): ItemOfType<T> =>
  goodItems.filter((i) => i.type === type)[nth] as ItemOfType<T>;
/** Byte span of the nth item of a type: from its offset to the next item's. */
function span(type: StreamItem['type'], nth = 0): [number, number] {
  const it = item(type, nth);
  const next = goodItems[goodItems.indexOf(it) + 1];
  return [it.offset, next?.offset ?? good.length];
}
const edit = (f: (b: Uint8Array, dv: DataView) => void, base: Uint8Array = good): Uint8Array => {
  const b = base.slice();
  f(b, new DataView(b.buffer));
  return b;
};
const without = (type: StreamItem['type']): Uint8Array => {
  const [a, b] = span(type);
  return concat([good.subarray(0, a), good.subarray(b)]);
};

interface Expect {
  readonly code: StreamErrorCode;
  readonly layer?: string;
  readonly record?: string;
  readonly offset?: number;
  readonly recordOffset?: number;
  readonly detail?: RegExp;
}

function expectError(t: ExecutionContext, bytes: Uint8Array, want: Expect, opts = {}): StreamError | undefined {
  const { error } = parseImage(bytes, opts);
  if (!(error instanceof StreamError)) {
    t.fail(`expected a StreamError ${want.code}, the image was accepted`);
    return undefined;
  }
  const { detail, ...fields } = want;
  t.like(error, fields, error.message);
  if (detail) t.regex(error.detail, detail);
  t.regex(error.message, new RegExp(`^${error.layer} ${error.record.replace(/[()]/g, '\\$&')} at offset ${error.offset} `));
  return error;
}

const PAGE = item('PAGE_DATA');
const LIBXL = item('LIBXL_HEADER').offset;
const IHDR = item('IMAGE_HEADER').offset;

test('wrong xl magic', (t) => {
  expectError(t, edit((b) => (b[5] = b[5]! ^ 0x20)), { code: 'bad-magic', layer: 'xl', record: 'XL_HEADER', offset: 5 });
});

test('wrong libxl ident and version', (t) => {
  expectError(t, edit((b) => (b[LIBXL + 2] = 0)), { code: 'bad-magic', layer: 'libxl', record: 'LIBXL_HEADER', offset: LIBXL });
  expectError(t, edit((_, dv) => dv.setUint32(LIBXL + 8, 3)), { code: 'bad-version', record: 'LIBXL_HEADER', offset: LIBXL + 8 });
});

test('wrong libxc marker, id and version', (t) => {
  expectError(t, edit((b) => (b[IHDR + 3] = 0)), { code: 'bad-magic', layer: 'libxc', record: 'IMAGE_HEADER', offset: IHDR, detail: /marker/ });
  expectError(t, edit((b) => (b[IHDR + 8] = 0x41)), { code: 'bad-magic', record: 'IMAGE_HEADER', offset: IHDR + 8, detail: /XENF/ });
  expectError(t, edit((_, dv) => dv.setUint32(IHDR + 12, 4)), { code: 'bad-version', record: 'IMAGE_HEADER', offset: IHDR + 12 });
  expectError(t, edit((_, dv) => dv.setUint32(IHDR + 12, 1)), { code: 'bad-version', record: 'IMAGE_HEADER', offset: IHDR + 12 });
});

test('big-endian streams are refused at each layer', (t) => {
  expectError(t, edit((_, dv) => dv.setUint32(32, 0x01020304, false)), { code: 'bad-endianness', layer: 'xl', offset: 32 });
  expectError(t, edit((b) => (b[LIBXL + 15] = b[LIBXL + 15]! | 1)), { code: 'bad-endianness', layer: 'libxl', offset: LIBXL + 12 });
  expectError(t, edit((b) => (b[IHDR + 17] = b[IHDR + 17]! | 1)), { code: 'bad-endianness', layer: 'libxc', offset: IHDR + 16 });
});

test('xl mandatory flags: unknown ones and a legacy stream are refused', (t) => {
  expectError(t, edit((_, dv) => dv.setUint32(36, 2 | 4, true)), { code: 'unsupported-flags', offset: 36 });
  expectError(t, edit((_, dv) => dv.setUint32(36, 0, true)), { code: 'bad-version', offset: 36, detail: /STREAMV2/ });
  expectError(t, edit((_, dv) => dv.setUint32(40, 1, true)), { code: 'unsupported-flags', offset: 40 });
});

test('missing END: the stream just stops', (t) => {
  const cut = good.subarray(0, good.length - 16);
  expectError(t, cut, { code: 'truncated', layer: 'libxc', record: 'RECORD_HEADER', offset: cut.length, recordOffset: cut.length });
});

test('an END without the records a PV restore needs names what is missing', (t) => {
  const end = item('END').offset;
  expectError(t, without('SHARED_INFO'), { code: 'missing', layer: 'libxc', record: 'END', offset: end - 4104, detail: /SHARED_INFO/ });
  expectError(t, without('X86_PV_VCPU_BASIC'), { code: 'missing', record: 'END', detail: /X86_PV_VCPU_BASIC/ });
});

test('a record longer than the rest of the file is a truncation naming the record', (t) => {
  const bytes = edit((_, dv) => dv.setUint32(PAGE.offset + 4, 4_000_000, true));
  expectError(t, bytes, { code: 'truncated', layer: 'libxc', record: 'PAGE_DATA', recordOffset: PAGE.offset, offset: good.length, detail: /PAGE_DATA body/ });
});

test('a record whose length its type forbids fails at the length field', (t) => {
  const sh = item('SHARED_INFO').offset;
  expectError(t, edit((_, dv) => dv.setUint32(sh + 4, 4104, true)), { code: 'bad-length', record: 'SHARED_INFO', offset: sh + 4 });
  expectError(t, edit((_, dv) => dv.setUint32(sh + 4, 0x7fffffff, true)), { code: 'bad-length', record: 'SHARED_INFO', offset: sh + 4, detail: /maximum/ });
  const pd = PAGE.offset;
  expectError(t, edit((_, dv) => dv.setUint32(pd + 4, dv.getUint32(pd + 4, true) - 8, true)), { code: 'bad-length', record: 'PAGE_DATA' });
});

test('a PAGE_DATA pfn beyond max_pfn', (t) => {
  const word = PAGE.offset + 16 + 8 * 3;
  const e = expectError(t, edit((_, dv) => dv.setUint32(word, 16, true)), { code: 'pfn-out-of-range', layer: 'libxc', record: 'PAGE_DATA', offset: word, recordOffset: PAGE.offset });
  t.regex(e?.detail ?? '', /pfn\[3\] = 0x10 is not below max_pfn 0x10/);
});

test('reserved fields and bits must be zero', (t) => {
  expectError(t, edit((b) => (b[PAGE.offset + 12] = 1)), { code: 'reserved-nonzero', record: 'PAGE_DATA', offset: PAGE.offset + 12 });
  expectError(t, edit((b) => (b[PAGE.offset + 16 + 7] = b[PAGE.offset + 16 + 7]! | 0x01)), { code: 'reserved-nonzero', record: 'PAGE_DATA', offset: PAGE.offset + 16 });
  expectError(t, edit((b) => (b[PAGE.offset + 16 + 7] = 0x60)), { code: 'bad-value', record: 'PAGE_DATA', detail: /invalid page type 0x6/ });
  const tsc = item('TSC_INFO').offset;
  expectError(t, edit((b) => (b[tsc + 8 + 20] = 1)), { code: 'reserved-nonzero', record: 'TSC_INFO', offset: tsc + 28 });
  expectError(t, edit((b) => (b[IHDR + 19] = 1)), { code: 'reserved-nonzero', record: 'IMAGE_HEADER', offset: IHDR + 18 });
});

test('non-zero record padding', async (t) => {
  const g = fakeGuest();
  const bytes = await imageBytes({ ...g, vcpus: [{ ...g.vcpus[0]!, extended: new Uint8Array(36).fill(7) }] });
  const ext = parseImage(bytes).items.find((i) => i.type === 'X86_PV_VCPU_EXTENDED')!;
  const padAt = ext.offset + 8 + 44 + 2;
  expectError(t, edit((b) => (b[padAt] = 0xaa), bytes), { code: 'bad-padding', record: 'X86_PV_VCPU_EXTENDED', offset: padAt, recordOffset: ext.offset });
});

test('an unknown mandatory record is refused; an unknown optional one is skipped', (t) => {
  const tsc = item('TSC_INFO').offset;
  expectError(t, edit((_, dv) => dv.setUint32(tsc, 0x13, true)), { code: 'unknown-record', record: 'UNKNOWN(0x13)', offset: tsc });
  const r = parseImage(edit((_, dv) => dv.setUint32(tsc, 0x80000008, true)));
  t.is(r.error, undefined);
  t.like(r.items.find((i) => i.type === 'OPTIONAL'), { layer: 'libxc', rawType: 0x80000008, length: 24, offset: tsc });
  expectError(t, edit((_, dv) => dv.setUint32(LIBXL + 16, 9, true)), { code: 'unknown-record', layer: 'libxl', record: 'UNKNOWN(0x9)' });
});

test('records out of the order the spec requires', (t) => {
  expectError(t, without('X86_PV_P2M_FRAMES'), { code: 'bad-order', record: 'PAGE_DATA', detail: /before X86_PV_P2M_FRAMES/ });
  expectError(t, without('STATIC_DATA_END'), { code: 'bad-order', record: 'X86_PV_P2M_FRAMES', detail: /before STATIC_DATA_END/ });
  expectError(t, without('X86_PV_INFO'), { code: 'bad-order', record: 'STATIC_DATA_END', detail: /before X86_PV_INFO/ });
  const [a, b] = span('PAGE_DATA');
  const [c, d] = span('X86_PV_VCPU_BASIC');
  // vCPU state before the pages: move the vCPU record in front of PAGE_DATA.
  const moved = concat([good.subarray(0, a), good.subarray(c, d), good.subarray(a, c), good.subarray(d)]);
  expectError(t, moved, { code: 'bad-order', record: 'X86_PV_VCPU_BASIC', offset: a });
});

test('bytes after the final END', (t) => {
  const bytes = concat([good, new Uint8Array(8)]);
  expectError(t, bytes, { code: 'trailing-data', offset: good.length });
  t.is(parseImage(bytes, { allowTrailing: true }).error, undefined);
});

test('malformed xenport metadata in the xl header', (t) => {
  const tag = good.findIndex((_, i) => String.fromCharCode(...good.subarray(i, i + 8)) === 'xenport\0');
  t.true(tag > 48);
  expectError(t, edit((b) => (b[tag + 16] = 0x5b)), { code: 'bad-meta', layer: 'xl', record: 'XL_HEADER', offset: tag + 16 });
  expectError(t, edit((b) => (b[tag + 8] = 2)), { code: 'bad-meta', offset: tag + 8, detail: /version 2/ });
});

test('HVM and 32-bit PV streams are refused as unsupported', (t) => {
  const dh = item('DOMAIN_HEADER').offset;
  expectError(t, edit((_, dv) => dv.setUint32(dh, 2, true)), { code: 'unsupported', record: 'DOMAIN_HEADER', offset: dh });
  const info = item('X86_PV_INFO').offset;
  expectError(t, edit((b) => ((b[info + 8] = 4), (b[info + 9] = 3))), { code: 'unsupported', record: 'X86_PV_INFO', detail: /32-bit/ });
});

test('truncation at 1,000 seeded random offsets: always a clear "truncated" at the cut', (t) => {
  const r = prng(1000);
  for (let i = 0; i < 1000; i++) {
    const cut = randInt(r, 0, good.length);
    const { error } = parseImage(good.subarray(0, cut));
    if (!(error instanceof StreamError) || error.code !== 'truncated' || error.offset !== cut || error.recordOffset > cut || error.record === '') {
      t.fail(`cut at ${cut}: ${error instanceof StreamError ? error.message : String(error)}`);
      return;
    }
  }
  t.pass();
});

const KNOWN_CODES = new Set<string>([
  'truncated', 'bad-magic', 'bad-version', 'bad-endianness', 'unsupported-flags', 'reserved-nonzero', 'bad-padding',
  'bad-length', 'bad-value', 'unknown-record', 'unsupported', 'bad-order', 'duplicate', 'missing', 'pfn-out-of-range',
  'trailing-data', 'bad-meta', 'bad-pagetable', 'bad-vcpu',
]);

/**
 * Bytes that are structure rather than contents: everything but page data,
 * the shared info page, vCPU contexts and the xl.cfg text.
 */
function structuralOffsets(): number[] {
  const contents: [number, number][] = [];
  for (const it of goodItems) {
    if (it.type === 'PAGE_DATA') {
      const start = it.offset + 16 + 8 * it.pages.length;
      contents.push([start, start + 4096 * it.pages.filter((p) => p.data !== undefined).length]);
    } else if (it.type === 'SHARED_INFO') contents.push([it.offset + 8, it.offset + 8 + 4096]);
    else if (it.type === 'X86_PV_VCPU_BASIC') contents.push([it.offset + 16, it.offset + 16 + 5168]);
    else if (it.type === 'XL_HEADER') contents.push([52, 52 + new TextEncoder().encode(it.config?.text ?? '').length]);
  }
  const out: number[] = [];
  for (let o = 0; o < good.length; o++) if (!contents.some(([a, b]) => o >= a && o < b)) out.push(o);
  return out;
}

function isCleanError(e: unknown, len: number): e is StreamError {
  return (
    e instanceof StreamError && KNOWN_CODES.has(e.code) && typeof e.record === 'string' && e.record.length > 0 &&
    Number.isInteger(e.offset) && e.offset >= 0 && e.offset <= len && e.recordOffset >= 0 && e.recordOffset <= len && e.detail.length > 0
  );
}

test('1,000 seeded random bit flips: accepted, or a clear StreamError; chunking changes nothing', async (t) => {
  const r = prng(4242);
  const structural = structuralOffsets();
  let rejected = 0;
  for (let i = 0; i < 1000; i++) {
    // Half anywhere, half in the structure (most of the image is page contents).
    const at = i % 2 === 0 ? randInt(r, 0, good.length) : structural[randInt(r, 0, structural.length)]!;
    const bit = randInt(r, 0, 8);
    const bytes = edit((b) => (b[at] = (b[at] ?? 0) ^ (1 << bit)));
    let result: ReturnType<typeof parseImage>;
    try {
      result = parseImage(bytes);
    } catch (e) {
      t.fail(`flip ${at}:${bit} threw ${String(e)}`);
      return;
    }
    if (result.error !== undefined) {
      rejected++;
      if (!isCleanError(result.error, bytes.length)) {
        t.fail(`flip ${at}:${bit}: unclear error ${String(result.error)}`);
        return;
      }
    }
    if (i % 5 === 0) {
      const p = new StreamParser();
      for (const c of randomChunks(bytes, i, 3000)) if (p.push(c).error) break;
      const e = p.end().error;
      t.deepEqual(e && { ...e, message: e.message }, result.error && { ...result.error, message: result.error.message }, `flip ${at}:${bit} chunked`);
    }
    if (i % 10 === 0) {
      const c = await checkImage(bytes);
      if (!c.errors.every((e) => isCleanError(e, bytes.length))) t.fail(`flip ${at}:${bit}: checkImage gave an unclear error`);
    }
  }
  t.log(`${rejected} of 1000 flipped images rejected`);
  t.true(rejected > 300, 'flips in the structure are caught');
});

/*
 * Restoring bad images. Every way an image can be wrong ends in a clear,
 * typed error (the codec's StreamError, or a RestoreError for an image that
 * is well-formed but unusable), each naming the record and the offset; the
 * restore leaves nothing behind (no domain, no frame: the free-page count
 * is back where it was); and the machine keeps running (a witness guest
 * on it goes on without a pattern error).
 *
 * A bit flip in page contents or in an opaque register cannot be detected
 * (the format has no checksums, as Xen's has none): such images restore.
 * What matters is that no flip gets past the checks as anything but a
 * typed error or a consistent domain.
 */
import test, { type ExecutionContext } from 'ava';
import { StreamError, parseImage, PageType, type ItemOfType, type StreamItem } from '../../hypervisor/tools/stream/index.js';
import { RestoreError, restoreDomain } from '../../hypervisor/tools/save/index.js';
import { mulberry32 } from '../../hypervisor/xen/frametable.js';
import { vcpu_guest_context } from '../../hypervisor/public/arch-x86_64.js';
import type { Machine } from '../../hypervisor/xen/machine.js';
import { V_ERRORS, V_SWEEP, memtestKernel } from './kernels/memtest.js';
import { freePages, guest, machine, runEntries, suspendAndSave, vars } from './fixture.js';
import { putTogether, tablesOf, takeApart } from './image-edit.js';

const source = machine({ seed: 3 });
const built = guest(source, memtestKernel, { pages: 96, window: 16 });
source.runUntil(() => false, 400);
const good = (await suspendAndSave(source, built.domid)).image;
const items = parseImage(good).items;
const nth = <T extends StreamItem['type']>(type: T, n = 0): ItemOfType<T> =>
  items.filter((i) => i.type === type && i.layer !== 'libxl')[n] as ItemOfType<T>;

/** The target machine, with a witness guest that must keep running through all of this. */
const target = machine({ seed: 9, memoryMiB: 16 });
const witness = guest(target, memtestKernel, { pages: 128, window: 4 });

type Outcome = 'restored' | StreamError | RestoreError;

/** Restore `bytes` into the target; any result but a typed error or a domain is a failure. Accounting checked. */
async function attempt(t: ExecutionContext, bytes: Uint8Array, m: Machine = target): Promise<Outcome> {
  const free = freePages(m);
  const domains = m.domains.length;
  let outcome: Outcome;
  try {
    const r = await restoreDomain(m, bytes);
    m.xc.destroyDomain(r.domid);
    outcome = 'restored';
  } catch (e) {
    if (!(e instanceof StreamError) && !(e instanceof RestoreError)) throw e;
    outcome = e;
  }
  if (freePages(m) !== free || m.domains.length !== domains) {
    t.fail(`left behind: ${free - freePages(m)} frames, ${m.domains.length - domains} domains (${outcome === 'restored' ? outcome : outcome.message})`);
  }
  return outcome;
}

async function refused(t: ExecutionContext, bytes: Uint8Array, m: Machine = target): Promise<StreamError | RestoreError> {
  const o = await attempt(t, bytes, m);
  if (o === 'restored') {
    t.fail('the image was restored');
    throw new Error('restored');
  }
  t.regex(o.message, new RegExp(`${o.record.replace(/[()]/g, '\\$&')} at offset ${o.offset}`), 'the message names record and offset');
  return o;
}

const edit = (f: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
  const b = good.slice();
  f(b, new DataView(b.buffer, b.byteOffset, b.length));
  return b;
};

test.after('the witness guest kept running without an error', (t) => {
  runEntries(t, target, witness.domid, 50);
  const s = vars(target, witness.domid, { errors: V_ERRORS, sweep: V_SWEEP });
  t.is(s.errors, 0);
  t.true(s.sweep > 0);
});

test.serial('the good image restores (the control case)', async (t) => {
  t.is(await attempt(t, good), 'restored');
});

test.serial('truncated at 1,000 seeded random offsets: each a truncation error, nothing left behind', async (t) => {
  const rnd = mulberry32(0x5eed);
  const codes = new Map<string, number>();
  for (let i = 0; i < 1000; i++) {
    const cut = Math.floor(rnd() * good.length);
    const e = await refused(t, good.subarray(0, cut));
    if (!(e instanceof StreamError) || e.code !== 'truncated') t.fail(`cut at ${cut}: ${e.message}`);
    codes.set(e.record, (codes.get(e.record) ?? 0) + 1);
  }
  t.log(`truncations by record: ${JSON.stringify(Object.fromEntries(codes))}`);
});

test.serial('1,000 seeded random bit flips: a typed error or a consistent domain, nothing left behind', async (t) => {
  const rnd = mulberry32(0xf11b);
  let restored = 0;
  const kinds = new Map<string, number>();
  for (let i = 0; i < 1000; i++) {
    const bit = Math.floor(rnd() * good.length * 8);
    const o = await attempt(t, edit((b) => {
      b[bit >> 3]! ^= 1 << (bit & 7);
    }));
    if (o === 'restored') restored++;
    else {
      const k = `${o.name}:${o.code}`;
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
  }
  // Most bits of the image are page contents; flips elsewhere are caught.
  t.true(restored < 1000 && restored > 500, `${restored} restored`);
  t.log(`${restored} restored (page contents), refused: ${JSON.stringify(Object.fromEntries(kinds))}`);
});

test.serial('bit flips outside page contents are all refused or harmless', async (t) => {
  // Every byte of the image that is not page data nor vCPU registers.
  const meta: number[] = [];
  let at = 0;
  for (const it of items) {
    if (it.type === 'PAGE_DATA' && it.layer === 'libxc') {
      const dataAt = it.offset + 16 + 8 * it.pages.length;
      for (let o = at; o < dataAt; o++) meta.push(o);
      at = dataAt + 4096 * it.pages.filter((p) => p.data !== undefined).length;
    }
  }
  const rnd = mulberry32(77);
  let refusedCount = 0;
  for (let i = 0; i < 300; i++) {
    const byte = meta[Math.floor(rnd() * meta.length)]!;
    const o = await attempt(t, edit((b) => {
      b[byte]! ^= 1 << Math.floor(rnd() * 8);
    }));
    if (o !== 'restored') refusedCount++;
  }
  t.true(refusedCount > 150, `${refusedCount} of 300 refused`);
  t.log(`${refusedCount} of 300 flips in headers and page descriptors refused, the rest restored consistently`);
});

test.serial('wrong xl magic', async (t) => {
  const e = await refused(t, edit((b) => {
    b[3] = 0x21;
  }));
  t.like(e, { name: 'StreamError', code: 'bad-magic', record: 'XL_HEADER' });
});

test.serial('wrong libxc version', async (t) => {
  const ih = nth('IMAGE_HEADER').offset;
  const e = await refused(t, edit((_, dv) => dv.setUint32(ih + 12, 9, false)));
  t.like(e, { code: 'bad-version', record: 'IMAGE_HEADER', offset: ih + 12 });
});

test.serial('wrong libxl version', async (t) => {
  const lh = items.find((i) => i.type === 'LIBXL_HEADER')!.offset;
  const e = await refused(t, edit((_, dv) => dv.setUint32(lh + 8, 1, false)));
  t.like(e, { code: 'bad-version', record: 'LIBXL_HEADER' });
});

test.serial('big-endian byte order in the xl header and in the libxc header', async (t) => {
  const xl = await refused(t, edit((_, dv) => dv.setUint32(32, 0x01020304, false)));
  t.like(xl, { code: 'bad-endianness', record: 'XL_HEADER', offset: 32 });
  const ih = nth('IMAGE_HEADER').offset;
  const xc = await refused(t, edit((_, dv) => dv.setUint16(ih + 16, 1, false)));
  t.like(xc, { code: 'bad-endianness', record: 'IMAGE_HEADER' });
});

test.serial('an image of another kernel version is refused, naming both hashes', async (t) => {
  const hash = memtestKernel.versionHash;
  const text = Buffer.from(good).toString('latin1');
  const at = text.indexOf(hash);
  t.true(at > 0);
  const other = `${hash[0] === 'a' ? 'b' : 'a'}${hash.slice(1)}`;
  const e = await refused(t, edit((b) => b.set(Buffer.from(other, 'latin1'), at)));
  t.like(e, { name: 'RestoreError', code: 'kernel', record: 'XL_HEADER' });
  t.true(e.message.includes(other) && e.message.includes(hash), e.message);
});

test.serial('an image of a kernel this machine does not have', async (t) => {
  const at = Buffer.from(good).toString('latin1').indexOf('"name":"memtest"');
  const e = await refused(t, edit((b) => b.set(Buffer.from('"name":"memtesX"', 'latin1'), at)));
  t.like(e, { code: 'kernel' });
  t.regex(e.message, /needs kernel "memtesX", which this machine does not have/);
});

test.serial('missing END records', async (t) => {
  const noLibxl = await refused(t, good.subarray(0, good.length - 8));
  t.like(noLibxl, { code: 'truncated' });
  const noLibxc = await refused(t, good.subarray(0, good.length - 16));
  t.like(noLibxc, { code: 'truncated' });
});

test.serial('a record longer than the file', async (t) => {
  const p = nth('PAGE_DATA');
  const e = await refused(t, edit((_, dv) => dv.setUint32(p.offset + 4, 16 + 8 + 4096 * 1000, true)));
  t.true(e.code === 'truncated' || e.code === 'bad-length', e.message);
  const huge = await refused(t, edit((_, dv) => dv.setUint32(nth('SHARED_INFO').offset + 4, 0xffff_fff0, true)));
  t.like(huge, { code: 'bad-length', record: 'SHARED_INFO' });
});

test.serial('a PAGE_DATA pfn beyond max_pfn', async (t) => {
  const p = nth('PAGE_DATA');
  const word = p.offset + 16;
  const e = await refused(t, edit((_, dv) => dv.setUint32(word, 96 + 5, true)));
  t.like(e, { code: 'pfn-out-of-range', record: 'PAGE_DATA', offset: word });
});

test.serial('a page-table entry naming a pfn beyond max_pfn', async (t) => {
  const img = takeApart(good);
  const l4 = tablesOf(img, 4)[0]!;
  const page = img.pages.get(l4)!.data!;
  const dv = new DataView(page.buffer, page.byteOffset);
  dv.setUint32(8 * 273, (1000 * 4096 + 0x67) >>> 0, true);
  const e = await refused(t, await putTogether(img));
  t.like(e, { name: 'RestoreError', code: 'pfn-out-of-range', record: 'PAGE_DATA' });
  t.regex(e.message, /L4 entry 273 names pfn 0x3e8, not below max_pfn/);
});

test.serial('a page-table entry naming a pfn the image has no data for', async (t) => {
  const img = takeApart(good);
  const hole = 95; // the last pattern page, mapped by the L1
  img.pages.set(hole, { pfn: hole, type: PageType.XTAB });
  const e = await refused(t, await putTogether(img));
  t.like(e, { code: 'unpopulated', record: 'PAGE_DATA' });
  t.regex(e.message, /L1 entry \d+ names pfn 0x5f, which the image never gave data for/);
});

test.serial('vCPU 0 rdx naming a page that is no start_info', async (t) => {
  const img = takeApart(good);
  const ctx = img.vcpus[0]!.context;
  new DataView(ctx.buffer, ctx.byteOffset).setBigUint64(vcpu_guest_context.offsetOf('user_regs.rdx'), 0n, true);
  const e = await refused(t, await putTogether(img));
  t.like(e, { code: 'start-info', record: 'X86_PV_VCPU_BASIC' });
  t.regex(e.message, /holds no start_info/);
});

test.serial('CR3 naming a page that is not an L4', async (t) => {
  const img = takeApart(good);
  const ctx = img.vcpus[0]!.context;
  new DataView(ctx.buffer, ctx.byteOffset).setBigUint64(vcpu_guest_context.offsetOf('ctrlreg') + 24, 50n << 12n, true);
  const e = await refused(t, await putTogether(img));
  t.like(e, { code: 'vcpu', record: 'X86_PV_VCPU_BASIC' });
  t.regex(e.message, /CR3.*pfn 0x32 was not saved as an L4 page table/);
});

test.serial('a P2M frame that was saved as a page table', async (t) => {
  const img = takeApart(good);
  img.frames[0] = BigInt(tablesOf(img, 1)[0]!);
  const e = await refused(t, await putTogether(img));
  t.like(e, { code: 'page-table', record: 'X86_PV_P2M_FRAMES' });
});

test.serial('an L1 mapping a page table writably does not pin, and nothing is left', async (t) => {
  const img = takeApart(good);
  const l1 = tablesOf(img, 1)[0]!;
  const page = img.pages.get(l1)!.data!;
  const dv = new DataView(page.buffer, page.byteOffset);
  // Entry for the L4's pfn: make it writable.
  const l4 = tablesOf(img, 4)[0]!;
  dv.setUint32(8 * l4, dv.getUint32(8 * l4, true) | 0x2, true);
  const e = await refused(t, await putTogether(img));
  t.like(e, { name: 'RestoreError', code: 'pin', record: 'PAGE_DATA' });
  t.regex(e.message, /pinning the L4 at pfn/);
});

test.serial('a machine without the memory for the image', async (t) => {
  const small = machine({ seed: 4, memoryMiB: 1 });
  const filler = small.xc.createDomain({});
  small.xc.populatePhysmap(filler, Array.from({ length: 256 - 80 }, (_, i) => i));
  const e = await refused(t, good, small);
  t.like(e, { name: 'RestoreError', code: 'memory', record: 'PAGE_DATA' });
});

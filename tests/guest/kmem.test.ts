import test from 'ava';
import { KERNEL_IMAGE_PAGES, PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { kmem_alloc, kmem_zalloc, kmem_free, kmem_stats } from '../../sys/kern/subr_kmem.js';
import { uvm_availmem } from '../../sys/uvm/uvm_page.js';
import { KMEM_MAXCLASSED } from '../../sys/sys/kmem.js';
import { KernelPanic } from '../../sys/kern/subr_prf.js';
import { Harness, xorshift } from './harness.js';

/** Fill a block with a pattern derived from its address and size. */
function stamp(h: Harness, p: number, size: number): void {
  for (let i = 0; i < size; i += 7) h.fake.mem.setUint8(p + i, (p / 16 + size + i) & 0xff);
}
function intact(h: Harness, p: number, size: number): boolean {
  for (let i = 0; i < size; i += 7) if (h.fake.mem.getUint8(p + i) !== ((p / 16 + size + i) & 0xff)) return false;
  return true;
}

/** 10,000 random alloc/free operations; frees everything at the end. */
function churn(h: Harness, seed: number): { maxLive: number; corrupt: number } {
  const rnd = xorshift(seed);
  const live: { p: number; size: number }[] = [];
  let maxLive = 0;
  let corrupt = 0;
  for (let op = 0; op < 10_000; op++) {
    if (live.length === 0 || rnd() % 100 < 55) {
      const r = rnd() % 100;
      const size = r < 80 ? 1 + (rnd() % 200) : r < 97 ? 1 + (rnd() % 4000) : 4100 + (rnd() % 9000);
      const p = kmem_alloc(h.cpu, size);
      if (p === 0) throw new Error(`allocation of ${size} failed at op ${op}`);
      stamp(h, p, size);
      live.push({ p, size });
      maxLive = Math.max(maxLive, live.length);
    } else {
      const i = rnd() % live.length;
      const b = live[i]!;
      live[i] = live[live.length - 1]!;
      live.pop();
      if (!intact(h, b.p, b.size)) corrupt++;
      kmem_free(h.cpu, b.p, b.size);
    }
  }
  for (const b of live) {
    if (!intact(h, b.p, b.size)) corrupt++;
    kmem_free(h.cpu, b.p, b.size);
  }
  return { maxLive, corrupt };
}

test('10,000 alloc/free cycles: no corruption, nothing in use after, and a second round takes no new pages', (t) => {
  const h = Harness.boot({ memPages: KERNEL_IMAGE_PAGES + 2048 });
  const { maxLive, corrupt } = churn(h, 1234);
  t.true(maxLive > 50, 'the workload keeps many blocks alive at once');
  t.is(corrupt, 0, 'no block was overwritten by another allocation');
  const s1 = kmem_stats(h.cpu);
  t.deepEqual(s1.inuse, [0, 0, 0, 0, 0, 0, 0, 0], 'every class block came back');
  t.is(s1.largeInuse, 0);
  t.is(s1.largePages, 0);
  const classPages = s1.npages.reduce((a, b) => a + b, 0);
  t.is(uvm_availmem(h.cpu), 2048 - classPages, 'pages not held by size classes are all free again (large allocations returned theirs)');

  churn(h, 1234);
  const s2 = kmem_stats(h.cpu);
  t.deepEqual(s2.npages, s1.npages, 'the same workload again reuses the same pages: no leak');
  t.deepEqual(s2.inuse, [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('every block is 16-byte aligned and blocks never overlap', (t) => {
  const h = Harness.boot();
  const blocks: [number, number][] = [];
  for (let size = 1; size <= 600; size += 3) {
    const p = kmem_alloc(h.cpu, size);
    t.not(p, 0);
    t.is(p % 16, 0, `payload of a ${size}-byte block is 16-aligned`);
    blocks.push([p, size]);
  }
  blocks.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < blocks.length; i++) {
    const [pa, sa] = blocks[i - 1]!;
    t.true(pa + sa <= blocks[i]![0], 'blocks are disjoint');
  }
  const big = kmem_alloc(h.cpu, KMEM_MAXCLASSED + 1);
  t.is(big % 16, 0);
  t.is((big - 16) % PAGE_SIZE, 0, 'a large allocation starts a page (after its header)');
});

test('kmem_zalloc returns zeroed memory even when reusing a dirty block', (t) => {
  const h = Harness.boot();
  const p = kmem_alloc(h.cpu, 100);
  h.fake.mem.fill(p, 100, 0xee);
  kmem_free(h.cpu, p, 100);
  const q = kmem_zalloc(h.cpu, 100);
  t.is(q, p, 'the freed block is reused first');
  t.true(h.fake.mem.readBytes(q, 100).every((b) => b === 0));
});

test('exhaustion returns 0, counts the failure, and recovers after a free', (t) => {
  const h = Harness.boot({ memPages: KERNEL_IMAGE_PAGES + 4 });
  const got: number[] = [];
  for (;;) {
    const p = kmem_alloc(h.cpu, 1000);
    if (p === 0) break;
    got.push(p);
  }
  t.is(got.length, 4 * 4 - 0, 'four pages of 1024-byte blocks');
  t.is(kmem_alloc(h.cpu, 5000), 0, 'no pages left for a large allocation either');
  t.is(kmem_stats(h.cpu).nfail, 2);
  kmem_free(h.cpu, got.pop()!, 1000);
  t.not(kmem_alloc(h.cpu, 1000), 0);
});

test('a wrong size or a double free panics the kernel', (t) => {
  const h = Harness.boot();
  const p = kmem_alloc(h.cpu, 64);
  t.throws(() => kmem_free(h.cpu, p, 65), { instanceOf: KernelPanic, message: /allocated with size 64, freed with 65/ });
  const h2 = Harness.boot();
  const q = kmem_alloc(h2.cpu, 64);
  kmem_free(h2.cpu, q, 64);
  t.throws(() => kmem_free(h2.cpu, q, 64), { instanceOf: KernelPanic, message: /freed twice/ });
  t.regex(h2.fake.console, /panic: kmem_free: 0x[0-9a-f]+ freed twice\n/);
});

test('large allocations give their pages back to uvm', (t) => {
  const h = Harness.boot();
  const before = uvm_availmem(h.cpu);
  const p = kmem_alloc(h.cpu, 3 * PAGE_SIZE);
  t.is(uvm_availmem(h.cpu), before - 4, '3 pages + header need 4 pages');
  kmem_free(h.cpu, p, 3 * PAGE_SIZE);
  t.is(uvm_availmem(h.cpu), before);
});

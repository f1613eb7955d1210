import test from 'ava';
import { KERNEL_IMAGE_PAGES, PAGE_SIZE, pfn_to_kva } from '../../arch/xen/include/vmparam.js';
import { uvm_page_physload, uvm_km_alloc, uvm_km_free, uvm_pagealloc, uvm_pagefree, uvm_stats } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { KernelPanic } from '../../sys/kern/subr_prf.js';
import { Harness, xorshift } from './harness.js';

const FIRST = KERNEL_IMAGE_PAGES;

test('physload makes one run; pages come out aligned, inside the range, distinct, until none is left', (t) => {
  const h = Harness.boot({ memPages: FIRST + 64 });
  t.deepEqual(uvm_stats(h.cpu), { npages: 64, free: 64, nruns: 1 });
  const seen = new Set<number>();
  for (let i = 0; i < 64; i++) {
    const va = uvm_pagealloc(h.cpu);
    t.is(va % PAGE_SIZE, 0);
    t.true(va >= pfn_to_kva(FIRST) && va < pfn_to_kva(FIRST + 64));
    seen.add(va);
  }
  t.is(seen.size, 64);
  t.is(uvm_pagealloc(h.cpu), 0, 'exhausted: 0, not an exception');
  t.deepEqual(uvm_stats(h.cpu), { npages: 64, free: 0, nruns: 0 });
});

test('freeing in any order merges the runs back into one', (t) => {
  const h = Harness.boot({ memPages: FIRST + 200 });
  const pages = Array.from({ length: 200 }, () => uvm_pagealloc(h.cpu));
  const rnd = xorshift(7);
  for (let i = pages.length - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    [pages[i], pages[j]] = [pages[j]!, pages[i]!];
  }
  for (const p of pages) uvm_pagefree(h.cpu, p);
  t.deepEqual(uvm_stats(h.cpu), { npages: 200, free: 200, nruns: 1 });
  t.is(uvm_km_alloc(h.cpu, 200 * PAGE_SIZE), pfn_to_kva(FIRST), 'all 200 pages are contiguous again');
});

test('multi-page allocations are contiguous; first fit skips runs that are too short', (t) => {
  const h = Harness.boot({ memPages: FIRST + 20, noPhysload: true });
  uvm_page_physload(h.cpu, FIRST, FIRST + 2);
  uvm_page_physload(h.cpu, FIRST + 10, FIRST + 20);
  t.is(uvm_stats(h.cpu).nruns, 2);
  const va = uvm_km_alloc(h.cpu, 3 * PAGE_SIZE);
  t.is(va, pfn_to_kva(FIRST + 17), 'taken from the end of the first run long enough');
  t.is(uvm_km_alloc(h.cpu, 8 * PAGE_SIZE), 0, 'the 7 pages left in that run and 2 in the other do not make 8');
  t.is(uvm_km_alloc(h.cpu, 2 * PAGE_SIZE), pfn_to_kva(FIRST), 'the short run fits a short request');
});

test('UVM_KMF_ZERO zeroes; the run header never leaks into an allocation', (t) => {
  const h = Harness.boot({ memPages: FIRST + 4 });
  const a = uvm_km_alloc(h.cpu, 4 * PAGE_SIZE);
  h.fake.mem.fill(a, 4 * PAGE_SIZE, 0x5a);
  uvm_km_free(h.cpu, a, 4 * PAGE_SIZE);
  const b = uvm_km_alloc(h.cpu, 4 * PAGE_SIZE, UVM_KMF_ZERO);
  t.true(h.fake.mem.readBytes(b, 4 * PAGE_SIZE).every((x) => x === 0));
  uvm_km_free(h.cpu, b, 4 * PAGE_SIZE);
  const c = uvm_km_alloc(h.cpu, 4 * PAGE_SIZE);
  t.true(h.fake.mem.readBytes(c, 24).every((x) => x === 0), 'the free-run header was cleared on the way out');
});

test('freeing a free page or a page uvm never managed panics', (t) => {
  const h = Harness.boot({ memPages: FIRST + 8 });
  const p = uvm_pagealloc(h.cpu);
  uvm_pagefree(h.cpu, p);
  t.throws(() => uvm_pagefree(h.cpu, p), { instanceOf: KernelPanic, message: /already free/ });
  const h2 = Harness.boot({ memPages: FIRST + 8 });
  t.throws(() => uvm_pagefree(h2.cpu, pfn_to_kva(1)), { instanceOf: KernelPanic, message: /not a managed page range/ });
});

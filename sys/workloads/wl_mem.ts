/*
 * The `mem` workload: fill memory with a seeded pattern, verify it in
 * passes, and keep rewriting some of it (what a live migration's pre-copy
 * rounds chase, and what a restore must bring back bit for bit).
 *
 *   mem_mb=N       MiB of pages to use (default 8)
 *   dirty_rate=R   pages rewritten per second of guest time (default 100; 0: none)
 *   mem_seed=S     the pattern's seed (default 1)
 *
 * Page i at generation g holds 1024 32-bit words of xorshift32 started
 * from a mix of (seed, i, g). The generation of every page is kept in
 * guest memory next to the list of pages, so the expected contents are a
 * function of guest memory alone: after a restore the verifier simply
 * carries on. A rewrite picks a page (a seeded xorshift in the state
 * block), bumps its generation and writes the new pattern; rewrites are
 * paced by guest time (rate x elapsed, at most MEM_DIRTY_MAX per tick).
 * A page that does not match is counted in `errors`, reported (the first
 * few), and repaired so that it is counted once.
 *
 * Counters: passes (full verifications), errors (bad pages), rewrites,
 * pages (pages in use). Phases, one tick apart: allocate (MEM_ALLOC_BATCH
 * pages a step), fill (MEM_FILL_BATCH), then verify MEM_VERIFY_BATCH pages
 * and do the rewrites due, every tick.
 *
 *   struct mem_wl {
 *       uint64_t mw_pages;      // uint64_t[npages]: page addresses (uvm_km_alloc)
 *       uint64_t mw_gens;       // uint32_t[npages]: generations
 *       uint32_t mw_npages;     // pages wanted, then pages in use
 *       uint32_t mw_phase;      // MW_*
 *       uint32_t mw_cursor;     // next page to allocate / fill / verify
 *       uint32_t mw_seed;
 *       uint32_t mw_rate;
 *       uint32_t mw_rng;        // picks pages to rewrite
 *       uint32_t mw_reported;   // errors printed
 *       uint32_t mw_pad;
 *       uint64_t mw_base_ns;    // guest time rewrites are counted from
 *       uint64_t mw_dirtied;    // rewrites done since then
 *       int32_t  mw_c[4];       // counter indices: passes, errors, rewrites, pages
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, i32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kpause, preempt } from '../kern/kern_synch.js';
import { printf } from '../kern/subr_prf.js';
import { uvm_km_alloc, uvm_pagealloc } from '../uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../uvm/uvm.js';
import { ptr_get, ptr_set } from '../lib/libkern/libkern.js';
import { PAGE_SIZE, kva_to_pfn } from '../../arch/xen/include/vmparam.js';
import { xen_global_systime_ns, NS_PER_SEC } from '../../arch/xen/xen/xen_clock.js';
import { xen_suspending, xen_suspend_park } from '../../arch/xen/xen/xen_suspend.js';
import {
  wl_from_init, wl_counter, wl_add, wl_set, wl_status, wl_fail, wl_param, wl_private, wl_private_alloc,
} from './workload.js';

export const MEM_ALLOC_BATCH = 4096;
export const MEM_FILL_BATCH = 256;
export const MEM_VERIFY_BATCH = 32;
export const MEM_DIRTY_MAX = 256;
const MEM_REPORT_MAX = 8;
const WORDS = PAGE_SIZE / 4;

const MW_ALLOC = 0;
const MW_FILL = 1;
const MW_RUN = 2;

const C_PASSES = 0;
const C_ERRORS = 1;
const C_REWRITES = 2;
const C_PAGES = 3;

export const mem_wl = struct('struct mem_wl', {
  mw_pages: u64,
  mw_gens: u64,
  mw_npages: u32,
  mw_phase: u32,
  mw_cursor: u32,
  mw_seed: u32,
  mw_rate: u32,
  mw_rng: u32,
  mw_reported: u32,
  mw_pad: u32,
  mw_base_ns: u64,
  mw_dirtied: u64,
  mw_c: array(i32, 4),
});

/** The expected contents of page `page` at generation `gen`. */
export function mem_pattern(seed: number, page: number, gen: number): Uint8Array {
  const out = new Uint8Array(PAGE_SIZE);
  const dv = new DataView(out.buffer);
  let x = (seed ^ Math.imul(page + 1, 0x9e3779b1) ^ Math.imul(gen + 1, 0x85ebca77)) >>> 0;
  if (x === 0) x = 0x6d2b79f5;
  for (let j = 0; j < WORDS; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    dv.setUint32(j * 4, x, true);
  }
  return out;
}

function mw_view(cpu: GuestCpu, wl: number) {
  return mem_wl.view(cpu.mem, wl_private(cpu, wl));
}

function mem_page_va(cpu: GuestCpu, wl: number, i: number): number {
  return ptr_get(cpu.mem, Number(mw_view(cpu, wl).get('mw_pages')) + i * 8);
}

function mem_gen(cpu: GuestCpu, wl: number, i: number): number {
  return cpu.mem.getUint32(Number(mw_view(cpu, wl).get('mw_gens')) + i * 4, true);
}

/** First step: parameters, counters, the page list. */
export function workload_mem(cpu: GuestCpu, wl: number, _error: number): void {
  if (wl_from_init(cpu, wl)) return;
  const p = wl_private_alloc(cpu, wl, mem_wl.size);
  if (p === 0) {
    wl_fail(cpu, wl, 'no memory for its state');
    return;
  }
  const v = mw_view(cpu, wl);
  const mb = wl_param(cpu, 'mem_mb', 8, 1, 65536);
  const npages = mb * (2 ** 20 / PAGE_SIZE);
  v.set('mw_npages', npages);
  v.set('mw_seed', wl_param(cpu, 'mem_seed', 1, 0, 0xffff_ffff) >>> 0);
  v.set('mw_rate', wl_param(cpu, 'dirty_rate', 100, 0, 1_000_000));
  v.set('mw_rng', (v.get('mw_seed') ^ 0x2545f491) >>> 0 || 1);
  for (const [i, name] of ['passes', 'errors', 'rewrites', 'pages'].entries()) v.setAt('mw_c', i, wl_counter(cpu, wl, name));
  const list = uvm_km_alloc(cpu, npages * 8, UVM_KMF_ZERO);
  const gens = uvm_km_alloc(cpu, npages * 4, UVM_KMF_ZERO);
  if (list === 0 || gens === 0) {
    wl_fail(cpu, wl, `no memory for the list of ${npages} pages`);
    return;
  }
  v.set('mw_pages', BigInt(list));
  v.set('mw_gens', BigInt(gens));
  v.set('mw_phase', MW_ALLOC);
  wl_status(cpu, wl, 'filling');
  preempt(cpu, 'mem_step');
}

/** One step of whatever phase we are in. */
export function mem_step(cpu: GuestCpu, wl: number, _error: number): void {
  if (xen_suspending(cpu)) {
    xen_suspend_park(cpu, 'mem_step');
    return;
  }
  const v = mw_view(cpu, wl);
  switch (v.get('mw_phase')) {
    case MW_ALLOC:
      mem_alloc(cpu, wl);
      return;
    case MW_FILL:
      mem_fill(cpu, wl);
      return;
    default:
      mem_run(cpu, wl);
  }
}

function mem_alloc(cpu: GuestCpu, wl: number): void {
  const v = mw_view(cpu, wl);
  const list = Number(v.get('mw_pages'));
  const n = v.get('mw_npages');
  let i = v.get('mw_cursor');
  let short = false;
  for (const end = Math.min(n, i + MEM_ALLOC_BATCH); i < end; i++) {
    const va = uvm_pagealloc(cpu);
    if (va === 0) {
      short = true;
      break;
    }
    ptr_set(cpu.mem, list + i * 8, va);
  }
  v.set('mw_cursor', i);
  if (!short && i < n) {
    preempt(cpu, 'mem_step');
    return;
  }
  if (short) {
    if (i === 0) {
      wl_fail(cpu, wl, 'no free pages');
      return;
    }
    printf(cpu, 'mem: only %u of %u pages free; using %u\n', i, n, i);
    v.set('mw_npages', i);
  }
  wl_set(cpu, wl, v.getAt('mw_c', C_PAGES), v.get('mw_npages'));
  v.set('mw_cursor', 0);
  v.set('mw_phase', MW_FILL);
  preempt(cpu, 'mem_step');
}

function mem_fill(cpu: GuestCpu, wl: number): void {
  const v = mw_view(cpu, wl);
  const n = v.get('mw_npages');
  const seed = v.get('mw_seed');
  let i = v.get('mw_cursor');
  for (const end = Math.min(n, i + MEM_FILL_BATCH); i < end; i++) cpu.mem.writeBytes(mem_page_va(cpu, wl, i), mem_pattern(seed, i, 0));
  v.set('mw_cursor', i % n);
  if (i < n) {
    preempt(cpu, 'mem_step');
    return;
  }
  printf(cpu, 'mem: %u pages (%u MiB) filled, page 0 at pfn %lu, seed %u, rewriting %u pages/s\n', n, Math.floor(n / 256),
    kva_to_pfn(mem_page_va(cpu, wl, 0)), seed, v.get('mw_rate'));
  v.set('mw_phase', MW_RUN);
  v.set('mw_base_ns', xen_global_systime_ns(cpu));
  v.set('mw_dirtied', 0n);
  wl_status(cpu, wl, 'running');
  kpause(cpu, 'mem', 1, 'mem_step');
}

/** Verify page i against its generation; count, report and repair a mismatch. */
export function mem_verify_page(cpu: GuestCpu, wl: number, i: number): boolean {
  const v = mw_view(cpu, wl);
  const va = mem_page_va(cpu, wl, i);
  const want = mem_pattern(v.get('mw_seed'), i, mem_gen(cpu, wl, i));
  const have = cpu.mem.readBytes(va, PAGE_SIZE);
  const w32 = new Uint32Array(want.buffer, want.byteOffset, WORDS);
  const h32 = new Uint32Array(have.buffer, have.byteOffset, WORDS);
  let bad = -1;
  for (let j = 0; j < WORDS; j++) {
    if (w32[j] !== h32[j]) {
      bad = j;
      break;
    }
  }
  if (bad < 0) return true;
  wl_add(cpu, wl, v.getAt('mw_c', C_ERRORS));
  const reported = v.get('mw_reported');
  if (reported < MEM_REPORT_MAX) {
    const dvw = new DataView(want.buffer);
    const dvh = new DataView(have.buffer, have.byteOffset);
    printf(cpu, 'mem: page %u (pfn %lu) generation %u: word %u is %08x, expected %08x\n', i, kva_to_pfn(va), mem_gen(cpu, wl, i), bad,
      dvh.getUint32(bad * 4, true), dvw.getUint32(bad * 4, true));
    v.set('mw_reported', reported + 1);
  }
  cpu.mem.writeBytes(va, want);
  return false;
}

/** Rewrite page i with its next generation. */
function mem_rewrite_page(cpu: GuestCpu, wl: number, i: number): void {
  const v = mw_view(cpu, wl);
  const at = Number(v.get('mw_gens')) + i * 4;
  const gen = (cpu.mem.getUint32(at, true) + 1) >>> 0;
  cpu.mem.setUint32(at, gen, true);
  cpu.mem.writeBytes(mem_page_va(cpu, wl, i), mem_pattern(v.get('mw_seed'), i, gen));
}

function mem_run(cpu: GuestCpu, wl: number): void {
  const v = mw_view(cpu, wl);
  const n = v.get('mw_npages');
  let i = v.get('mw_cursor');
  for (let k = 0; k < Math.min(MEM_VERIFY_BATCH, n); k++) {
    mem_verify_page(cpu, wl, i);
    i++;
    if (i === n) {
      i = 0;
      wl_add(cpu, wl, v.getAt('mw_c', C_PASSES));
    }
  }
  v.set('mw_cursor', i);
  const rate = v.get('mw_rate');
  if (rate > 0) {
    const elapsed = xen_global_systime_ns(cpu) - v.get('mw_base_ns');
    const due = (elapsed * BigInt(rate)) / NS_PER_SEC - v.get('mw_dirtied');
    const todo = due > BigInt(MEM_DIRTY_MAX) ? MEM_DIRTY_MAX : Number(due > 0n ? due : 0n);
    let x = v.get('mw_rng');
    for (let k = 0; k < todo; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      mem_rewrite_page(cpu, wl, x % n);
    }
    v.set('mw_rng', x);
    // Rewrites that did not fit in this tick are dropped, not owed: the rate is a ceiling.
    v.set('mw_dirtied', v.get('mw_dirtied') + (due > 0n ? due : 0n));
    wl_add(cpu, wl, v.getAt('mw_c', C_REWRITES), todo);
  }
  kpause(cpu, 'mem', 1, 'mem_step');
}

export const wl_mem_ksyms = ksymtab({
  mem_pattern, mw_view, mem_page_va, mem_gen, workload_mem, mem_step, mem_alloc, mem_fill, mem_verify_page,
  mem_rewrite_page, mem_run,
});

/*
 * The page allocator: whole pages of the direct map, from the free runs
 * described in sys/uvm/uvm.ts.
 *
 * The boot path hands over the pages nobody else uses with
 * uvm_page_physload() (everything after the image, start_info, the P2M
 * array and the bootstrap page tables). Drivers take pages for rings and
 * grant buffers with uvm_km_alloc(); kmem takes pages to carve.
 *
 * No page is touched until it is handed out, except a run's first page,
 * which holds the run's header: loading 512 MiB costs one header.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { PAGE_SIZE, pfn_to_kva } from '../../arch/xen/include/vmparam.js';
import { kglobals } from '../sys/kernel.js';
import { uvm_free_run, UVM_FREE_MAGIC, UVM_KMF_ZERO } from './uvm.js';
import { vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { panic } from '../kern/subr_prf.js';

function uvm_view(cpu: GuestCpu) {
  return kglobals(cpu).sub('kg_uvm');
}

function uvm_run_view(cpu: GuestCpu, va: number) {
  return uvm_free_run.view(cpu.mem, va);
}

/** Put [va, va + npages pages) on the free list, merging with neighbours. */
function uvm_free_insert(cpu: GuestCpu, va: number, npages: number): void {
  const u = uvm_view(cpu);
  let prev = 0;
  let cur = vptr(u, 'u_freelist');
  while (cur !== 0 && cur < va) {
    prev = cur;
    cur = vptr(uvm_run_view(cpu, cur), 'fr_next');
  }
  const end = va + npages * PAGE_SIZE;
  if (prev !== 0 && prev + vu64(uvm_run_view(cpu, prev), 'fr_npages') * PAGE_SIZE > va) {
    panic(cpu, 'uvm_km_free: page %p already free', va);
  }
  if (cur !== 0 && end > cur) panic(cpu, 'uvm_km_free: page %p already free', cur);

  let merged: number;
  if (prev !== 0 && prev + vu64(uvm_run_view(cpu, prev), 'fr_npages') * PAGE_SIZE === va) {
    const p = uvm_run_view(cpu, prev);
    vu64_set(p, 'fr_npages', vu64(p, 'fr_npages') + npages);
    merged = prev;
  } else {
    const r = uvm_run_view(cpu, va);
    r.set('fr_magic', UVM_FREE_MAGIC);
    r.set('fr_pad', 0);
    vu64_set(r, 'fr_npages', npages);
    vptr_set(r, 'fr_next', cur);
    if (prev === 0) vptr_set(u, 'u_freelist', va);
    else vptr_set(uvm_run_view(cpu, prev), 'fr_next', va);
    vu64_set(u, 'u_nruns', vu64(u, 'u_nruns') + 1);
    merged = va;
  }
  const m = uvm_run_view(cpu, merged);
  if (cur !== 0 && merged + vu64(m, 'fr_npages') * PAGE_SIZE === cur) {
    const c = uvm_run_view(cpu, cur);
    vu64_set(m, 'fr_npages', vu64(m, 'fr_npages') + vu64(c, 'fr_npages'));
    vptr_set(m, 'fr_next', vptr(c, 'fr_next'));
    cpu.mem.fill(cur, uvm_free_run.size, 0);
    vu64_set(u, 'u_nruns', vu64(u, 'u_nruns') - 1);
  }
  vu64_set(u, 'u_free', vu64(u, 'u_free') + npages);
}

/**
 * Give the pages [startPfn, endPfn) to the allocator. They must be mapped
 * in the direct map and used by nobody else.
 */
export function uvm_page_physload(cpu: GuestCpu, startPfn: number, endPfn: number): void {
  if (!(Number.isInteger(startPfn) && Number.isInteger(endPfn) && startPfn >= 0 && startPfn < endPfn)) {
    panic(cpu, 'uvm_page_physload: bad range %lu..%lu', startPfn, endPfn);
  }
  const u = uvm_view(cpu);
  const lo = pfn_to_kva(startPfn);
  const hi = pfn_to_kva(endPfn);
  if (vu64(u, 'u_npages') === 0 || lo < vu64(u, 'u_lowest')) vu64_set(u, 'u_lowest', lo);
  if (hi > vu64(u, 'u_highest')) vu64_set(u, 'u_highest', hi);
  vu64_set(u, 'u_npages', vu64(u, 'u_npages') + (endPfn - startPfn));
  uvm_free_insert(cpu, lo, endPfn - startPfn);
}

/**
 * Allocate `size` bytes of whole, contiguous, page-aligned pages. Returns
 * the kernel virtual address, or 0 when no run is long enough. Never sleeps.
 */
export function uvm_km_alloc(cpu: GuestCpu, size: number, flags = 0): number {
  const need = Math.ceil(size / PAGE_SIZE);
  if (!(need >= 1)) panic(cpu, 'uvm_km_alloc: size %lu', size);
  const u = uvm_view(cpu);
  let prev = 0;
  for (let cur = vptr(u, 'u_freelist'); cur !== 0; ) {
    const r = uvm_run_view(cpu, cur);
    if (r.get('fr_magic') !== UVM_FREE_MAGIC) panic(cpu, 'uvm_km_alloc: free list corrupt at %p', cur);
    const n = vu64(r, 'fr_npages');
    const next = vptr(r, 'fr_next');
    if (n >= need) {
      let va: number;
      if (n > need) {
        vu64_set(r, 'fr_npages', n - need);
        va = cur + (n - need) * PAGE_SIZE;
      } else {
        if (prev === 0) vptr_set(u, 'u_freelist', next);
        else vptr_set(uvm_run_view(cpu, prev), 'fr_next', next);
        vu64_set(u, 'u_nruns', vu64(u, 'u_nruns') - 1);
        cpu.mem.fill(cur, uvm_free_run.size, 0);
        va = cur;
      }
      vu64_set(u, 'u_free', vu64(u, 'u_free') - need);
      if (flags & UVM_KMF_ZERO) cpu.mem.fill(va, need * PAGE_SIZE, 0);
      return va;
    }
    prev = cur;
    cur = next;
  }
  return 0;
}

/** Return pages from uvm_km_alloc (same va, same size). */
export function uvm_km_free(cpu: GuestCpu, va: number, size: number): void {
  const n = Math.ceil(size / PAGE_SIZE);
  const u = uvm_view(cpu);
  if (!(n >= 1) || va % PAGE_SIZE !== 0 || va < vu64(u, 'u_lowest') || va + n * PAGE_SIZE > vu64(u, 'u_highest')) {
    panic(cpu, 'uvm_km_free: %p+%lu is not a managed page range', va, size);
  }
  uvm_free_insert(cpu, va, n);
}

/** One page, or 0. */
export function uvm_pagealloc(cpu: GuestCpu, flags = 0): number {
  return uvm_km_alloc(cpu, PAGE_SIZE, flags);
}

export function uvm_pagefree(cpu: GuestCpu, va: number): void {
  uvm_km_free(cpu, va, PAGE_SIZE);
}

/** Pages on the free list. */
export function uvm_availmem(cpu: GuestCpu): number {
  return vu64(uvm_view(cpu), 'u_free');
}

/** Counters for diagnostics and tests. */
export function uvm_stats(cpu: GuestCpu): { npages: number; free: number; nruns: number } {
  const u = uvm_view(cpu);
  return { npages: vu64(u, 'u_npages'), free: vu64(u, 'u_free'), nruns: vu64(u, 'u_nruns') };
}

export const uvm_page_ksyms = ksymtab({
  uvm_view, uvm_run_view, uvm_free_insert, uvm_page_physload, uvm_km_alloc, uvm_km_free, uvm_pagealloc, uvm_pagefree, uvm_availmem, uvm_stats,
});

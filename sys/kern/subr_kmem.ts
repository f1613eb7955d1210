/*
 * kmem(9): the kernel's general-purpose allocator, in guest memory.
 *
 * Requests up to KMEM_MAXCLASSED bytes come from power-of-two size classes
 * (block = 16-byte header + payload). A class with an empty free list takes
 * one page from uvm and carves it into blocks. Freed blocks go back on
 * their class's free list; pages are not given back to uvm (a pool keeps
 * its pages, as pool_cache does until the page daemon asks).
 * Bigger requests get whole pages from uvm, header first.
 *
 * kmem_free() takes the size, as in NetBSD, and checks it against the
 * header: a wrong size or a double free is a kernel bug and panics.
 * Nothing here sleeps: KM_SLEEP callers must be ready for 0 like KM_NOSLEEP
 * ones, since a continuation-style kernel cannot wait in the middle of a
 * call (a thread that wants to wait for memory sleeps and retries).
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { kglobals } from '../sys/kernel.js';
import {
  kmem_header, KMEM_HDRSIZE, KMEM_CLASS_SIZES, KMEM_NCLASSES, KMEM_MAXCLASSED,
  KMEM_MAGIC_ALLOC, KMEM_MAGIC_FREE, KMEM_MAGIC_LARGE,
} from '../sys/kmem.js';
import { ptr_get, ptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab } from './kern_ksyms.js';
import { panic } from './subr_prf.js';
import { uvm_km_alloc, uvm_km_free } from '../uvm/uvm_page.js';

/* NetBSD's flags; both behave as KM_NOSLEEP here (see above). */
export const KM_SLEEP = 0x01;
export const KM_NOSLEEP = 0x02;

const MAGIC = kmem_header.offsetOf('kh_magic');
const SIZE = kmem_header.offsetOf('kh_size');
const NEXT = kmem_header.offsetOf('kh_next');

/** Size class index for a request of `size` bytes (size <= KMEM_MAXCLASSED). */
function kmem_class(size: number): number {
  const block = size + KMEM_HDRSIZE;
  for (let i = 0; i < KMEM_NCLASSES; i++) if (block <= (KMEM_CLASS_SIZES[i] as number)) return i;
  return -1;
}

function kmem_state_view(cpu: GuestCpu) {
  return kglobals(cpu).sub('kg_kmem');
}

function kmem_freelist_addr(cpu: GuestCpu, c: number): number {
  return kmem_state_view(cpu).addr('ks_freelist') + 8 * c;
}

/** Carve one fresh page into blocks of class `c`; false when uvm has none. */
function kmem_class_grow(cpu: GuestCpu, c: number): boolean {
  const page = uvm_km_alloc(cpu, PAGE_SIZE);
  if (page === 0) return false;
  const bsize = KMEM_CLASS_SIZES[c] as number;
  const n = PAGE_SIZE / bsize;
  const head = kmem_freelist_addr(cpu, c);
  // Link in reverse so the lowest block is handed out first.
  let next = ptr_get(cpu.mem, head);
  for (let i = n - 1; i >= 0; i--) {
    const b = page + i * bsize;
    cpu.mem.setUint32(b + MAGIC, KMEM_MAGIC_FREE, true);
    cpu.mem.setUint32(b + SIZE, 0, true);
    ptr_set(cpu.mem, b + NEXT, next);
    next = b;
  }
  ptr_set(cpu.mem, head, next);
  const s = kmem_state_view(cpu);
  s.setAt('ks_nfree', c, s.getAt('ks_nfree', c) + n);
  s.setAt('ks_npages', c, s.getAt('ks_npages', c) + 1);
  return true;
}

function kmem_fail(cpu: GuestCpu): number {
  const s = kmem_state_view(cpu);
  vu64_set(s, 'ks_nfail', vu64(s, 'ks_nfail') + 1);
  return 0;
}

/**
 * Allocate `size` bytes (16-byte aligned, contents undefined). Returns the
 * address, or 0 when memory is exhausted.
 */
export function kmem_alloc(cpu: GuestCpu, size: number, _flags = KM_NOSLEEP): number {
  if (!(Number.isInteger(size) && size > 0 && size < 0x1_0000_0000)) panic(cpu, 'kmem_alloc: bad size %lu', size);
  const s = kmem_state_view(cpu);
  if (size > KMEM_MAXCLASSED) {
    const bytes = size + KMEM_HDRSIZE;
    const va = uvm_km_alloc(cpu, bytes);
    if (va === 0) return kmem_fail(cpu);
    cpu.mem.setUint32(va + MAGIC, KMEM_MAGIC_LARGE, true);
    cpu.mem.setUint32(va + SIZE, size, true);
    ptr_set(cpu.mem, va + NEXT, 0);
    s.set('ks_large_inuse', s.get('ks_large_inuse') + 1);
    s.set('ks_large_pages', s.get('ks_large_pages') + Math.ceil(bytes / PAGE_SIZE));
    vu64_set(s, 'ks_nalloc', vu64(s, 'ks_nalloc') + 1);
    return va + KMEM_HDRSIZE;
  }
  const c = kmem_class(size);
  const head = kmem_freelist_addr(cpu, c);
  if (ptr_get(cpu.mem, head) === 0 && !kmem_class_grow(cpu, c)) return kmem_fail(cpu);
  const b = ptr_get(cpu.mem, head);
  if (cpu.mem.getUint32(b + MAGIC, true) !== KMEM_MAGIC_FREE) panic(cpu, 'kmem_alloc: free list of class %d corrupt at %p', c, b);
  ptr_set(cpu.mem, head, ptr_get(cpu.mem, b + NEXT));
  cpu.mem.setUint32(b + MAGIC, KMEM_MAGIC_ALLOC, true);
  cpu.mem.setUint32(b + SIZE, size, true);
  ptr_set(cpu.mem, b + NEXT, 0);
  s.setAt('ks_nfree', c, s.getAt('ks_nfree', c) - 1);
  s.setAt('ks_inuse', c, s.getAt('ks_inuse', c) + 1);
  vu64_set(s, 'ks_nalloc', vu64(s, 'ks_nalloc') + 1);
  return b + KMEM_HDRSIZE;
}

/** kmem_alloc, zero-filled. */
export function kmem_zalloc(cpu: GuestCpu, size: number, flags = KM_NOSLEEP): number {
  const p = kmem_alloc(cpu, size, flags);
  if (p !== 0) cpu.mem.fill(p, size, 0);
  return p;
}

/** Free `p` from kmem_alloc; `size` must be the size it was allocated with. */
export function kmem_free(cpu: GuestCpu, p: number, size: number): void {
  if (p === 0 || p % 16 !== 0) panic(cpu, 'kmem_free: bad pointer %p', p);
  const b = p - KMEM_HDRSIZE;
  const magic = cpu.mem.getUint32(b + MAGIC, true);
  const hsize = cpu.mem.getUint32(b + SIZE, true);
  const s = kmem_state_view(cpu);
  if (magic === KMEM_MAGIC_LARGE) {
    if (hsize !== size) panic(cpu, 'kmem_free: %p allocated with size %lu, freed with %lu', p, hsize, size);
    const bytes = size + KMEM_HDRSIZE;
    cpu.mem.setUint32(b + MAGIC, 0, true);
    s.set('ks_large_inuse', s.get('ks_large_inuse') - 1);
    s.set('ks_large_pages', s.get('ks_large_pages') - Math.ceil(bytes / PAGE_SIZE));
    uvm_km_free(cpu, b, bytes);
    return;
  }
  if (magic === KMEM_MAGIC_FREE) panic(cpu, 'kmem_free: %p freed twice', p);
  if (magic !== KMEM_MAGIC_ALLOC) panic(cpu, 'kmem_free: %p was not allocated by kmem', p);
  if (hsize !== size) panic(cpu, 'kmem_free: %p allocated with size %lu, freed with %lu', p, hsize, size);
  const c = kmem_class(size);
  const head = kmem_freelist_addr(cpu, c);
  cpu.mem.setUint32(b + MAGIC, KMEM_MAGIC_FREE, true);
  cpu.mem.setUint32(b + SIZE, 0, true);
  ptr_set(cpu.mem, b + NEXT, ptr_get(cpu.mem, head));
  ptr_set(cpu.mem, head, b);
  s.setAt('ks_nfree', c, s.getAt('ks_nfree', c) + 1);
  s.setAt('ks_inuse', c, s.getAt('ks_inuse', c) - 1);
}

/** Copy a JS string into fresh kmem (NUL-terminated); free with kmem_strfree. */
export function kmem_strdupsize(cpu: GuestCpu, str: string): { va: number; size: number } {
  const size = str.length + 1;
  const va = kmem_alloc(cpu, size);
  if (va !== 0) {
    for (let i = 0; i < str.length; i++) cpu.mem.setUint8(va + i, str.charCodeAt(i) & 0xff);
    cpu.mem.setUint8(va + str.length, 0);
  }
  return { va, size };
}

export interface KmemStats {
  /** Blocks handed out, per class. */
  readonly inuse: readonly number[];
  /** Blocks on each class's free list. */
  readonly nfree: readonly number[];
  /** Pages carved into each class. */
  readonly npages: readonly number[];
  readonly largeInuse: number;
  readonly largePages: number;
  readonly nalloc: number;
  readonly nfail: number;
}

/** A snapshot of the allocator's counters (diagnostics, tests). */
export function kmem_stats(cpu: GuestCpu): KmemStats {
  const s = kmem_state_view(cpu);
  const per = (name: 'ks_inuse' | 'ks_nfree' | 'ks_npages'): number[] =>
    Array.from({ length: KMEM_NCLASSES }, (_, i) => s.getAt(name, i));
  return {
    inuse: per('ks_inuse'), nfree: per('ks_nfree'), npages: per('ks_npages'),
    largeInuse: s.get('ks_large_inuse'), largePages: s.get('ks_large_pages'),
    nalloc: vu64(s, 'ks_nalloc'), nfail: vu64(s, 'ks_nfail'),
  };
}

export const subr_kmem_ksyms = ksymtab({
  kmem_class, kmem_state_view, kmem_freelist_addr, kmem_class_grow, kmem_fail, kmem_alloc, kmem_zalloc, kmem_free, kmem_strdupsize, kmem_stats,
});

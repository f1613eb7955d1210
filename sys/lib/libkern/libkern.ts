/*
 * libkern: the little helpers every kernel file needs to touch guest memory.
 *
 * Pointers in guest memory are 64-bit canonical virtual addresses, exactly
 * as a C kernel would store them; kernel code handles them as 48-bit JS
 * numbers (hypervisor/public/types.ts). These helpers convert without
 * going through bigint, since they sit on every list walk.
 *
 * 64-bit counters (ticks, byte counts) are read as JS numbers: exact up to
 * 2^53, which no counter here reaches.
 */
import type { MemView } from '../../../hypervisor/public/layout.js';
import type { StructView, Fields } from '../../../hypervisor/public/layout.js';
import { canonicalVa, type Vaddr } from '../../../hypervisor/public/types.js';

const TWO32 = 0x1_0000_0000;
const VA_SIGN = 0x8000_0000_0000;

/** Load a pointer stored at `va` (canonical 64-bit) as a 48-bit address. */
export function ptr_get(mem: MemView, va: number): number {
  const lo = mem.getUint32(va, true);
  const hi = mem.getUint32(va + 4, true);
  return (hi & 0xffff) * TWO32 + lo;
}

/** Store a 48-bit address at `va`, sign-extended to its canonical form. */
export function ptr_set(mem: MemView, va: number, p: number): void {
  let hi = Math.floor(p / TWO32);
  if (p >= VA_SIGN) hi = (hi | 0xffff_0000) >>> 0;
  mem.setUint32(va, p >>> 0, true);
  mem.setUint32(va + 4, hi, true);
}

/**
 * A kernel address as a hypercall argument: the canonical 64-bit form, as
 * the register would hold it (the hypervisor refuses non-canonical pointers).
 */
export function hcall_ptr(va: number): bigint {
  return canonicalVa(va as Vaddr);
}

/** Load an unsigned 64-bit counter as a JS number. */
export function u64_get(mem: MemView, va: number): number {
  return mem.getUint32(va + 4, true) * TWO32 + mem.getUint32(va, true);
}

/** Store a non-negative JS integer (< 2^53) as an unsigned 64-bit value. */
export function u64_set(mem: MemView, va: number, v: number): void {
  mem.setUint32(va, v >>> 0, true);
  mem.setUint32(va + 4, Math.floor(v / TWO32) >>> 0, true);
}

/** Pointer member of a struct view. */
export function vptr<F extends Fields>(v: StructView<F>, name: keyof F & string): number {
  return ptr_get(v.mem, v.addr(name));
}
/** Set a pointer member of a struct view. */
export function vptr_set<F extends Fields>(v: StructView<F>, name: keyof F & string, p: number): void {
  ptr_set(v.mem, v.addr(name), p);
}
/** 64-bit counter member of a struct view, as a number. */
export function vu64<F extends Fields>(v: StructView<F>, name: keyof F & string): number {
  return u64_get(v.mem, v.addr(name));
}
/** Set a 64-bit counter member of a struct view. */
export function vu64_set<F extends Fields>(v: StructView<F>, name: keyof F & string, n: number): void {
  u64_set(v.mem, v.addr(name), n);
}

/** A NUL-terminated string at `va`, at most `max` bytes (Latin-1). */
export function kstr_get(mem: MemView, va: number, max: number): string {
  let s = '';
  for (let i = 0; i < max; i++) {
    const c = mem.getUint8(va + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

/**
 * strlcpy into guest memory: copy at most `size - 1` bytes and always
 * NUL-terminate. Returns the length of `s` (truncation when >= size).
 */
export function strlcpy(mem: MemView, va: number, s: string, size: number): number {
  if (size <= 0) return s.length;
  const n = Math.min(s.length, size - 1);
  for (let i = 0; i < n; i++) mem.setUint8(va + i, s.charCodeAt(i) & 0xff);
  mem.setUint8(va + n, 0);
  return s.length;
}

/** memset over a MemView that has no bulk fill. */
export function memset(mem: MemView & { fill?: (va: number, len: number, b: number) => void }, va: number, byte: number, len: number): void {
  if (mem.fill !== undefined) {
    mem.fill(va, len, byte);
    return;
  }
  for (let i = 0; i < len; i++) mem.setUint8(va + i, byte);
}

/** Round `n` up to a multiple of `a` (any positive integer). */
export function roundup(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Smallest power of two >= n (n >= 1). */
export function roundup2pow(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

// ---------------------------------------------------------------------------
// FNV-1a, 64-bit, over UTF-16 code units (low byte then high byte), done in
// two 32-bit halves so it needs neither bigint nor node:crypto.
//   offset basis 0xcbf29ce484222325, prime 0x100000001b3 = 2^40 + 0x1b3

export interface Fnv64 {
  hi: number;
  lo: number;
}

export function fnv64_init(): Fnv64 {
  return { hi: 0xcbf29ce4, lo: 0x84222325 };
}

function fnv64_byte(h: Fnv64, b: number): void {
  const lo = (h.lo ^ b) >>> 0;
  const loMul = lo * 0x1b3;
  const carry = Math.floor(loMul / TWO32);
  h.hi = (h.hi * 0x1b3 + carry + ((lo * 256) >>> 0)) >>> 0;
  h.lo = loMul >>> 0;
}

export function fnv64_update(h: Fnv64, s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    fnv64_byte(h, c & 0xff);
    fnv64_byte(h, c >>> 8);
  }
}

export function fnv64_hex(h: Fnv64): string {
  return h.hi.toString(16).padStart(8, '0') + h.lo.toString(16).padStart(8, '0');
}

/* Listed so the image's version hash covers this text (see kern_ksyms). */
export const libkern_ksyms = Object.freeze({
  ptr_get, ptr_set, hcall_ptr, u64_get, u64_set, vptr, vptr_set, vu64, vu64_set, kstr_get, strlcpy, memset,
  roundup, roundup2pow, fnv64_init, fnv64_byte, fnv64_update, fnv64_hex,
});

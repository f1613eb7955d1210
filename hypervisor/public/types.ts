/*
 * Branded scalar types: numbers that must never be mixed up.
 *
 * An MFN passed where a PFN is expected is the classic save/restore bug
 * (the whole point of canonicalization is that the two differ), so each
 * kind of number gets its own type. The brands cost nothing at run time;
 * the constructors are where a raw number becomes one of them.
 */

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Machine frame number: index of a 4 KiB frame of machine memory. */
export type Mfn = Brand<number, 'Mfn'>;
/** Pseudo-physical frame number: a domain's own view of its pages. */
export type Pfn = Brand<number, 'Pfn'>;
/** Domain id (`domid_t`, 16 bits). */
export type DomId = Brand<number, 'DomId'>;
/** Event channel port (`evtchn_port_t`). */
export type EvtchnPort = Brand<number, 'EvtchnPort'>;
/** Grant reference (`grant_ref_t`). */
export type GrantRef = Brand<number, 'GrantRef'>;
/** Shared ring index (`RING_IDX`): unsigned 32-bit, wraps. */
export type RingIdx = Brand<number, 'RingIdx'>;
/** Guest virtual address, kept as a 48-bit number (0 .. 2^48-1). */
export type Vaddr = Brand<number, 'Vaddr'>;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Frame numbers occupy bits 12..51 of a PTE: 40 bits. */
export const MAX_FRAME = 2 ** 40 - 1;

function checkUint(kind: string, n: number, max: number): number {
  if (!Number.isInteger(n) || n < 0 || n > max) throw new RangeError(`${kind} ${n} outside 0..${max}`);
  return n;
}

export const mfn = (n: number): Mfn => checkUint('mfn', n, MAX_FRAME) as Mfn;
export const pfn = (n: number): Pfn => checkUint('pfn', n, MAX_FRAME) as Pfn;
export const domid = (n: number): DomId => checkUint('domid', n, 0xffff) as DomId;
export const evtchnPort = (n: number): EvtchnPort => checkUint('evtchn port', n, 0xffffffff) as EvtchnPort;
export const grantRef = (n: number): GrantRef => checkUint('grant ref', n, 0xffffffff) as GrantRef;
/** Any number becomes a ring index modulo 2^32: ring arithmetic wraps. */
export const ringIdx = (n: number): RingIdx => (n >>> 0) as RingIdx;

/** Predicates for peer-supplied numbers: check before branding, never throw. */
export const isFrameNumber = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= MAX_FRAME;

// ---------------------------------------------------------------------------
// Virtual addresses

export const VA_BITS = 48;
const VA_LIMIT = 2 ** VA_BITS;
const CANONICAL_HIGH = 0xffff_0000_0000_0000n;

export function vaddr(n: number): Vaddr {
  return checkUint('vaddr', n, VA_LIMIT - 1) as Vaddr;
}

/**
 * The one sign-extension helper: a 48-bit VA as the canonical 64-bit value
 * stored in 64-bit fields (vCPU context, start_info). Bit 47 set means the
 * upper half of the address space, so bits 48..63 become ones.
 */
export function canonicalVa(va: Vaddr): bigint {
  const b = BigInt(va);
  return va >= 2 ** 47 ? b | CANONICAL_HIGH : b;
}

/** Inverse of canonicalVa: undefined for a non-canonical 64-bit value. */
export function vaFromCanonical(v: bigint): Vaddr | undefined {
  const u = BigInt.asUintN(64, v);
  const high = u >> 47n;
  if (high !== 0n && high !== 0x1ffffn) return undefined;
  return Number(u & 0xffff_ffff_ffffn) as Vaddr;
}

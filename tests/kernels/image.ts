/*
 * Building test kernel images: a name, a table of symbols (functions of
 * kernel text) and the facts a KernelImage carries. Symbols get addresses
 * in a text region that is never mapped (TypeScript is not fetched), in
 * declaration order, 16 bytes apart, like functions in a .text section.
 *
 * The version hash covers the image name and every symbol's name and
 * source text, so changing kernel text changes the hash (restore checks it).
 *
 * Test kernels follow the guest rule: no JS state survives an entry. What
 * they remember lives in guest memory (the mailbox page, see layout.ts) or
 * in registers.
 */
import { createHash } from 'node:crypto';
import type { KernelFn, KernelImage, KernelNotes } from '../../hypervisor/public/cpu.js';
import type { Vaddr } from '../../hypervisor/public/types.js';

/** Where test kernels' text lives: canonical 0xffff_ffff_8000_0000 as a 48-bit VA. */
export const TEXT_BASE = 0xffff_8000_0000 as Vaddr;
const SYMBOL_STRIDE = 16;

export interface KernelSpec {
  readonly name: string;
  /** Direct-map base of guest RAM (PFN p at virtBase + p * 4096). */
  readonly virtBase: Vaddr;
  /** Bytes of .data/.bss from virtBase (the mailbox page and friends). */
  readonly imageSize: number;
  /** Name of the entry symbol (default `start`). */
  readonly entry?: string;
  readonly symbols: Readonly<Record<string, KernelFn>>;
  readonly notes?: Partial<KernelNotes>;
  /** Distinct text base, so two images never share addresses (default TEXT_BASE). */
  readonly textBase?: number;
}

/** A kernel image plus its symbol addresses by name (for tests to point rip at). */
export interface TestKernel extends KernelImage {
  readonly addr: Readonly<Record<string, Vaddr>>;
}

export function defineKernel(spec: KernelSpec): TestKernel {
  const symbols = new Map<number, KernelFn>();
  const symbolNames = new Map<number, string>();
  const addr: Record<string, Vaddr> = {};
  const hash = createHash('sha256').update(spec.name);
  let at = spec.textBase ?? TEXT_BASE;
  for (const [name, fn] of Object.entries(spec.symbols)) {
    symbols.set(at, fn);
    symbolNames.set(at, name);
    addr[name] = at as Vaddr;
    hash.update(`\0${name}\0${fn.toString()}`);
    at += SYMBOL_STRIDE;
  }
  const entryName = spec.entry ?? 'start';
  const entry = addr[entryName];
  if (entry === undefined) throw new Error(`kernel ${spec.name}: no entry symbol ${entryName}`);
  return Object.freeze({
    name: spec.name,
    versionHash: hash.digest('hex'),
    entry,
    symbols,
    symbolNames,
    virtBase: spec.virtBase,
    imageSize: spec.imageSize,
    notes: Object.freeze({
      guestOs: spec.notes?.guestOs ?? 'xenport-test',
      xenVersion: spec.notes?.xenVersion ?? 'xen-3.0',
      features: spec.notes?.features ?? '',
      suspendCancel: spec.notes?.suspendCancel ?? true,
    }),
    addr: Object.freeze(addr),
  });
}

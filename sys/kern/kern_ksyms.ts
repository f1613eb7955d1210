/*
 * Kernel symbols: how kernel text gets addresses.
 *
 * Guest memory may never hold a JS reference, yet lwps, callouts, device
 * tables and `rip` must name functions. So every kernel function that can
 * be called indirectly (a continuation, a callout, a driver entry, an event
 * handler) is listed in a symbol table, and the image links the tables
 * into one text segment: symbol i, in link order, gets the address
 * KERNTEXT + KSYM_STRIDE * i. Memory stores the address; `kcall` turns it
 * back into the function.
 *
 * Each module exports one frozen table of its functions, keyed by name
 * (`ksymtab({ mi_switch, cpu_idle, ... })`): object keys survive bundlers
 * that rename functions, and listing a module's helpers too makes the
 * image's version hash cover them. The image assembly (arch/xen/conf)
 * concatenates the tables; nothing registers itself as a side effect.
 *
 * At run time kernel code finds the linked text through the `cpu` it was
 * given: the image's entry wrappers hand every kernel function a KernCpu,
 * a GuestCpu that also carries the (immutable) text. It is rebuilt on each
 * entry like any other view, and holds no state of its own.
 *
 * Calling convention: `kcall(cpu, sym, a1, a2, ...)` calls `fn(cpu, a1, a2,
 * ...)` with numbers (addresses, integers) and returns a number (a boolean
 * result becomes 1/0, no result 0). Pointers in arguments are kernel
 * virtual addresses; nothing else may cross a kcall, so a symbol behaves
 * the same whether it is called by the machine, by the scheduler, or from
 * a test.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import type { Vaddr } from '../../hypervisor/public/types.js';
import { KERNTEXT, KSYM_STRIDE } from '../../arch/xen/include/vmparam.js';
import { fnv64_init, fnv64_update, fnv64_hex } from '../lib/libkern/libkern.js';

/**
 * A function of kernel text. Those called through a symbol take the cpu
 * first and numbers after it (a continuation entered by the machine gets
 * the cpu only); tables may also list plain helpers so that the version
 * hash covers their text.
 */
export type KernFunc = (...args: never[]) => unknown;

/** A module's contribution to the kernel text: name -> function. */
export type KSymTab = Readonly<Record<string, KernFunc>>;

/** A symbol as kernel code names it: its address, or its name. */
export type KSym = number | string;

/** Freeze a module's symbol table. */
export function ksymtab<T extends Record<string, KernFunc>>(table: T): Readonly<T> {
  return Object.freeze({ ...table });
}

export interface KSymEntry {
  readonly name: string;
  readonly addr: Vaddr;
  readonly fn: KernFunc;
}

/** The linked kernel text: immutable once built. */
export class KernelText {
  /** Symbols in address order. */
  readonly entries: readonly KSymEntry[];
  private readonly byName: ReadonlyMap<string, KSymEntry>;
  private readonly byAddr: ReadonlyMap<number, KSymEntry>;

  constructor(tables: readonly KSymTab[]) {
    const entries: KSymEntry[] = [];
    const byName = new Map<string, KSymEntry>();
    const byAddr = new Map<number, KSymEntry>();
    for (const table of tables) {
      for (const [name, fn] of Object.entries(table)) {
        if (typeof fn !== 'function') throw new TypeError(`kernel symbol ${name} is not a function`);
        if (byName.has(name)) throw new Error(`kernel symbol ${name} is defined twice`);
        const e: KSymEntry = Object.freeze({ name, fn, addr: (KERNTEXT + KSYM_STRIDE * entries.length) as Vaddr });
        entries.push(e);
        byName.set(name, e);
        byAddr.set(e.addr, e);
      }
    }
    this.entries = Object.freeze(entries);
    this.byName = byName;
    this.byAddr = byAddr;
    Object.freeze(this);
  }

  addrOf(name: string): Vaddr | undefined {
    return this.byName.get(name)?.addr;
  }

  at(addr: number): KSymEntry | undefined {
    return this.byAddr.get(addr);
  }

  /**
   * FNV-1a 64 over every symbol's address, name and source text, in
   * address order, plus `extra` (the image's data layout facts). Any change
   * to a function's text, to the link order, or to the data layout changes
   * it; nothing else does.
   */
  versionHash(extra: string): string {
    const h = fnv64_init();
    fnv64_update(h, extra);
    for (const e of this.entries) {
      fnv64_update(h, `\n${e.addr.toString(16)} ${e.name}\n`);
      fnv64_update(h, e.fn.toString());
    }
    return fnv64_hex(h);
  }
}

/** The GuestCpu every kernel function receives: the vCPU plus the kernel text. */
export interface KernCpu extends GuestCpu {
  readonly ktext: KernelText;
}

/**
 * Wrap a GuestCpu for one entry into the kernel. Cheap, holds nothing but
 * references to the vCPU and the text; never stored anywhere.
 */
export function kernCpu(cpu: GuestCpu, text: KernelText): KernCpu {
  if ((cpu as Partial<KernCpu>).ktext === text) return cpu as KernCpu;
  return {
    vcpuId: cpu.vcpuId,
    regs: cpu.regs,
    mem: cpu.mem,
    hypercall: (nr, a1, a2, a3, a4, a5) => cpu.hypercall(nr, a1, a2, a3, a4, a5),
    rdtsc: () => cpu.rdtsc(),
    ktext: text,
  };
}

function ktextOf(cpu: GuestCpu): KernelText {
  const t = (cpu as Partial<KernCpu>).ktext;
  if (t === undefined) throw new Error('kernel function entered without kernel text (not through the image entry)');
  return t;
}

/** Address of a kernel symbol. An unknown name is a kernel bug. */
export function ksymaddr(cpu: GuestCpu, name: string): Vaddr {
  const a = ktextOf(cpu).addrOf(name);
  if (a === undefined) throw new Error(`no kernel symbol ${name}`);
  return a;
}

/** Name of the kernel symbol at `addr`, for messages. */
export function ksymname(cpu: GuestCpu, addr: number): string {
  return ktextOf(cpu).at(addr)?.name ?? `0x${addr.toString(16)}`;
}

/** Is `addr` the address of a kernel symbol? */
export function ksymvalid(cpu: GuestCpu, addr: number): boolean {
  return ktextOf(cpu).at(addr) !== undefined;
}

/** A symbol given by name or address, as an address (0 stays 0: "none"). */
export function ksymresolve(cpu: GuestCpu, sym: KSym): number {
  if (typeof sym === 'number') return sym;
  return sym === '' ? 0 : ksymaddr(cpu, sym);
}

/**
 * Call the kernel function at `sym` with numeric arguments; returns its
 * result as a number. Calling an address that is not a symbol is a kernel
 * bug (a wild function pointer): it throws, as a fault would.
 */
export function kcall(cpu: GuestCpu, sym: KSym, ...args: number[]): number {
  const addr = ksymresolve(cpu, sym);
  const e = ktextOf(cpu).at(addr);
  if (e === undefined) throw new Error(`kcall: no kernel function at 0x${addr.toString(16)}`);
  const r = (e.fn as (cpu: GuestCpu, ...a: number[]) => unknown)(cpu, ...args);
  if (typeof r === 'number') return r;
  if (typeof r === 'boolean') return r ? 1 : 0;
  return 0;
}

export const kern_ksyms_ksyms = ksymtab({
  ksymtab,
  kernCpu,
  ksymaddr,
  ksymname,
  ksymvalid,
  ksymresolve,
  kcall,
});

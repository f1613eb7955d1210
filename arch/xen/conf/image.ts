/*
 * Kernel image assembly: link symbol tables into kernel text and describe
 * the result the way a machine loads it (hypervisor/public/cpu.ts,
 * KernelImage).
 *
 *   export const netbsd = defineKernelImage({
 *     name: 'netbsd',
 *     symbols: [...MI_KSYMTABS, ...xen_ksymtabs, ...driver_ksymtabs],
 *     entry: 'start',
 *     notes: { guestOs: 'NetBSD', ... },
 *   });
 *
 * Every symbol the machine may enter (the entry, continuations left in
 * `rip`, the event and failsafe callbacks) is wrapped so that the kernel
 * function receives a KernCpu: the machine's GuestCpu plus this image's
 * text, which is how kernel code finds other symbols. The wrapper is the
 * only thing between the machine and kernel code, and keeps nothing.
 *
 * The version hash covers the text (every symbol's address, name and
 * source) and the data layout (virtBase, imageSize), so a saved image is
 * restored only into a kernel that would read its memory the same way.
 * Note that `fn.toString()` is the *compiled* JavaScript: the same sources
 * built by a different compiler or bundler hash differently, which is the
 * safe direction.
 */
import type { GuestCpu, KernelFn, KernelImage, KernelNotes } from '../../../hypervisor/public/cpu.js';
import type { Vaddr } from '../../../hypervisor/public/types.js';
import { KernelText, kernCpu, type KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { KERNBASE, KERNEL_IMAGE_SIZE, PAGE_SIZE } from '../include/vmparam.js';

export interface KernelImageSpec {
  readonly name: string;
  /** Symbol tables, in link order. */
  readonly symbols: readonly KSymTab[];
  /** Name of the entry symbol (`start`). */
  readonly entry: string;
  /** Base of the direct map; the data segment's address. Default KERNBASE. */
  readonly virtBase?: Vaddr;
  /** Bytes of data segment from virtBase. Default KERNEL_IMAGE_SIZE. */
  readonly imageSize?: number;
  readonly notes: KernelNotes;
}

/** A KernelImage that also exposes its linked text (for tests and tools). */
export interface LinkedKernelImage extends KernelImage {
  readonly text: KernelText;
}

export function defineKernelImage(spec: KernelImageSpec): LinkedKernelImage {
  const virtBase = spec.virtBase ?? KERNBASE;
  const imageSize = spec.imageSize ?? KERNEL_IMAGE_SIZE;
  if (imageSize <= 0 || imageSize % PAGE_SIZE !== 0) throw new RangeError(`imageSize ${imageSize} is not a positive number of pages`);
  if (virtBase % PAGE_SIZE !== 0) throw new RangeError(`virtBase ${virtBase.toString(16)} is not page-aligned`);
  const text = new KernelText(spec.symbols);
  const entry = text.addrOf(spec.entry);
  if (entry === undefined) throw new Error(`kernel image ${spec.name}: no entry symbol ${spec.entry}`);

  const symbols = new Map<number, KernelFn>();
  const symbolNames = new Map<number, string>();
  for (const e of text.entries) {
    const fn = e.fn as (cpu: GuestCpu) => unknown;
    symbols.set(e.addr, (cpu: GuestCpu): void => {
      fn(kernCpu(cpu, text));
    });
    symbolNames.set(e.addr, e.name);
  }
  const layout = `virtBase=${virtBase.toString(16)} imageSize=${imageSize.toString(16)}`;
  return Object.freeze({
    name: spec.name,
    versionHash: text.versionHash(layout),
    entry,
    symbols,
    symbolNames,
    virtBase,
    imageSize,
    notes: Object.freeze({ ...spec.notes }),
    text,
  });
}

/*
 * Taking a saved image apart and writing it back, for tests that need an
 * image which is well-formed but wrong in one precise way (a PTE naming a
 * hole, rdx naming the wrong page): the codec accepts it, the restore must
 * refuse it.
 */
import {
  PageType, parseImage, writeSaveImage,
  type ItemOfType, type PageInput, type StreamItem, type TscInfo, type VcpuInput, type XenportMeta,
} from '../../hypervisor/tools/stream/index.js';

export interface EditableImage {
  config: string;
  meta: XenportMeta;
  maxPfn: number;
  frames: bigint[];
  /** By pfn. */
  pages: Map<number, PageInput>;
  tscInfo: TscInfo;
  sharedInfo: Uint8Array;
  vcpus: VcpuInput[];
}

const only = <T extends StreamItem['type']>(items: StreamItem[], type: T): ItemOfType<T> => {
  const it = items.find((i) => i.type === type && i.layer !== 'libxl');
  if (it === undefined) throw new Error(`image has no ${type}`);
  return it as ItemOfType<T>;
};

export function takeApart(bytes: Uint8Array): EditableImage {
  const { items, error } = parseImage(bytes);
  if (error !== undefined) throw error;
  const xl = only(items, 'XL_HEADER');
  const p2m = only(items, 'X86_PV_P2M_FRAMES');
  const tsc = only(items, 'TSC_INFO');
  const pages = new Map<number, PageInput>();
  for (const it of items) {
    if (it.type !== 'PAGE_DATA' || it.layer !== 'libxc') continue;
    for (const p of it.pages) pages.set(p.pfn, p.data === undefined ? { pfn: p.pfn, type: p.type } : { pfn: p.pfn, type: p.type, data: p.data.slice() });
  }
  return {
    config: xl.config?.text ?? '',
    meta: xl.xenportMeta!,
    maxPfn: p2m.endPfn + 1,
    frames: [...p2m.frames],
    pages,
    tscInfo: { mode: tsc.mode, khz: tsc.khz, nsec: tsc.nsec, incarnation: tsc.incarnation },
    sharedInfo: only(items, 'SHARED_INFO').data.slice(),
    vcpus: items.filter((i): i is ItemOfType<'X86_PV_VCPU_BASIC'> => i.type === 'X86_PV_VCPU_BASIC').map((v) => ({ id: v.vcpuId, context: v.context.slice() })),
  };
}

export async function putTogether(img: EditableImage): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await writeSaveImage((c) => {
    chunks.push(c.slice());
  }, {
    config: img.config,
    xenportMeta: img.meta,
    p2m: { maxPfn: img.maxPfn, frames: img.frames },
    pages: [...img.pages.values()].sort((a, b) => a.pfn - b.pfn),
    tscInfo: img.tscInfo,
    sharedInfo: img.sharedInfo,
    vcpus: img.vcpus,
  });
  return new Uint8Array(Buffer.concat(chunks));
}

/** Pfns of pages saved as page tables of `level` (1..4), pinned or not. */
export function tablesOf(img: EditableImage, level: number): number[] {
  return [...img.pages.values()].filter((p) => p.type !== PageType.XTAB && (p.type & 7) === level && p.type < PageType.BROKEN).map((p) => p.pfn);
}

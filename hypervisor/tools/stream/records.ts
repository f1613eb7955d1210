/*
 * What the reader yields and what the writer takes: one typed value per
 * header or record, in stream order. `offset` is the byte offset of the
 * header or record in the stream (for the xl header, 0).
 */
import type { Pfn } from '../../public/types.js';
import type { PageType } from './constants.js';

// ---------------------------------------------------------------------------
// xenport metadata riding in the xl header (see xl-header.ts for the layout)

/** A xenstore node the restore recreates for the new domain. */
export interface XenstoreNode {
  /** Path relative to the domain's home (`/local/domain/<domid>/`), or absolute. */
  readonly path: string;
  readonly value: string;
}

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [k: string]: JsonValue };

export interface XenportMeta {
  /** The guest kernel image, loaded by name at restore (ARCHITECTURE §4). */
  readonly kernel: { readonly name: string; readonly versionHash: string };
  /** Xenstore nodes the stream has no record for but the guest needs. */
  readonly xenstore: readonly XenstoreNode[];
  /** Anything else the save/restore engine wants to carry (JSON only). */
  readonly extra?: { readonly [k: string]: JsonValue };
}

/** The domain configuration in the xl header's optional data. */
export interface XlConfig {
  /** `xl.cfg` text (mandatory flag JSON clear) or libxl JSON (flag set). */
  readonly format: 'xl.cfg' | 'json';
  readonly text: string;
}

// ---------------------------------------------------------------------------
// Items yielded by the reader

export interface XlHeaderItem {
  readonly layer: 'xl';
  readonly type: 'XL_HEADER';
  readonly offset: number;
  readonly mandatoryFlags: number;
  readonly optionalFlags: number;
  /** Absent when the header carries no optional data. */
  readonly config?: XlConfig;
  /** Absent when the optional data has no xenport tail (e.g. a file from real xl). */
  readonly xenportMeta?: XenportMeta;
}

export interface LibxlHeaderItem {
  readonly layer: 'libxl';
  readonly type: 'LIBXL_HEADER';
  readonly offset: number;
  readonly version: number;
  readonly options: number;
}

export type LibxlRecordItem =
  | { readonly layer: 'libxl'; readonly type: 'END' | 'LIBXC_CONTEXT' | 'CHECKPOINT_END'; readonly offset: number }
  | {
      readonly layer: 'libxl';
      readonly type: 'EMULATOR_XENSTORE_DATA' | 'EMULATOR_CONTEXT';
      readonly offset: number;
      readonly emulatorId: number;
      readonly index: number;
      readonly data: Uint8Array;
    }
  | { readonly layer: 'libxl'; readonly type: 'CHECKPOINT_STATE'; readonly offset: number; readonly id: number }
  | OptionalRecordItem<'libxl'>;

/** A record with bit 31 of its type set, skipped unread as the spec allows. */
export interface OptionalRecordItem<L extends 'libxl' | 'libxc'> {
  readonly layer: L;
  readonly type: 'OPTIONAL';
  readonly offset: number;
  readonly rawType: number;
  readonly length: number;
}

export interface ImageHeaderItem {
  readonly layer: 'libxc';
  readonly type: 'IMAGE_HEADER';
  readonly offset: number;
  readonly version: number;
  readonly options: number;
}

export interface DomainHeaderItem {
  readonly layer: 'libxc';
  readonly type: 'DOMAIN_HEADER';
  readonly offset: number;
  readonly domainType: number;
  readonly pageShift: number;
  readonly xenMajor: number;
  readonly xenMinor: number;
}

/** One pfn of a PAGE_DATA record: its type and, for types that carry it, 4096 bytes. */
export interface PageEntry {
  readonly pfn: Pfn;
  readonly type: PageType;
  readonly data?: Uint8Array;
}

export type VcpuRecordName = 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE' | 'X86_PV_VCPU_MSRS';

export interface TscInfo {
  /** TSC_MODE_* */
  readonly mode: number;
  readonly khz: number;
  /** Elapsed time in nanoseconds (u64). */
  readonly nsec: bigint;
  readonly incarnation: number;
}

export type LibxcRecordItem =
  | { readonly layer: 'libxc'; readonly type: 'END' | 'STATIC_DATA_END' | 'CHECKPOINT' | 'VERIFY'; readonly offset: number }
  | { readonly layer: 'libxc'; readonly type: 'PAGE_DATA'; readonly offset: number; readonly pages: readonly PageEntry[] }
  | {
      readonly layer: 'libxc';
      readonly type: 'X86_PV_INFO';
      readonly offset: number;
      readonly guestWidth: number;
      readonly ptLevels: number;
    }
  | {
      readonly layer: 'libxc';
      readonly type: 'X86_PV_P2M_FRAMES';
      readonly offset: number;
      /** First and last (inclusive) pfn whose P2M entries the frames hold. */
      readonly startPfn: number;
      readonly endPfn: number;
      /** PFNs of the frames holding the guest's P2M array (u64 each). */
      readonly frames: readonly bigint[];
    }
  | {
      readonly layer: 'libxc';
      readonly type: VcpuRecordName;
      readonly offset: number;
      readonly vcpuId: number;
      readonly context: Uint8Array;
    }
  | { readonly layer: 'libxc'; readonly type: 'SHARED_INFO'; readonly offset: number; readonly data: Uint8Array }
  | ({ readonly layer: 'libxc'; readonly type: 'TSC_INFO'; readonly offset: number } & TscInfo)
  | {
      readonly layer: 'libxc';
      readonly type: 'X86_CPUID_POLICY' | 'X86_MSR_POLICY';
      readonly offset: number;
      readonly data: Uint8Array;
    }
  | OptionalRecordItem<'libxc'>;

export type StreamItem =
  | XlHeaderItem
  | LibxlHeaderItem
  | LibxlRecordItem
  | ImageHeaderItem
  | DomainHeaderItem
  | LibxcRecordItem;

// ---------------------------------------------------------------------------
// What the writer takes

/** A page to save. `pfn` may be a branded Pfn or a plain number. */
export interface PageInput {
  readonly pfn: number;
  readonly type: PageType;
  /** Exactly 4096 bytes for NOTAB and page tables; absent for XTAB, XALLOC, BROKEN. */
  readonly data?: Uint8Array;
}

export interface VcpuInput {
  readonly id: number;
  /** A raw x86_64 vcpu_guest_context (5168 bytes), CR3 etc. already canonical. */
  readonly context: Uint8Array;
  /** Optional blobs; each is written only when non-empty, as Xen does. */
  readonly extended?: Uint8Array;
  readonly xsave?: Uint8Array;
  readonly msrs?: Uint8Array;
}

export interface P2mInput {
  /**
   * Number of PFNs (shared_info.arch.max_pfn): valid pfns are 0..maxPfn-1.
   * The record's p2m_end_pfn is maxPfn - 1, Xen's own (inclusive) max_pfn.
   */
  readonly maxPfn: number;
  /** PFNs of the P2M frames: ceil(maxPfn / 512) of them. */
  readonly frames: readonly (number | bigint)[];
}

/** The per-checkpoint tail of an x86 PV stream: TSC, shared info, vCPUs. */
export interface CheckpointTail {
  readonly tscInfo: TscInfo;
  /** The shared info page, 4096 bytes. */
  readonly sharedInfo: Uint8Array;
  readonly vcpus: readonly VcpuInput[];
}

type ItemWithType<I, T> = I extends { readonly type: infer U } ? (T extends U ? I : never) : never;
/** The item type(s) whose `type` can be T, e.g. ItemOfType<'X86_PV_VCPU_BASIC'>. */
export type ItemOfType<T extends StreamItem['type']> = ItemWithType<StreamItem, T>;

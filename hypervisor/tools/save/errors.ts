/*
 * What can go wrong while saving, restoring or waiting for a domain, and
 * where. A bad image read from a file or socket is a StreamError from the
 * codec (layer, record, offset); everything the codec cannot know (a page
 * table naming a PFN that was never sent, a kernel image of another
 * version, a guest whose P2M is not published) is one of these, each
 * naming the step that failed, what was wrong and where: the domain, the
 * PFN/MFN, the record and the stream offset.
 */
import { errnoName } from '../../public/errno.js';

export type SaveErrorCode =
  /** The domain does not exist. */
  | 'no-domain'
  /** The domain is not shut down with SHUTDOWN_suspend. */
  | 'not-suspended'
  /** No kernel image is bound to the domain (set_kernel never happened). */
  | 'no-kernel'
  /** shared_info.arch.max_pfn is 0 or absurd. */
  | 'bad-max-pfn'
  /** shared_info.arch.pfn_to_mfn_frame_list_list is 0: the guest never published its P2M (or forgot after a restore). */
  | 'p2m-unpublished'
  /** A frame of the 3-level P2M frame list is not a frame of the domain. */
  | 'p2m-frame-list'
  /** A P2M entry names a frame the domain does not own, or the M2P disagrees. */
  | 'p2m-entry'
  /** A page table maps something that cannot be saved (a foreign frame, a superpage). */
  | 'page-table'
  /** A vCPU context names a frame that is not a saved page (CR3, rdx, GDT). */
  | 'vcpu'
  /** A hypercall the save needs failed. */
  | 'hypercall'
  /** The sink failed (disk full, socket closed). */
  | 'io';

export type RestoreErrorCode =
  /** The image names a kernel this machine does not have, or one of another version. */
  | 'kernel'
  /** The image carries no xenport metadata (kernel name and hash). */
  | 'no-meta'
  /** A record this restore needs is missing or came twice where it may not. */
  | 'missing'
  /** A PFN (in a PTE, the P2M frames, a vCPU register, start_info) is beyond max_pfn. */
  | 'pfn-out-of-range'
  /** A PFN the image refers to was never sent with data. */
  | 'unpopulated'
  /** A page table breaks a rule of the saved-image format. */
  | 'page-table'
  /** Pinning a page table failed: the hypervisor refused to validate it. */
  | 'pin'
  /** start_info does not hold what a suspended guest leaves there. */
  | 'start-info'
  /** A vCPU record cannot be loaded. */
  | 'vcpu'
  /** The machine has not enough memory for the domain. */
  | 'memory'
  /** A hypercall the restore needs failed. */
  | 'hypercall'
  /** A valid image this restore does not handle (a P2M not starting at pfn 0, one that grows). */
  | 'unsupported';

/** Where in the image a restore problem lies. */
export interface ImageLocation {
  /** Record (or header) name: `PAGE_DATA`, `X86_PV_VCPU_BASIC`, `XL_HEADER`. */
  readonly record: string;
  /** Byte offset in the stream of the offending field, or of the record. */
  readonly offset: number;
}

export class SaveError extends Error {
  override readonly name = 'SaveError';
  constructor(
    readonly code: SaveErrorCode,
    readonly domid: number,
    readonly detail: string,
    /** The negative Xen errno a hypercall returned, if that was the cause. */
    readonly errno?: number,
  ) {
    super(`save of domain ${domid}: ${detail}${errno === undefined ? '' : ` (${errnoName(errno)})`}`);
  }
}

export class RestoreError extends Error implements ImageLocation {
  override readonly name = 'RestoreError';
  constructor(
    readonly code: RestoreErrorCode,
    readonly record: string,
    readonly offset: number,
    readonly detail: string,
    readonly errno?: number,
  ) {
    super(`restore: ${record} at offset ${offset} (0x${offset.toString(16)}): ${detail}${errno === undefined ? '' : ` (${errnoName(errno)})`}`);
  }
}

export type WaitErrorCode =
  /** The domain did not suspend within the time allowed (it keeps running). */
  | 'timeout'
  /** The domain shut down for another reason, or vanished. */
  | 'wrong-shutdown'
  | 'no-domain'
  /** VIRQ_DOM_EXC could not be bound (someone else holds it: pass their source). */
  | 'virq';

export class WaitError extends Error {
  override readonly name = 'WaitError';
  constructor(
    readonly code: WaitErrorCode,
    readonly domid: number,
    readonly detail: string,
  ) {
    super(`waiting for domain ${domid} to suspend: ${detail}`);
  }
}

/** A hypercall result that must not be negative, as a SaveError. */
export function checkSave(domid: number, rc: number, what: string): number {
  if (rc < 0) throw new SaveError('hypercall', domid, `${what} failed`, rc);
  return rc;
}

/** A frame number or address for a message; negative numbers are the INVALID entry (~0). */
export const hex = (n: number | bigint): string => (n < 0 ? '~0 (invalid)' : `0x${n.toString(16)}`);

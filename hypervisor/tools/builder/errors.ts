/*
 * What can go wrong while building a domain, and where.
 *
 * Every failure the builder reports names the step that failed (the way
 * libxc's xc_dom_* functions log "xc_dom_alloc_segment: ..." before they
 * give up), carries the Xen errno when a hypercall said no, and reads as
 * one line the user can act on.
 */
import { errnoName } from '../../public/errno.js';

export type BuildStep =
  | 'config' // the domain configuration itself
  | 'kernel' // no such kernel image
  | 'layout' // the image and the boot pages do not fit in `memory`
  | 'memory' // the machine has not enough free memory
  | 'createdomain'
  | 'max_mem'
  | 'populate'
  | 'p2m'
  | 'evtchn'
  | 'start_info'
  | 'pagetables'
  | 'pin'
  | 'gnttab'
  | 'set_kernel'
  | 'vcpu'
  | 'xenstore'
  | 'introduce'
  | 'console'
  | 'ctrl_if'
  | 'devices' // a disk or vif could not be added (tools/backend/devices.ts)
  | 'unpause';

export class BuildError extends Error {
  constructor(
    readonly step: BuildStep,
    message: string,
    /** The negative Xen errno a hypercall returned, if that was the cause. */
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'BuildError';
  }
}

/** A hypercall result that must not be negative; the BuildError says which step and which errno. */
export function check(step: BuildStep, rc: number, what: string): number {
  if (rc < 0) throw new BuildError(step, `${what} failed: ${errnoName(rc)}`, rc);
  return rc;
}

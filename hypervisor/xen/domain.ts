/*
 * A domain: the hypervisor's record of one guest (or of dom0, which is
 * host code), and the state machine Xen keeps for it.
 *
 * States, as the toolstack sees them (getdomaininfo):
 *   created   built, never unpaused (Xen creates domains paused)
 *   paused    the toolstack's pause count is non-zero
 *   running   some vCPU is runnable
 *   blocked   every online vCPU waits for an event
 *   shutdown  the guest shut down (reason in shutdownCode); it stays in
 *             memory, vCPUs stopped, until the toolstack destroys it or
 *             (SHUTDOWN_suspend) resumes it in place
 *   dying     being destroyed
 *
 * Lifecycle operations that touch other subsystems (shutdown, crash,
 * resume, destroy) live in the machine (machine.ts, lifecycle.ts); this
 * file is the record and its pure queries.
 */
import type { KernelImage } from '../public/cpu.js';
import type { ByteMem } from '../public/layout.js';
import type { DomainMemory } from './mm.js';
import type { SchedDomain } from './sched.js';
import type { Vcpu } from './vcpu.js';

/** Xen's SHUTDOWN_CODE_INVALID: no shutdown code latched. */
export const SHUTDOWN_CODE_INVALID = -1;

export type DomainState = 'created' | 'paused' | 'running' | 'blocked' | 'shutdown' | 'dying';

/** What the toolstack can ask for at creation (xen_domctl_createdomain). */
export interface DomainConfig {
  readonly maxVcpus?: number;
  /** xen_domain_handle_t: a UUID. */
  readonly handle?: Uint8Array;
  /** Highest event channel port + 1 (default: all of the 2-level ABI). */
  readonly maxEvtchnPorts?: number;
  readonly maxGrantFrames?: number;
  /** Initial max_mem in pages (default: all of machine memory). */
  readonly maxPages?: number;
}

/** Why a domain crashed, for the machine log and the on_crash hook. */
export interface CrashInfo {
  readonly reason: string;
  readonly stack?: string;
}

export class Domain implements SchedDomain {
  readonly vcpus: Vcpu[] = [];
  readonly handle = new Uint8Array(16);
  /** Toolstack pauses (controller_pause_count). Domains are born paused. */
  pauseCount = 1;
  /** Never unpaused yet. */
  created = true;
  /** SCHEDOP_shutdown (or a crash) happened: the vCPUs are stopped. */
  shuttingDown = false;
  shutdownCode = SHUTDOWN_CODE_INVALID;
  dying = false;
  /** shared_info: a machine frame owned by the domain (dom0: one too). */
  sharedInfoMfn = 0;
  sharedInfo!: ByteMem;
  /** The kernel image bound with set_kernel (dom0: none, it is host code). */
  kernel: KernelImage | null = null;
  /** XEN_DOMCTL_subscribe: the domain's port signalled when it suspends. */
  suspendEvtchn = 0;
  /**
   * start_info MFN the guest passed in rdx with SHUTDOWN_suspend (as Xen's
   * PV suspend hypercall does); the toolstack canonicalises it on save.
   */
  suspendStartInfoMfn: number | null = null;
  /** XEN_DOMCTL_settimeoffset, added to the wall clock the domain sees. */
  timeOffsetSeconds = 0;
  /** VMASST_TYPE_* bits enabled with vm_assist. */
  vmAssist = 0;
  /** Last crash, if any. */
  crash: CrashInfo | null = null;
  /**
   * on_crash behaviour: called (outside any guest entry) after the domain
   * crashed. The toolstack implements xl's on_crash here (destroy,
   * restart, preserve); without a hook the crashed domain is preserved.
   */
  onCrash: ((d: Domain) => void) | null = null;
  /** Number of times the domain was resumed in place (fast resume). */
  resumes = 0;

  constructor(
    readonly id: number,
    /** dom0 (host code): no kernel, no vCPU ever entered. */
    readonly isHost: boolean,
    readonly privileged: boolean,
    readonly mem: DomainMemory,
  ) {}

  canRun(): boolean {
    return !this.isHost && !this.dying && !this.shuttingDown && this.pauseCount === 0;
  }

  get online(): Vcpu[] {
    return this.vcpus.filter((v) => v.up);
  }

  get state(): DomainState {
    if (this.dying) return 'dying';
    if (this.shuttingDown) return 'shutdown';
    if (this.created && this.pauseCount > 0) return 'created';
    if (this.pauseCount > 0) return 'paused';
    const online = this.online;
    if (online.length > 0 && online.every((v) => v.blocked !== 'none')) return 'blocked';
    return 'running';
  }

  /** ns of CPU the domain used: the sum over its vCPUs. */
  get cpuTime(): number {
    let t = 0;
    for (const v of this.vcpus) t += v.cpuTimeNs;
    return t;
  }
}

/*
 * Event channels of the emulated hypervisor, 2-level ABI.
 *
 * A domain's ports live in a table that grows in buckets as ports are
 * allocated (port 0 is reserved at creation, as on Xen, so a port number
 * returned to a guest is never 0). Each port is free, unbound (waiting for
 * a named remote domain), interdomain (connected to a remote domain's port),
 * a VIRQ binding or an IPI binding; PIRQs are not emulated.
 *
 * Pending and mask bits are the guest-visible state and live where Xen keeps
 * them: `evtchn_pending[]` / `evtchn_mask[]` of the domain's shared_info page,
 * `evtchn_pending_sel` and `evtchn_upcall_pending` of the target vCPU's
 * vcpu_info. Raising a port follows the 2-level rules: set the pending bit;
 * if it was clear and the port is not masked, set the selector bit; if that
 * was clear, set upcall_pending; if that was clear, kick the vCPU. A port
 * that becomes pending wakes a vCPU polling on it (SCHEDOP_poll) whatever
 * its mask.
 *
 * Operations take the caller (domain, vCPU, privilege) and return a port or
 * a negative errno, never throw on guest input. The hypercall decoding is in
 * evtchn-hcall.ts; dom0, which is host code, calls these methods directly
 * and goes through exactly the same rules.
 */
import createDebug from 'debug';
import type { ByteMem } from '../public/layout.js';
import type { EvtchnPort } from '../public/types.js';
import {
  DOMID_SELF, NR_VIRQS, VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU, VIRQ_ARGO,
} from '../public/xen.js';
import {
  EVTCHN_2L_NR_CHANNELS, EVTCHNSTAT_closed, EVTCHNSTAT_unbound, EVTCHNSTAT_interdomain,
  EVTCHNSTAT_virq, EVTCHNSTAT_ipi,
} from '../public/event_channel.js';
import { EINVAL, ENOSPC, ESRCH, EPERM, EEXIST, ENOENT, EBUSY } from '../public/errno.js';
import {
  Raised, clearPending2l, drain2l, isMasked2l, isPending2l, setPending2l, sharedVcpuInfo, unmask2l,
  type VcpuInfoLoc,
} from './evtchn-2l.js';

const log = createDebug('xen:evtchn');

/** What the core provides to the event channel code. */
export interface EvtchnEnv {
  /** Number of vCPUs of a domain (valid vCPU ids are 0..n-1). */
  vcpuCount(domid: number): number;
  /**
   * The domain's shared_info page (a machine frame, or dom0's host-side
   * page). Asked once per domain and kept; undefined while there is none.
   */
  sharedInfo(domid: number): ByteMem | undefined;
  /**
   * Where a vCPU's vcpu_info lives when it is not shared_info.vcpu_info[v]
   * (VCPUOP_register_vcpu_info, or vCPUs past XEN_LEGACY_MAX_VCPUS).
   * Return undefined to use the default.
   */
  vcpuInfo?(domid: number, vcpu: number): VcpuInfoLoc | undefined;
  /** evtchn_upcall_pending was just set for this vCPU: wake it for the upcall. */
  kick(domid: number, vcpu: number): void;
  /** A vCPU blocked in SCHEDOP_poll on a port that became pending: wake it. */
  wakePoller(domid: number, vcpu: number): void;
}

/** Who makes a call: the fields of CallCtx the event code needs. */
export interface EvtchnCaller {
  readonly domid: number;
  readonly vcpuId: number;
  readonly privileged: boolean;
}

/** Per-port state (Xen's ECS_*). */
export const ChannelState = {
  Free: 0,
  Reserved: 1,
  Unbound: 2,
  Interdomain: 3,
  Virq: 4,
  Ipi: 5,
} as const;
export type ChannelState = (typeof ChannelState)[keyof typeof ChannelState];

/** Ports are created this many at a time, so "is this port valid" has Xen's shape. */
export const EVTCHNS_PER_BUCKET = 64;
/** SCHEDOP_poll refuses more ports than this (as Xen). */
export const MAX_POLL_PORTS = 128;

/** EVTCHNOP_status result. */
export interface EvtchnStatus {
  status: number;
  vcpu: number;
  /** unbound: the domain allowed to bind; interdomain: the remote domain. */
  dom?: number;
  /** interdomain: the remote port. */
  port?: EvtchnPort;
  /** virq: the VIRQ number. */
  virq?: number;
}

/** One port as the toolstack sees it (xl debug, tests). */
export interface ChannelInfo extends EvtchnStatus {
  readonly localPort: EvtchnPort;
  readonly pending: boolean;
  readonly masked: boolean;
}

interface Channel {
  state: ChannelState;
  notifyVcpu: number;
  /** Unbound: domain allowed to bind. Interdomain: remote domain. */
  remoteDom: number;
  /** Interdomain: remote port. */
  remotePort: number;
  /** Virq: the VIRQ. */
  virq: number;
}

class DomainEvents {
  readonly buckets: Channel[][] = [];
  validPorts = 0;
  dying = false;
  shinfo: ByteMem | undefined;
  /** vCPU -> (VIRQ -> port, 0 when unbound). */
  readonly virqPorts = new Map<number, Uint32Array>();
  /** vCPUs blocked in SCHEDOP_poll and the ports each waits for. */
  readonly pollers = new Map<number, ReadonlySet<number>>();

  constructor(readonly domid: number, readonly maxPorts: number) {}

  chan(port: number): Channel | undefined {
    if (!(Number.isInteger(port) && port >= 0 && port < this.validPorts)) return undefined;
    return this.buckets[Math.floor(port / EVTCHNS_PER_BUCKET)]![port % EVTCHNS_PER_BUCKET];
  }

  virqTable(vcpu: number): Uint32Array {
    let t = this.virqPorts.get(vcpu);
    if (t === undefined) {
      t = new Uint32Array(NR_VIRQS);
      this.virqPorts.set(vcpu, t);
    }
    return t;
  }
}

/** VIRQs bound per vCPU (Xen's VIRQ_VCPU type); the others are global to the domain. */
export function virqIsPerVcpu(virq: number): boolean {
  return virq === VIRQ_TIMER || virq === VIRQ_DEBUG || virq === VIRQ_XENOPROF || virq === VIRQ_XENPMU;
}
/** Global VIRQs are raised by Xen in one handler domain (dom0 unless set otherwise). */
export function virqIsGlobal(virq: number): boolean {
  return !virqIsPerVcpu(virq) && virq !== VIRQ_ARGO;
}

export interface EvtchnDomainOptions {
  /** Highest port + 1 (Xen's max_evtchn_port + 1); at most 4096 for the 2-level ABI. */
  maxPorts?: number;
}

export class EventChannels {
  private readonly doms = new Map<number, DomainEvents>();
  private readonly globalVirqHandler = new Map<number, number>();

  /** @param hardwareDomain receives global VIRQs nobody else was set to handle. */
  constructor(private readonly env: EvtchnEnv, private readonly hardwareDomain = 0) {}

  // --- domain lifecycle ----------------------------------------------------

  /** Create a domain's port table (at domain creation). Port 0 is reserved. */
  initDomain(domid: number, opts: EvtchnDomainOptions = {}): number {
    if (this.doms.has(domid)) return -EEXIST;
    const maxPorts = opts.maxPorts ?? EVTCHN_2L_NR_CHANNELS;
    if (!(Number.isInteger(maxPorts) && maxPorts >= 1 && maxPorts <= EVTCHN_2L_NR_CHANNELS)) return -EINVAL;
    const d = new DomainEvents(domid, maxPorts);
    this.doms.set(domid, d);
    const p0 = this.getFreePort(d);
    d.chan(p0)!.state = ChannelState.Reserved;
    return 0;
  }

  hasDomain(domid: number): boolean {
    return this.doms.has(domid);
  }

  /**
   * Domain destruction (and the guts of EVTCHNOP_reset): close every port.
   * Interdomain peers are left unbound to this domain, as Xen does, so a
   * backend sees its frontend go away as an unbound port.
   */
  closeAll(domid: number): void {
    const d = this.doms.get(domid);
    if (d === undefined) return;
    d.dying = true;
    for (let port = 0; port < d.validPorts; port++) this.closePort(d, port);
    d.pollers.clear();
    this.doms.delete(domid);
    for (const [virq, h] of this.globalVirqHandler) if (h === domid) this.globalVirqHandler.delete(virq);
  }

  // --- the EVTCHNOP_* operations -------------------------------------------

  /** EVTCHNOP_alloc_unbound: a port of `dom` that only `remoteDom` may bind. */
  allocUnbound(caller: EvtchnCaller, dom: number, remoteDom: number): number {
    const d = this.lookupAny(caller, dom);
    if (d === undefined) return -ESRCH;
    const port = this.getFreePort(d);
    if (port < 0) return port;
    if (!this.mayTarget(caller, d)) return -EPERM;
    const chn = d.chan(port)!;
    chn.state = ChannelState.Unbound;
    chn.remoteDom = remoteDom === DOMID_SELF ? caller.domid : remoteDom;
    log.enabled && log('d%d alloc_unbound port %d for d%d', d.domid, port, chn.remoteDom);
    return port;
  }

  /**
   * EVTCHNOP_bind_interdomain: connect a new local port to `remotePort` of
   * `remoteDom`, which must be unbound and offered to the caller's domain
   * (else -EINVAL, as Xen). The new local port is left pending, since
   * notifications sent to the unbound remote end were dropped.
   */
  bindInterdomain(caller: EvtchnCaller, remoteDom: number, remotePort: number): number {
    const rdom = remoteDom === DOMID_SELF ? caller.domid : remoteDom;
    const rd = this.doms.get(rdom);
    const ld = this.doms.get(caller.domid);
    if (rd === undefined || ld === undefined) return -ESRCH;
    const lport = this.getFreePort(ld);
    if (lport < 0) return lport;
    const rchn = rd.chan(remotePort);
    if (rchn === undefined) return -EINVAL;
    if (rchn.state !== ChannelState.Unbound || rchn.remoteDom !== ld.domid) return -EINVAL;
    const lchn = ld.chan(lport)!;
    lchn.state = ChannelState.Interdomain;
    lchn.remoteDom = rd.domid;
    lchn.remotePort = remotePort;
    rchn.state = ChannelState.Interdomain;
    rchn.remoteDom = ld.domid;
    rchn.remotePort = lport;
    log.enabled && log('d%d port %d <-> d%d port %d', ld.domid, lport, rd.domid, remotePort);
    this.setPending(ld, lchn.notifyVcpu, lport);
    return lport;
  }

  /**
   * EVTCHNOP_bind_virq. Per-vCPU VIRQs (TIMER, DEBUG) bind on any vCPU; global
   * ones only on vCPU 0 (-EINVAL) and only by the domain that handles them
   * (-EBUSY: dom0 unless setGlobalVirqHandler said otherwise, as newer Xen
   * enforces; Xen 4.17 accepted a binding that could never fire). One port
   * per VIRQ per vCPU (-EEXIST).
   */
  bindVirq(caller: EvtchnCaller, virq: number, vcpu: number): number {
    if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS)) return -EINVAL;
    if (!virqIsPerVcpu(virq) && vcpu !== 0) return -EINVAL;
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    if (!this.vcpuExists(d, vcpu)) return -ENOENT;
    if (virqIsGlobal(virq) && this.virqHandler(virq) !== d.domid) return -EBUSY;
    const table = d.virqTable(vcpu);
    if (table[virq] !== 0) return -EEXIST;
    const port = this.getFreePort(d);
    if (port < 0) return port;
    const chn = d.chan(port)!;
    chn.state = ChannelState.Virq;
    chn.notifyVcpu = vcpu;
    chn.virq = virq;
    table[virq] = port;
    log.enabled && log('d%d virq %d vcpu %d -> port %d', d.domid, virq, vcpu, port);
    return port;
  }

  /** EVTCHNOP_bind_ipi: a port that notifies `vcpu` of the caller's own domain. */
  bindIpi(caller: EvtchnCaller, vcpu: number): number {
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    if (!this.vcpuExists(d, vcpu)) return -ENOENT;
    const port = this.getFreePort(d);
    if (port < 0) return port;
    const chn = d.chan(port)!;
    chn.state = ChannelState.Ipi;
    chn.notifyVcpu = vcpu;
    return port;
  }

  /** EVTCHNOP_close. */
  close(caller: EvtchnCaller, port: number): number {
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    return this.closePort(d, port);
  }

  /**
   * EVTCHNOP_send on the caller's own port: interdomain raises the remote
   * end, IPI raises the port itself, unbound silently drops the event;
   * anything else (free, VIRQ, not allocated) is -EINVAL, as Xen.
   */
  send(caller: EvtchnCaller, port: number): number {
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    const chn = d.chan(port);
    if (chn === undefined) return -EINVAL;
    switch (chn.state) {
      case ChannelState.Interdomain: {
        const rd = this.doms.get(chn.remoteDom)!;
        this.setPending(rd, rd.chan(chn.remotePort)!.notifyVcpu, chn.remotePort);
        return 0;
      }
      case ChannelState.Ipi:
        this.setPending(d, chn.notifyVcpu, port);
        return 0;
      case ChannelState.Unbound:
        return 0;
      default:
        return -EINVAL;
    }
  }

  /** EVTCHNOP_status: of the caller's own ports, or (privileged) any domain's. */
  status(caller: EvtchnCaller, dom: number, port: number): EvtchnStatus | number {
    const d = this.lookupAny(caller, dom);
    if (d === undefined) return -ESRCH;
    const chn = d.chan(port);
    if (chn === undefined) return -EINVAL;
    if (!this.mayTarget(caller, d)) return -EPERM;
    return describe(chn);
  }

  /** EVTCHNOP_bind_vcpu: notify another vCPU (global VIRQs, unbound, interdomain). */
  bindVcpu(caller: EvtchnCaller, port: number, vcpu: number): number {
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    if (!this.vcpuExists(d, vcpu)) return -ENOENT;
    const chn = d.chan(port);
    if (chn === undefined) return -EINVAL;
    switch (chn.state) {
      case ChannelState.Virq:
        if (virqIsPerVcpu(chn.virq)) return -EINVAL;
        chn.notifyVcpu = vcpu;
        return 0;
      case ChannelState.Unbound:
      case ChannelState.Interdomain:
        chn.notifyVcpu = vcpu;
        return 0;
      default:
        return -EINVAL;
    }
  }

  /**
   * EVTCHNOP_unmask: clear the mask bit; if the port is pending, deliver it
   * now (selector bit, upcall_pending, kick) as if it had just been raised.
   */
  unmask(caller: EvtchnCaller, port: number): number {
    const d = this.doms.get(caller.domid);
    if (d === undefined) return -ESRCH;
    const chn = d.chan(port);
    if (chn === undefined) return -EINVAL;
    const sh = this.shinfo(d);
    if (sh !== undefined && unmask2l(sh, this.vcpuInfoOf(d, chn.notifyVcpu), port)) this.env.kick(d.domid, chn.notifyVcpu);
    return 0;
  }

  /** EVTCHNOP_reset: close every port of `dom` (self, or any domain if privileged). */
  reset(caller: EvtchnCaller, dom: number): number {
    const d = this.lookupAny(caller, dom);
    if (d === undefined) return -ESRCH;
    if (!this.mayTarget(caller, d)) return -EPERM;
    for (let port = 0; port < d.validPorts; port++) this.closePort(d, port);
    return 0;
  }

  // --- host API -------------------------------------------------------------

  /**
   * Raise a VIRQ in a domain: per-vCPU VIRQs on `vcpu`, global ones through
   * vCPU 0's binding to whichever vCPU that port notifies. False when the
   * domain has not bound it (the event is simply lost, as on Xen).
   */
  sendVirq(domid: number, virq: number, vcpu = 0): boolean {
    if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS)) return false;
    const d = this.doms.get(domid);
    if (d === undefined) return false;
    const perVcpu = virqIsPerVcpu(virq);
    const port = d.virqPorts.get(perVcpu ? vcpu : 0)?.[virq] ?? 0;
    if (port === 0) return false;
    this.setPending(d, perVcpu ? vcpu : d.chan(port)!.notifyVcpu, port);
    return true;
  }

  /** Raise a global VIRQ (VIRQ_DOM_EXC, VIRQ_CONSOLE) in its handler domain. */
  sendGlobalVirq(virq: number): boolean {
    if (!virqIsGlobal(virq)) return false;
    return this.sendVirq(this.virqHandler(virq), virq);
  }

  /** XEN_DOMCTL_set_virq_handler: who receives a global VIRQ. */
  setGlobalVirqHandler(virq: number, domid: number): number {
    if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS) || !virqIsGlobal(virq)) return -EINVAL;
    if (!this.doms.has(domid)) return -ESRCH;
    this.globalVirqHandler.set(virq, domid);
    return 0;
  }

  /**
   * Raise one of a domain's own ports from inside the hypervisor, to the vCPU
   * it notifies (for sources that are not a peer port, e.g. a Xen-side
   * consumer). Peers, dom0 included, use send().
   */
  notifyPort(domid: number, port: number): number {
    const d = this.doms.get(domid);
    if (d === undefined) return -ESRCH;
    const chn = d.chan(port);
    if (chn === undefined || chn.state === ChannelState.Free || chn.state === ChannelState.Reserved) return -EINVAL;
    this.setPending(d, chn.notifyVcpu, port);
    return 0;
  }

  isPending(domid: number, port: number): boolean {
    const d = this.doms.get(domid);
    const sh = d === undefined ? undefined : this.shinfo(d);
    return sh !== undefined && d!.chan(port) !== undefined && isPending2l(sh, port);
  }

  isMasked(domid: number, port: number): boolean {
    const d = this.doms.get(domid);
    const sh = d === undefined ? undefined : this.shinfo(d);
    return sh !== undefined && d!.chan(port) !== undefined && isMasked2l(sh, port);
  }

  /**
   * SCHEDOP_poll, the event half: 1 when one of `ports` is already pending
   * (do not block), 0 when the vCPU is now registered as polling them (block
   * it; a send to one of them calls env.wakePoller), or -errno.
   */
  poll(domid: number, vcpu: number, ports: readonly number[]): number {
    const d = this.doms.get(domid);
    if (d === undefined) return -ESRCH;
    if (ports.length > MAX_POLL_PORTS) return -EINVAL;
    for (const p of ports) if (!(Number.isInteger(p) && p >= 0 && p < d.maxPorts)) return -EINVAL;
    const sh = this.shinfo(d);
    for (const p of ports) if (sh !== undefined && d.chan(p) !== undefined && isPending2l(sh, p)) return 1;
    d.pollers.set(vcpu, new Set(ports));
    return 0;
  }

  /** Stop polling (timeout, or the vCPU woke for another reason). True if it was polling. */
  pollCancel(domid: number, vcpu: number): boolean {
    return this.doms.get(domid)?.pollers.delete(vcpu) ?? false;
  }

  isPolling(domid: number, vcpu: number): boolean {
    return this.doms.get(domid)?.pollers.has(vcpu) ?? false;
  }

  /**
   * The guest's upcall, done host-side (dom0 is host code): clear
   * upcall_pending, take the selector, and collect and clear every pending,
   * unmasked port of those words. Masked pending ports stay pending.
   */
  drainPending(domid: number, vcpu: number): EvtchnPort[] {
    const d = this.doms.get(domid);
    const sh = d === undefined ? undefined : this.shinfo(d);
    const vi = d === undefined ? undefined : this.vcpuInfoOf(d, vcpu);
    if (sh === undefined || vi === undefined) return [];
    return drain2l(sh, vi, d!.maxPorts) as EvtchnPort[];
  }

  /** Every port that is not free, for the toolstack and tests. */
  channels(domid: number): ChannelInfo[] {
    const d = this.doms.get(domid);
    if (d === undefined) return [];
    const sh = this.shinfo(d);
    const out: ChannelInfo[] = [];
    for (let port = 1; port < d.validPorts; port++) {
      const chn = d.chan(port)!;
      if (chn.state === ChannelState.Free) continue;
      out.push({
        ...describe(chn),
        localPort: port as EvtchnPort,
        pending: sh !== undefined && isPending2l(sh, port),
        masked: sh !== undefined && isMasked2l(sh, port),
      });
    }
    return out;
  }

  // --- internals --------------------------------------------------------------

  private lookupAny(caller: EvtchnCaller, dom: number): DomainEvents | undefined {
    return this.doms.get(dom === DOMID_SELF ? caller.domid : dom);
  }

  /** Xen's XSM_TARGET default: a domain itself, or a privileged one. */
  private mayTarget(caller: EvtchnCaller, d: DomainEvents): boolean {
    return caller.domid === d.domid || caller.privileged;
  }

  private vcpuExists(d: DomainEvents, vcpu: number): boolean {
    return Number.isInteger(vcpu) && vcpu >= 0 && vcpu < this.env.vcpuCount(d.domid);
  }

  private virqHandler(virq: number): number {
    return this.globalVirqHandler.get(virq) ?? this.hardwareDomain;
  }

  /** Lowest free port, adding a bucket when all valid ones are taken. */
  private getFreePort(d: DomainEvents): number {
    if (d.dying) return -EINVAL;
    for (let port = 0; port < d.validPorts; port++) {
      if (port >= d.maxPorts) return -ENOSPC;
      if (d.chan(port)!.state === ChannelState.Free) return port;
    }
    const port = d.validPorts;
    if (port >= d.maxPorts) return -ENOSPC;
    const bucket: Channel[] = [];
    for (let i = 0; i < EVTCHNS_PER_BUCKET; i++) {
      bucket.push({ state: ChannelState.Free, notifyVcpu: 0, remoteDom: 0, remotePort: 0, virq: 0 });
    }
    d.buckets.push(bucket);
    d.validPorts += EVTCHNS_PER_BUCKET;
    return port;
  }

  private closePort(d: DomainEvents, port: number): number {
    const chn = d.chan(port);
    if (chn === undefined) return -EINVAL;
    switch (chn.state) {
      case ChannelState.Free:
      case ChannelState.Reserved:
        return -EINVAL;
      case ChannelState.Unbound:
      case ChannelState.Ipi:
        break;
      case ChannelState.Virq:
        for (const table of d.virqPorts.values()) if (table[chn.virq] === port) table[chn.virq] = 0;
        break;
      case ChannelState.Interdomain: {
        const rchn = this.doms.get(chn.remoteDom)?.chan(chn.remotePort);
        if (rchn === undefined || rchn.state !== ChannelState.Interdomain
            || rchn.remoteDom !== d.domid || rchn.remotePort !== port) {
          throw new Error(`evtchn: d${d.domid} port ${port} peer d${chn.remoteDom}:${chn.remotePort} is not connected back`);
        }
        rchn.state = ChannelState.Unbound;
        rchn.remoteDom = d.domid;
        break;
      }
    }
    // A port re-bound later must not inherit a stale event.
    const sh = this.shinfo(d);
    if (sh !== undefined) clearPending2l(sh, port);
    chn.state = ChannelState.Free;
    chn.notifyVcpu = 0;
    log.enabled && log('d%d close port %d', d.domid, port);
    return 0;
  }

  private shinfo(d: DomainEvents): ByteMem | undefined {
    if (d.shinfo === undefined) d.shinfo = this.env.sharedInfo(d.domid);
    return d.shinfo;
  }

  private vcpuInfoOf(d: DomainEvents, vcpu: number): VcpuInfoLoc | undefined {
    const custom = this.env.vcpuInfo?.(d.domid, vcpu);
    if (custom !== undefined) return custom;
    const sh = this.shinfo(d);
    return sh === undefined ? undefined : sharedVcpuInfo(sh, vcpu);
  }

  /** Raise a port to a vCPU: 2-level delivery, then anyone polling on it. */
  private setPending(d: DomainEvents, vcpu: number, port: number): void {
    const sh = this.shinfo(d);
    if (sh === undefined) return;
    const r = setPending2l(sh, this.vcpuInfoOf(d, vcpu), port);
    if (r === Raised.Already) return;
    if (r === Raised.Upcall) this.env.kick(d.domid, vcpu);
    if (d.pollers.size !== 0) this.checkPollers(d, port);
  }

  private checkPollers(d: DomainEvents, port: number): void {
    for (const [vcpu, ports] of d.pollers) {
      if (!ports.has(port)) continue;
      d.pollers.delete(vcpu);
      this.env.wakePoller(d.domid, vcpu);
    }
  }
}

function describe(chn: Channel): EvtchnStatus {
  switch (chn.state) {
    case ChannelState.Free:
    case ChannelState.Reserved:
      return { status: EVTCHNSTAT_closed, vcpu: chn.notifyVcpu };
    case ChannelState.Unbound:
      return { status: EVTCHNSTAT_unbound, vcpu: chn.notifyVcpu, dom: chn.remoteDom };
    case ChannelState.Interdomain:
      return { status: EVTCHNSTAT_interdomain, vcpu: chn.notifyVcpu, dom: chn.remoteDom, port: chn.remotePort as EvtchnPort };
    case ChannelState.Virq:
      return { status: EVTCHNSTAT_virq, vcpu: chn.notifyVcpu, virq: chn.virq };
    case ChannelState.Ipi:
      return { status: EVTCHNSTAT_ipi, vcpu: chn.notifyVcpu };
  }
}

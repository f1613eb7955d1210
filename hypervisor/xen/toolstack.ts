/*
 * The toolstack's handle on the hypervisor, libxc-style: host code (dom0)
 * calls typed methods; each builds Xen's argument struct in dom0's
 * host-side arena and issues the real hypercall through the same dispatch
 * table and handlers a guest would hit. Nothing here reaches around the
 * hypercall layer: a wrong struct fails here exactly as it would for a
 * guest kernel.
 *
 * Results: 0 / a value, or a negative Xen errno, as the hypercalls return.
 */
import {
  __HYPERVISOR_domctl, __HYPERVISOR_sysctl, __HYPERVISOR_memory_op, __HYPERVISOR_mmuext_op, __HYPERVISOR_mmu_update,
  __HYPERVISOR_event_channel_op, DOMID_SELF, mmuext_op, mmu_update,
} from '../public/xen.js';
import {
  XEN_DOMCTL_INTERFACE_VERSION, XEN_SYSCTL_INTERFACE_VERSION, XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain,
  XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, XEN_DOMCTL_getdomaininfo, XEN_DOMCTL_getvcpucontext,
  XEN_DOMCTL_setvcpucontext, XEN_DOMCTL_max_mem, XEN_DOMCTL_shadow_op, XEN_DOMCTL_getpageframeinfo3,
  XEN_DOMCTL_resumedomain, XEN_DOMCTL_subscribe, XEN_DOMCTL_set_kernel, XEN_DOMCTL_settimeoffset,
  XEN_DOMCTL_gettscinfo, XEN_SYSCTL_getdomaininfolist, XEN_SYSCTL_physinfo, XEN_SYSCTL_readconsole,
  XEN_DOMCTL_SHADOW_OP_CLEAN, XEN_DOMCTL_SHADOW_OP_PEEK, XEN_DOMCTL_SHADOW_OP_OFF, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
  XEN_DOMINF_dying, XEN_DOMINF_shutdown, XEN_DOMINF_paused, XEN_DOMINF_blocked, XEN_DOMINF_running,
  XEN_DOMINF_shutdownshift, XEN_DOMINF_shutdownmask, XEN_DOMCTL_KERNEL_HASH_LEN,
  xen_domctl, xen_sysctl, xen_domctl_getdomaininfo,
} from '../public/domctl.js';
import { XENMEM_populate_physmap, xen_memory_reservation } from '../public/memory.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_send, EVTCHNOP_close,
  evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_send, evtchn_close,
} from '../public/event_channel.js';
import { vcpu_guest_context } from '../public/arch-x86_64.js';
import { ENOMEM } from '../public/errno.js';
import { HostArenaMem } from './mm-vamem.js';
import { foreignFrame, type ForeignFrame } from './mm-foreign.js';
import { imageHashBytes } from './domctl.js';
import type { CallCtx } from './hcall.js';
import type { Machine } from './machine.js';

/** Bytes of dom0's argument arena (big enough for a 1024-entry batch of anything). */
const ARENA_BYTES = 1 << 20;

/** dom0's hypercall gate: host code's address space is a HostArenaMem. */
export class Dom0Hypercalls {
  readonly arena = new HostArenaMem(ARENA_BYTES);
  readonly ctx: CallCtx;

  constructor(private readonly m: Machine) {
    this.ctx = { domid: 0, vcpuId: 0, privileged: true, mem: this.arena };
  }

  /** Issue hypercall `nr`; a hypervisor exception propagates (it is a host-side bug). */
  call(nr: number, a1: number | bigint = 0, a2: number | bigint = 0, a3: number | bigint = 0, a4: number | bigint = 0, a5: number | bigint = 0): number {
    return this.m.hypercalls.call(this.ctx, nr, BigInt(a1), BigInt(a2), BigInt(a3), BigInt(a4), BigInt(a5), (e) => {
      throw e;
    });
  }
}

/** getdomaininfo, decoded. */
export interface DomainInfo {
  readonly domid: number;
  readonly flags: number;
  readonly dying: boolean;
  readonly shutdown: boolean;
  readonly paused: boolean;
  readonly blocked: boolean;
  readonly running: boolean;
  /** SHUTDOWN_* code when `shutdown` is set. */
  readonly shutdownReason: number | undefined;
  readonly totPages: number;
  readonly maxPages: number;
  readonly sharedInfoFrame: number;
  readonly cpuTimeNs: number;
  readonly nrOnlineVcpus: number;
  readonly maxVcpuId: number;
  readonly handle: Uint8Array;
}

export interface CreateDomainOptions {
  /** A specific domid (default: the next free one). */
  readonly domid?: number;
  readonly maxVcpus?: number;
  readonly handle?: Uint8Array;
  /** Highest event channel port. */
  readonly maxEvtchnPort?: number;
  readonly maxGrantFrames?: number;
}

export interface PhysInfo {
  readonly totalPages: number;
  readonly freePages: number;
  readonly cpuKhz: number;
  readonly nrCpus: number;
  readonly maxMfn: number;
}

function decodeInfo(v: ReturnType<typeof xen_domctl_getdomaininfo.view>): DomainInfo {
  const flags = v.get('flags');
  const shutdown = (flags & XEN_DOMINF_shutdown) !== 0;
  const handle = new Uint8Array(16);
  for (let i = 0; i < 16; i++) handle[i] = v.getAt('handle', i);
  return {
    domid: v.get('domain'),
    flags,
    dying: (flags & XEN_DOMINF_dying) !== 0,
    shutdown,
    paused: (flags & XEN_DOMINF_paused) !== 0,
    blocked: (flags & XEN_DOMINF_blocked) !== 0,
    running: (flags & XEN_DOMINF_running) !== 0,
    shutdownReason: shutdown ? (flags >>> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask : undefined,
    totPages: Number(v.get('tot_pages')),
    maxPages: Number(v.get('max_pages')),
    sharedInfoFrame: Number(v.get('shared_info_frame')),
    cpuTimeNs: Number(v.get('cpu_time')),
    nrOnlineVcpus: v.get('nr_online_vcpus'),
    maxVcpuId: v.get('max_vcpu_id'),
    handle,
  };
}

/** The libxc-like toolstack API. One instance per machine (`machine.xc`). */
export class Xc {
  readonly h: Dom0Hypercalls;

  constructor(private readonly m: Machine) {
    this.h = new Dom0Hypercalls(m);
  }

  private get mem(): HostArenaMem {
    return this.h.arena;
  }

  /** A fresh xen_domctl for `cmd` on `domid` in the arena. */
  private domctl(cmd: number, domid: number): { va: number; op: ReturnType<typeof xen_domctl.view> } {
    this.mem.reset();
    const va = this.mem.alloc(xen_domctl.size);
    const op = xen_domctl.view(this.mem, va);
    op.set('cmd', cmd);
    op.set('interface_version', XEN_DOMCTL_INTERFACE_VERSION);
    op.set('domain', domid);
    return { va, op };
  }

  private sysctl(cmd: number): { va: number; op: ReturnType<typeof xen_sysctl.view> } {
    this.mem.reset();
    const va = this.mem.alloc(xen_sysctl.size);
    const op = xen_sysctl.view(this.mem, va);
    op.set('cmd', cmd);
    op.set('interface_version', XEN_SYSCTL_INTERFACE_VERSION);
    return { va, op };
  }

  private simple(cmd: number, domid: number): number {
    return this.h.call(__HYPERVISOR_domctl, this.domctl(cmd, domid).va);
  }

  // --- domains -----------------------------------------------------------

  /** XEN_DOMCTL_createdomain: the new domid, or -errno. The domain is paused. */
  createDomain(o: CreateDomainOptions = {}): number {
    const { va, op } = this.domctl(XEN_DOMCTL_createdomain, o.domid ?? 0);
    const cd = op.sub('u').sub('createdomain');
    cd.set('max_vcpus', o.maxVcpus ?? 1);
    cd.set('max_evtchn_port', o.maxEvtchnPort ?? 0);
    cd.set('max_grant_frames', o.maxGrantFrames ?? -1);
    cd.set('max_maptrack_frames', -1);
    if (o.handle !== undefined) for (let i = 0; i < 16; i++) cd.setAt('handle', i, o.handle[i] ?? 0);
    const rc = this.h.call(__HYPERVISOR_domctl, va);
    return rc < 0 ? rc : op.get('domain');
  }

  destroyDomain(domid: number): number {
    return this.simple(XEN_DOMCTL_destroydomain, domid);
  }

  pauseDomain(domid: number): number {
    return this.simple(XEN_DOMCTL_pausedomain, domid);
  }

  unpauseDomain(domid: number): number {
    return this.simple(XEN_DOMCTL_unpausedomain, domid);
  }

  /** XEN_DOMCTL_resumedomain: undo a suspend in place (after setHypercallResult for fast resume). */
  resumeDomain(domid: number): number {
    return this.simple(XEN_DOMCTL_resumedomain, domid);
  }

  /** getdomaininfo of exactly `domid` (undefined when it does not exist). */
  getDomainInfo(domid: number): DomainInfo | undefined {
    const { va, op } = this.domctl(XEN_DOMCTL_getdomaininfo, domid);
    const rc = this.h.call(__HYPERVISOR_domctl, va);
    if (rc < 0 || op.get('domain') !== domid) return undefined;
    return decodeInfo(op.sub('u').sub('getdomaininfo'));
  }

  /** sysctl getdomaininfolist: up to `max` domains from `first` on (`xl list`). */
  listDomains(first = 0, max = 1024): DomainInfo[] | number {
    const { va, op } = this.sysctl(XEN_SYSCTL_getdomaininfolist);
    const buf = this.mem.alloc(max * xen_domctl_getdomaininfo.size);
    const l = op.sub('u').sub('getdomaininfolist');
    l.set('first_domain', first);
    l.set('max_domains', max);
    l.set('buffer', BigInt(buf));
    const rc = this.h.call(__HYPERVISOR_sysctl, va);
    if (rc < 0) return rc;
    const out: DomainInfo[] = [];
    for (let i = 0; i < l.get('num_domains'); i++) out.push(decodeInfo(xen_domctl_getdomaininfo.view(this.mem, buf + i * xen_domctl_getdomaininfo.size)));
    return out;
  }

  setMaxMem(domid: number, maxMemKb: number): number {
    const { va, op } = this.domctl(XEN_DOMCTL_max_mem, domid);
    op.sub('u').sub('max_mem').set('max_memkb', BigInt(maxMemKb));
    return this.h.call(__HYPERVISOR_domctl, va);
  }

  /** Bind registered kernel image `name`; a given hash must match (restore). */
  setKernel(domid: number, name: string, versionHash?: string): number {
    const { va, op } = this.domctl(XEN_DOMCTL_set_kernel, domid);
    const k = op.sub('u').sub('set_kernel');
    k.setString('name', name);
    if (versionHash !== undefined) {
      const h = imageHashBytes(versionHash);
      for (let i = 0; i < XEN_DOMCTL_KERNEL_HASH_LEN; i++) k.setAt('version_hash', i, h[i]!);
    }
    return this.h.call(__HYPERVISOR_domctl, va);
  }

  /** XEN_DOMCTL_subscribe: the domain's suspend event channel (its own port). */
  subscribe(domid: number, port: number): number {
    const { va, op } = this.domctl(XEN_DOMCTL_subscribe, domid);
    op.sub('u').sub('subscribe').set('port', port);
    return this.h.call(__HYPERVISOR_domctl, va);
  }

  setTimeOffset(domid: number, seconds: number): number {
    const { va, op } = this.domctl(XEN_DOMCTL_settimeoffset, domid);
    op.sub('u').sub('settimeoffset').set('time_offset_seconds', BigInt(seconds));
    return this.h.call(__HYPERVISOR_domctl, va);
  }

  getTscInfo(domid: number): { tscMode: number; khz: number; incarnation: number; elapsedNs: number } | number {
    const { va, op } = this.domctl(XEN_DOMCTL_gettscinfo, domid);
    const rc = this.h.call(__HYPERVISOR_domctl, va);
    if (rc < 0) return rc;
    const t = op.sub('u').sub('tsc_info');
    return { tscMode: t.get('tsc_mode'), khz: t.get('gtsc_khz'), incarnation: t.get('incarnation'), elapsedNs: Number(t.get('elapsed_nsec')) };
  }

  // --- vCPU context ------------------------------------------------------------

  /** The 5168-byte vcpu_guest_context of a vCPU, or -errno. */
  getVcpuContext(domid: number, vcpu: number): Uint8Array | number {
    const { va, op } = this.domctl(XEN_DOMCTL_getvcpucontext, domid);
    const buf = this.mem.alloc(vcpu_guest_context.size);
    const vc = op.sub('u').sub('vcpucontext');
    vc.set('vcpu', vcpu);
    vc.set('ctxt', BigInt(buf));
    const rc = this.h.call(__HYPERVISOR_domctl, va);
    return rc < 0 ? rc : this.mem.readBytes(buf, vcpu_guest_context.size);
  }

  /** Load a context (CR3 must be a valid L4 of the domain); null resets the vCPU. */
  setVcpuContext(domid: number, vcpu: number, ctx: Uint8Array | null): number {
    const { va, op } = this.domctl(XEN_DOMCTL_setvcpucontext, domid);
    const vc = op.sub('u').sub('vcpucontext');
    vc.set('vcpu', vcpu);
    vc.set('ctxt', ctx === null ? 0n : BigInt(this.mem.put(ctx)));
    return this.h.call(__HYPERVISOR_domctl, va);
  }

  /**
   * What xc_domain_resume does for a cooperative (fast) resume: vCPU 0's
   * suspend hypercall returns `value` (1: "suspend cancelled"), via
   * get/setvcpucontext.
   */
  setSuspendResult(domid: number, value: number): number {
    const ctx = this.getVcpuContext(domid, 0);
    if (typeof ctx === 'number') return ctx;
    const regs = vcpu_guest_context.view(new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength), 0).sub('user_regs');
    regs.set('rax', BigInt.asUintN(64, BigInt(value)));
    return this.setVcpuContext(domid, 0, ctx);
  }

  // --- memory ------------------------------------------------------------

  /**
   * XENMEM_populate_physmap for `domid`: one frame per PFN. The MFNs, or
   * -errno; a short count (max_mem or machine memory reached) is -ENOMEM.
   */
  populatePhysmap(domid: number, pfns: readonly number[]): number[] | number {
    this.mem.reset();
    const list = this.mem.alloc(8 * pfns.length);
    pfns.forEach((p, i) => this.mem.setBigUint64(list + 8 * i, BigInt(p), true));
    const r = xen_memory_reservation.view(this.mem, this.mem.alloc(xen_memory_reservation.size));
    r.set('extent_start', BigInt(list));
    r.set('nr_extents', BigInt(pfns.length));
    r.set('extent_order', 0);
    r.set('mem_flags', 0);
    r.set('domid', domid);
    const rc = this.h.call(__HYPERVISOR_memory_op, XENMEM_populate_physmap, r.base);
    if (rc !== pfns.length) return rc < 0 ? rc : -ENOMEM;
    return pfns.map((_, i) => Number(this.mem.getBigUint64(list + 8 * i, true)));
  }

  /** mmuext_op on `domid`'s tables: ops of {cmd, mfn (arg1)}. Returns rc. */
  mmuextOp(domid: number, ops: readonly { cmd: number; arg1: number | bigint; arg2?: number | bigint }[]): number {
    this.mem.reset();
    const base = this.mem.alloc(ops.length * mmuext_op.size);
    ops.forEach((o, i) => {
      const v = mmuext_op.view(this.mem, base + i * mmuext_op.size);
      v.set('cmd', o.cmd);
      v.sub('arg1').set('mfn', BigInt(o.arg1));
      v.sub('arg2').set('src_mfn', BigInt(o.arg2 ?? 0));
    });
    return this.h.call(__HYPERVISOR_mmuext_op, base, ops.length, 0, domid === 0 ? DOMID_SELF : domid);
  }

  /** mmu_update of `domid`'s page tables (pt owner and pg owner = domid). */
  mmuUpdate(domid: number, reqs: readonly { ptr: bigint; val: bigint }[]): number {
    this.mem.reset();
    const base = this.mem.alloc(reqs.length * mmu_update.size);
    reqs.forEach((r, i) => {
      const v = mmu_update.view(this.mem, base + i * mmu_update.size);
      v.set('ptr', r.ptr);
      v.set('val', r.val);
    });
    const foreign = domid === 0 ? DOMID_SELF : domid | ((domid + 1) << 16);
    return this.h.call(__HYPERVISOR_mmu_update, base, reqs.length, 0, foreign);
  }

  /** Read/write access to one frame of a domain (foreign mapping, privcmd-style). */
  foreignFrame(domid: number, mfn: number, writable = false): ForeignFrame | number {
    return foreignFrame(this.m.mmEnv, true, domid, mfn, writable);
  }

  // --- log-dirty -----------------------------------------------------------------

  shadowOp(domid: number, op: number, pages = 0, withBitmap = false): { rc: number; bitmap: Uint8Array | null; pages: number; dirtyCount: number } {
    const { va, op: dc } = this.domctl(XEN_DOMCTL_shadow_op, domid);
    const s = dc.sub('u').sub('shadow_op');
    s.set('op', op);
    s.set('pages', BigInt(pages));
    const bytes = Math.ceil(pages / 8);
    const buf = withBitmap && bytes > 0 ? this.mem.alloc(bytes) : 0;
    s.set('dirty_bitmap', BigInt(buf));
    const rc = this.h.call(__HYPERVISOR_domctl, va);
    return {
      rc,
      bitmap: buf !== 0 && rc === 0 ? this.mem.readBytes(buf, bytes) : null,
      pages: Number(s.get('pages')),
      dirtyCount: s.sub('stats').get('dirty_count'),
    };
  }

  enableLogDirty(domid: number): number {
    return this.shadowOp(domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY).rc;
  }

  disableLogDirty(domid: number): number {
    return this.shadowOp(domid, XEN_DOMCTL_SHADOW_OP_OFF).rc;
  }

  /** The dirty bitmap over `pages` PFNs; `clean` resets it for the next round. */
  dirtyBitmap(domid: number, pages: number, clean = true): Uint8Array | number {
    const r = this.shadowOp(domid, clean ? XEN_DOMCTL_SHADOW_OP_CLEAN : XEN_DOMCTL_SHADOW_OP_PEEK, pages, true);
    return r.rc < 0 ? r.rc : r.bitmap ?? new Uint8Array(0);
  }

  /** XEN_DOMCTL_getpageframeinfo3 in batches of 1024: a PFINFO type per MFN. */
  getPageFrameInfo(domid: number, mfns: readonly number[]): Uint32Array | number {
    const out = new Uint32Array(mfns.length);
    for (let at = 0; at < mfns.length; at += 1024) {
      const batch = mfns.slice(at, at + 1024);
      const { va, op } = this.domctl(XEN_DOMCTL_getpageframeinfo3, domid);
      const arr = this.mem.alloc(8 * batch.length);
      batch.forEach((mfn, i) => this.mem.setBigUint64(arr + 8 * i, BigInt(mfn), true));
      const p = op.sub('u').sub('getpageframeinfo3');
      p.set('num', BigInt(batch.length));
      p.set('array', BigInt(arr));
      const rc = this.h.call(__HYPERVISOR_domctl, va);
      if (rc < 0) return rc;
      batch.forEach((_, i) => { out[at + i] = Number(this.mem.getBigUint64(arr + 8 * i, true) & 0xffff_ffffn); });
    }
    return out;
  }

  // --- machine --------------------------------------------------------------------

  physinfo(): PhysInfo | number {
    const { va, op } = this.sysctl(XEN_SYSCTL_physinfo);
    const rc = this.h.call(__HYPERVISOR_sysctl, va);
    if (rc < 0) return rc;
    const p = op.sub('u').sub('physinfo');
    return {
      totalPages: Number(p.get('total_pages')),
      freePages: Number(p.get('free_pages')),
      cpuKhz: p.get('cpu_khz'),
      nrCpus: p.get('nr_cpus'),
      maxMfn: Number(p.get('max_mfn')),
    };
  }

  /** The hypervisor console ring (`xl dmesg`). */
  readConsole(clear = false): string | number {
    const { va, op } = this.sysctl(XEN_SYSCTL_readconsole);
    const size = 256 * 1024;
    const buf = this.mem.alloc(size);
    const r = op.sub('u').sub('readconsole');
    r.set('clear', clear ? 1 : 0);
    r.set('buffer', BigInt(buf));
    r.set('count', size);
    const rc = this.h.call(__HYPERVISOR_sysctl, va);
    if (rc < 0) return rc;
    return Buffer.from(this.mem.readBytes(buf, r.get('count'))).toString('latin1');
  }

  // --- dom0's event channels ---------------------------------------------------------

  /** A dom0 port that `remoteDom` may bind. */
  allocUnbound(remoteDom: number, dom = DOMID_SELF): number {
    this.mem.reset();
    const v = evtchn_alloc_unbound.view(this.mem, this.mem.alloc(evtchn_alloc_unbound.size));
    v.set('dom', dom);
    v.set('remote_dom', remoteDom);
    const rc = this.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, v.base);
    return rc < 0 ? rc : v.get('port');
  }

  bindInterdomain(remoteDom: number, remotePort: number): number {
    this.mem.reset();
    const v = evtchn_bind_interdomain.view(this.mem, this.mem.alloc(evtchn_bind_interdomain.size));
    v.set('remote_dom', remoteDom);
    v.set('remote_port', remotePort);
    const rc = this.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_interdomain, v.base);
    return rc < 0 ? rc : v.get('local_port');
  }

  bindVirq(virq: number, vcpu = 0): number {
    this.mem.reset();
    const v = evtchn_bind_virq.view(this.mem, this.mem.alloc(evtchn_bind_virq.size));
    v.set('virq', virq);
    v.set('vcpu', vcpu);
    const rc = this.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, v.base);
    return rc < 0 ? rc : v.get('port');
  }

  notify(port: number): number {
    this.mem.reset();
    const v = evtchn_send.view(this.mem, this.mem.alloc(evtchn_send.size));
    v.set('port', port);
    return this.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_send, v.base);
  }

  closePort(port: number): number {
    this.mem.reset();
    const v = evtchn_close.view(this.mem, this.mem.alloc(evtchn_close.size));
    v.set('port', port);
    return this.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_close, v.base);
  }
}


/*
 * Domain lifecycle, as Xen's domain.c does it: create (paused), pause and
 * unpause, shutdown (with a reason; the vCPUs stop, the domain stays),
 * crash (a shutdown with SHUTDOWN_crash plus the on_crash hook), resume in
 * place (fast resume after a cancelled suspend), destroy (every frame,
 * port and grant released).
 *
 * dom0 is made here too: domain 0, privileged, host code. It has a
 * shared_info page (where its event bits land), one vCPU record that is
 * never entered, ports and a grant table, like any domain.
 */
import {
  shared_info, vcpu_info, XEN_LEGACY_MAX_VCPUS, VIRQ_DOM_EXC, DOMID_FIRST_RESERVED,
} from '../public/xen.js';
import { SHUTDOWN_crash, SHUTDOWN_suspend, SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_watchdog, SHUTDOWN_soft_reset } from '../public/sched.js';
import { EEXIST, EINVAL, ENOMEM } from '../public/errno.js';
import { OWNER_ZOMBIE } from './frametable.js';
import { DomainMemory, putPageAndType, releaseIfUnreferenced } from './mm.js';
import { GuestVaMem } from './mm-vamem.js';
import { writeWallClock } from './time.js';
import { Vcpu } from './vcpu.js';
import { VcpuCpu } from './entry.js';
import { Domain, SHUTDOWN_CODE_INVALID, type CrashInfo, type DomainConfig } from './domain.js';
import { dbg } from './log.js';
import type { Machine } from './machine.js';

/** Most vCPUs a domain may have (those past 32 must register their vcpu_info). */
export const MAX_VCPUS = 128;

const VCPU_INFO_OFF = shared_info.offsetOf('vcpu_info');
const UPCALL_MASK = vcpu_info.offsetOf('evtchn_upcall_mask');

export function shutdownReasonName(code: number): string {
  switch (code) {
    case SHUTDOWN_poweroff: return 'poweroff';
    case SHUTDOWN_reboot: return 'reboot';
    case SHUTDOWN_suspend: return 'suspend';
    case SHUTDOWN_crash: return 'crash';
    case SHUTDOWN_watchdog: return 'watchdog';
    case SHUTDOWN_soft_reset: return 'soft_reset';
    default: return `code ${code}`;
  }
}

/** Make the domain record, its shared_info, vCPUs, ports and grant table. */
function build(m: Machine, domid: number, isHost: boolean, cfg: DomainConfig): Domain | number {
  const maxVcpus = cfg.maxVcpus ?? 1;
  if (!(Number.isInteger(maxVcpus) && maxVcpus >= 1 && maxVcpus <= MAX_VCPUS)) return -EINVAL;
  const maxPages = cfg.maxPages ?? m.frames.nrFrames;
  if (!(Number.isInteger(maxPages) && maxPages >= 0)) return -EINVAL;
  const shinfo = m.frames.alloc(domid);
  if (shinfo === undefined) return -ENOMEM;
  const d = new Domain(domid, isHost, isHost, new DomainMemory(domid, maxPages));
  d.sharedInfoMfn = shinfo;
  d.sharedInfo = m.memory.frameMem(shinfo);
  if (cfg.handle !== undefined) d.handle.set(cfg.handle.subarray(0, 16));
  // Events start masked on every vCPU, as Xen leaves a new shared_info:
  // the guest unmasks once its callback is in place.
  for (let i = 0; i < XEN_LEGACY_MAX_VCPUS; i++) d.sharedInfo.setUint8(VCPU_INFO_OFF + i * vcpu_info.size + UPCALL_MASK, 1);
  writeWallClock(d.sharedInfo, wallClockOf(m, d));
  const rc = m.evtchn.initDomain(domid, cfg.maxEvtchnPorts === undefined ? {} : { maxPorts: cfg.maxEvtchnPorts });
  if (rc < 0) {
    m.frames.release(shinfo);
    return rc;
  }
  const grc = m.gnttab.createTable(domid, cfg.maxGrantFrames === undefined ? {} : { maxFrames: cfg.maxGrantFrames });
  if (grc < 0) {
    m.evtchn.closeAll(domid);
    m.frames.release(shinfo);
    return grc;
  }
  m.domainTable.set(domid, d);
  for (let i = 0; i < maxVcpus; i++) addVcpu(m, d);
  return d;
}

/** Append one vCPU to a domain (createdomain, XEN_DOMCTL_max_vcpus). */
export function addVcpu(m: Machine, d: Domain): Vcpu {
  const id = d.vcpus.length;
  const v = new Vcpu(d.id, id, d.mem.vcpu(id), (vc, which) => m.onVcpuTimer(vc, which));
  v.info = id < XEN_LEGACY_MAX_VCPUS ? { mem: d.sharedInfo, base: VCPU_INFO_OFF + id * vcpu_info.size } : null;
  d.vcpus.push(v);
  m.cpus.set(v, new VcpuCpu(m, d, v, new GuestVaMem(m.mmEnv, v.mmu)));
  return v;
}

export function createDom0(m: Machine): Domain {
  const d = build(m, 0, true, { maxVcpus: 1 });
  if (typeof d === 'number') throw new Error(`cannot create dom0: ${d}`);
  // dom0's events are taken by host code (Machine.onDom0Event), not masked.
  d.sharedInfo.setUint8(VCPU_INFO_OFF + UPCALL_MASK, 0);
  d.pauseCount = 0;
  d.created = false;
  return d;
}

/**
 * XEN_DOMCTL_createdomain: `domid` 0 (or reserved) picks the next free id
 * after the last one handed out. The domain starts paused.
 */
export function createDomain(m: Machine, domid: number, cfg: DomainConfig): Domain | number {
  if (domid > 0 && domid < DOMID_FIRST_RESERVED) {
    if (m.domainTable.has(domid)) return -EEXIST;
  } else {
    domid = 0;
    for (let i = 1; i < DOMID_FIRST_RESERVED; i++) {
      const cand = ((m.domidRover + i - 1) % (DOMID_FIRST_RESERVED - 1)) + 1;
      if (!m.domainTable.has(cand)) {
        domid = cand;
        break;
      }
    }
    if (domid === 0) return -ENOMEM;
    m.domidRover = domid;
  }
  const d = build(m, domid, false, cfg);
  if (typeof d === 'number') return d;
  dbg.domctl('d%d created (%d vcpus)', domid, d.vcpus.length);
  m.log.xen(`d${domid} created`);
  return d;
}

export function wallClockOf(m: Machine, d: Domain): { sec: number; nsec: number } {
  const wc = m.clock.wallAtBoot();
  return { sec: wc.sec + d.timeOffsetSeconds, nsec: wc.nsec };
}

export function pauseDomain(m: Machine, d: Domain): number {
  if (d.isHost || d.dying) return -EINVAL;
  d.pauseCount++;
  dbg.sched('d%d paused (%d)', d.id, d.pauseCount);
  return 0;
}

export function unpauseDomain(m: Machine, d: Domain): number {
  if (d.isHost || d.dying || d.pauseCount === 0) return -EINVAL;
  d.pauseCount--;
  if (d.pauseCount === 0) {
    d.created = false;
    m.sched.wakeAll(d.vcpus);
    m.poke();
  }
  dbg.sched('d%d unpaused (%d)', d.id, d.pauseCount);
  return 0;
}

/**
 * Xen's domain_shutdown: the first reason (or a code latched earlier with
 * SCHEDOP_shutdown_code) sticks; the vCPUs stop; the toolstack hears of it
 * through VIRQ_DOM_EXC and, for a suspend with a subscribed port, through
 * that port.
 */
export function shutdownDomain(m: Machine, d: Domain, reason: number): void {
  if (d.isHost || d.dying) return;
  if (d.shutdownCode === SHUTDOWN_CODE_INVALID) d.shutdownCode = reason & 0xff;
  if (d.shuttingDown) return;
  d.shuttingDown = true;
  for (const v of d.vcpus) v.descheduled = true;
  m.log.xen(`d${d.id} shutdown: ${shutdownReasonName(d.shutdownCode)}`);
  if (d.shutdownCode === SHUTDOWN_suspend && d.suspendEvtchn !== 0) {
    m.evtchn.send({ domid: d.id, vcpuId: 0, privileged: false }, d.suspendEvtchn);
  }
  m.evtchn.sendGlobalVirq(VIRQ_DOM_EXC);
}

/** Xen's domain_crash: log why, shut down with SHUTDOWN_crash, then the on_crash hook. */
export function crashDomain(m: Machine, d: Domain, info: CrashInfo): void {
  if (d.isHost) throw new Error(`dom0 crashed: ${info.reason}\n${info.stack ?? ''}`);
  if (d.dying || d.crash !== null) return;
  d.crash = info;
  m.log.xen(`domain_crash: ${info.reason}`);
  if (info.stack !== undefined) m.log.xen(info.stack);
  shutdownDomain(m, d, SHUTDOWN_crash);
  if (d.onCrash !== null) m.defer(() => d.onCrash?.(d));
}

/**
 * XEN_DOMCTL_resumedomain (Xen's domain_resume): the shutdown is undone and
 * the vCPUs run again where they stopped. The toolstack sets the suspend
 * hypercall's result (rax = 1) first for a cancelled suspend.
 */
export function resumeDomain(m: Machine, d: Domain): number {
  if (d.isHost || d.dying) return -EINVAL;
  d.shuttingDown = false;
  d.shutdownCode = SHUTDOWN_CODE_INVALID;
  d.crash = null;
  d.suspendStartInfoMfn = null;
  d.resumes++;
  m.log.xen(`d${d.id} resumed`);
  m.sched.wakeAll(d.vcpus);
  m.poke();
  return 0;
}

/**
 * XEN_DOMCTL_destroydomain: release everything. Frames other domains still
 * map (grants) outlive the domain as zombies and are freed at their last
 * unmap; nothing else survives.
 */
export function destroyDomain(m: Machine, d: Domain): number {
  if (d.isHost) return -EINVAL;
  if (d.dying) return 0;
  d.dying = true;
  for (const v of d.vcpus) {
    // The writable reference VCPUOP_register_vcpu_info took on its frame.
    if (v.vcpuInfoAt !== null) putPageAndType(m.mmEnv, v.vcpuInfoAt.mfn);
    v.vcpuInfoAt = null;
    v.info = null;
    m.timers.cancel(v.singleshot);
    m.timers.cancel(v.periodic);
    m.timers.cancel(v.pollTimer);
    m.cpus.delete(v);
  }
  m.sched.purge(d.id);
  m.evtchn.closeAll(d.id);
  const { released, zombies } = d.mem.relinquish(m.mmEnv);
  m.gnttab.destroy(d.id);
  const shinfo = d.sharedInfoMfn;
  m.frames.owner[shinfo] = OWNER_ZOMBIE;
  const shinfoFreed = releaseIfUnreferenced(m.mmEnv, shinfo);
  m.domainTable.delete(d.id);
  m.log.xen(`d${d.id} destroyed: ${released + (shinfoFreed ? 1 : 0)} frames freed, ${zombies + (shinfoFreed ? 0 : 1)} still mapped elsewhere`);
  m.evtchn.sendGlobalVirq(VIRQ_DOM_EXC);
  return 0;
}

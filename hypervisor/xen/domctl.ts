/*
 * XEN_DOMCTL_*: the toolstack's control of domains (privileged callers
 * only). The struct is copied in whole, worked on, and copied back for the
 * commands that have OUT fields, as Xen's do_domctl does. The ABI is in
 * public/domctl.ts.
 */
import { createHash } from 'node:crypto';
import { bytesMem, type StructLayout, type StructView } from '../public/layout.js';
import {
  XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain, XEN_DOMCTL_pausedomain,
  XEN_DOMCTL_unpausedomain, XEN_DOMCTL_getdomaininfo, XEN_DOMCTL_shadow_op, XEN_DOMCTL_max_mem,
  XEN_DOMCTL_setvcpucontext, XEN_DOMCTL_getvcpucontext, XEN_DOMCTL_getvcpuinfo, XEN_DOMCTL_max_vcpus,
  XEN_DOMCTL_setdomainhandle, XEN_DOMCTL_settimeoffset, XEN_DOMCTL_resumedomain, XEN_DOMCTL_subscribe,
  XEN_DOMCTL_set_address_size, XEN_DOMCTL_get_address_size, XEN_DOMCTL_gettscinfo, XEN_DOMCTL_settscinfo,
  XEN_DOMCTL_getpageframeinfo3, XEN_DOMCTL_set_kernel, XEN_DOMCTL_SHADOW_OP_CLEAN, XEN_DOMCTL_SHADOW_OP_PEEK,
  XEN_DOMCTL_KERNEL_HASH_LEN, XEN_DOMINF_dying, XEN_DOMINF_shutdown, XEN_DOMINF_paused, XEN_DOMINF_blocked,
  XEN_DOMINF_running, XEN_DOMINF_shutdownshift, XEN_DOMINF_shutdownmask, XEN_INVALID_MAX_VCPU_ID,
  xen_domctl, xen_domctl_getdomaininfo, xen_domctl_vcpucontext, xen_domctl_shadow_op, xen_domctl_getpageframeinfo3,
  xen_domctl_set_kernel,
} from '../public/domctl.js';
import { vcpu_guest_context } from '../public/arch-x86_64.js';
import { DOMID_SELF } from '../public/xen.js';
import { EACCES, EPERM, ESRCH, EINVAL, ENOSYS, ENODATA, E2BIG, ENOENT, EFAULT } from '../public/errno.js';
import { guestAccess, ptrArg, type CallCtx, type HypercallHandler } from './hcall.js';
import { shadowOp } from './mm.js';
import { getPageFrameInfo } from './mm-foreign.js';
import { addVcpu, wallClockOf, MAX_VCPUS } from './lifecycle.js';
import { writeWallClock } from './time.js';
import { setContext, resetVcpu } from './vcpu-context.js';
import { dbg } from './log.js';
import type { Machine } from './machine.js';
import type { Domain } from './domain.js';

type ViewOf<L> = L extends StructLayout<infer F> ? StructView<F> : never;
type DomctlView = ViewOf<typeof xen_domctl>;
type InfoView = ViewOf<typeof xen_domctl_getdomaininfo>;

/** Largest getpageframeinfo3 batch (Xen's). */
const PFINFO_MAX = 1024;
const EVTCHN_2L_PORTS = 4096;

/** Fill a xen_domctl_getdomaininfo for `d` (getdomaininfo and sysctl getdomaininfolist). */
export function fillDomainInfo(d: Domain, v: InfoView): void {
  let flags = XEN_DOMINF_blocked;
  let online = 0;
  for (const vc of d.vcpus) {
    if (!vc.up) continue;
    online++;
    if (vc.blocked === 'none') flags &= ~XEN_DOMINF_blocked;
    // Xen sets "running" for a vCPU on a physical CPU right now; here one
    // host thread runs everything, so report the vCPUs that would be.
    if (vc.blocked === 'none' && d.canRun()) flags |= XEN_DOMINF_running;
  }
  if (online === 0) flags = 0;
  if (d.dying) flags |= XEN_DOMINF_dying;
  if (d.shuttingDown) flags |= XEN_DOMINF_shutdown;
  if (d.pauseCount > 0) flags |= XEN_DOMINF_paused;
  if (d.shutdownCode >= 0) flags |= (d.shutdownCode & XEN_DOMINF_shutdownmask) << XEN_DOMINF_shutdownshift;
  v.set('domain', d.id);
  v.set('flags', flags >>> 0);
  v.set('tot_pages', BigInt(d.mem.totPages));
  v.set('max_pages', BigInt(d.mem.maxPages));
  v.set('outstanding_pages', 0n);
  v.set('shr_pages', 0n);
  v.set('paged_pages', 0n);
  v.set('shared_info_frame', BigInt(d.sharedInfoMfn));
  v.set('cpu_time', BigInt(Math.round(d.cpuTime)));
  v.set('nr_online_vcpus', online);
  v.set('max_vcpu_id', d.vcpus.length === 0 ? XEN_INVALID_MAX_VCPU_ID : d.vcpus.length - 1);
  v.set('ssidref', 0);
  for (let i = 0; i < 16; i++) v.setAt('handle', i, d.handle[i]!);
  v.set('cpupool', 0);
  v.set('gpaddr_bits', 52);
}

/** The domctl handler. */
export function makeDomctl(m: Machine): HypercallHandler {
  return (c, a1) => guestAccess(() => {
    if (!c.privileged) return -EPERM;
    const va = ptrArg(a1);
    if (va === undefined) return -EFAULT;
    const raw = c.mem.readBytes(va, xen_domctl.size);
    const op = xen_domctl.view(bytesMem(raw), 0);
    if (op.get('interface_version') !== XEN_DOMCTL_INTERFACE_VERSION) return -EACCES;
    const out = { copyback: false };
    const rc = doDomctl(m, c, op, out);
    dbg.domctl('domctl %d d%d = %d', op.get('cmd'), op.get('domain'), rc);
    if (out.copyback) c.mem.writeBytes(va, raw);
    return rc;
  });
}

function doDomctl(m: Machine, c: CallCtx, op: DomctlView, out: { copyback: boolean }): number {
  const cmd = op.get('cmd');
  const u = op.sub('u');
  if (cmd === XEN_DOMCTL_createdomain) {
    const cd = u.sub('createdomain');
    const maxVcpus = cd.get('max_vcpus');
    if (maxVcpus < 1 || maxVcpus > MAX_VCPUS) return -EINVAL;
    const maxPort = cd.get('max_evtchn_port');
    const maxGrant = cd.get('max_grant_frames');
    const handle = new Uint8Array(16);
    for (let i = 0; i < 16; i++) handle[i] = cd.getAt('handle', i);
    const d = m.createDomain({
      maxVcpus,
      handle,
      ...(maxPort === 0 ? {} : { maxEvtchnPorts: Math.min(maxPort + 1, EVTCHN_2L_PORTS) }),
      ...(maxGrant <= 0 ? {} : { maxGrantFrames: maxGrant }),
    }, op.get('domain'));
    if (typeof d === 'number') return d;
    op.set('domain', d.id);
    out.copyback = true;
    return 0;
  }
  if (cmd === XEN_DOMCTL_getdomaininfo) {
    // Xen answers for the first domain at or above the one asked for.
    const want = op.get('domain');
    const d = m.domains.find((x) => x.id >= want);
    if (d === undefined) return -ESRCH;
    op.set('domain', d.id);
    fillDomainInfo(d, u.sub('getdomaininfo'));
    out.copyback = true;
    return 0;
  }
  const domid = op.get('domain') === DOMID_SELF ? c.domid : op.get('domain');
  const d = m.domain(domid);
  if (d === undefined) return -ESRCH;
  switch (cmd) {
    case XEN_DOMCTL_destroydomain:
      if (d.isHost || d.id === c.domid) return -EINVAL;
      return m.destroyDomain(d);
    case XEN_DOMCTL_pausedomain:
      if (d.id === c.domid) return -EINVAL;
      return m.pauseDomain(d);
    case XEN_DOMCTL_unpausedomain:
      if (d.id === c.domid) return -EINVAL;
      return m.unpauseDomain(d);
    case XEN_DOMCTL_resumedomain:
      return m.resumeDomain(d);
    case XEN_DOMCTL_max_mem: {
      const kb = u.sub('max_mem').get('max_memkb');
      const pages = kb >> 2n;
      d.mem.maxPages = pages > 0xffff_ffffn ? 0xffff_ffff : Number(pages);
      return 0;
    }
    case XEN_DOMCTL_getvcpucontext:
    case XEN_DOMCTL_setvcpucontext:
      return vcpuContext(m, c, d, cmd, u.sub('vcpucontext'));
    case XEN_DOMCTL_getvcpuinfo: {
      const vi = u.sub('getvcpuinfo');
      const v = d.vcpus[vi.get('vcpu')];
      if (v === undefined) return -ESRCH;
      vi.set('online', v.up ? 1 : 0);
      vi.set('blocked', v.blocked !== 'none' ? 1 : 0);
      vi.set('running', v.up && v.blocked === 'none' && d.canRun() ? 1 : 0);
      vi.set('cpu_time', BigInt(Math.round(v.cpuTimeNs)));
      vi.set('cpu', 0);
      out.copyback = true;
      return 0;
    }
    case XEN_DOMCTL_max_vcpus: {
      const max = u.sub('max_vcpus').get('max');
      if (max < d.vcpus.length || max > MAX_VCPUS) return -EINVAL;
      while (d.vcpus.length < max) addVcpu(m, d);
      return 0;
    }
    case XEN_DOMCTL_setdomainhandle:
      for (let i = 0; i < 16; i++) d.handle[i] = u.getAt('pad', i);
      return 0;
    case XEN_DOMCTL_settimeoffset:
      d.timeOffsetSeconds = Number(u.sub('settimeoffset').get('time_offset_seconds'));
      writeWallClock(d.sharedInfo, wallClockOf(m, d));
      return 0;
    case XEN_DOMCTL_subscribe:
      d.suspendEvtchn = u.sub('subscribe').get('port');
      return 0;
    case XEN_DOMCTL_set_address_size:
      return u.sub('address_size').get('size') === 64 ? 0 : -EINVAL;
    case XEN_DOMCTL_get_address_size:
      u.sub('address_size').set('size', 64);
      out.copyback = true;
      return 0;
    case XEN_DOMCTL_gettscinfo: {
      const t = u.sub('tsc_info');
      t.set('tsc_mode', 0);
      t.set('gtsc_khz', m.clock.tscKhz);
      t.set('incarnation', d.resumes);
      t.set('pad', 0);
      t.set('elapsed_nsec', BigInt(m.clock.now()));
      out.copyback = true;
      return 0;
    }
    case XEN_DOMCTL_settscinfo:
      // One TSC mode (native, stable) exists here; the record is accepted.
      return 0;
    case XEN_DOMCTL_shadow_op:
      out.copyback = true;
      return shadow(m, c, d, u.sub('shadow_op'));
    case XEN_DOMCTL_getpageframeinfo3:
      return pageFrameInfo(m, c, d, u.sub('getpageframeinfo3'));
    case XEN_DOMCTL_set_kernel:
      out.copyback = true;
      return setKernel(m, d, u.sub('set_kernel'));
    default:
      return -ENOSYS;
  }
}

function vcpuContext(m: Machine, c: CallCtx, d: Domain, cmd: number, vc: ViewOf<typeof xen_domctl_vcpucontext>): number {
  const v = d.vcpus[vc.get('vcpu')];
  if (v === undefined) return -ESRCH;
  const handle = BigInt.asUintN(64, vc.get('ctxt'));
  if (cmd === XEN_DOMCTL_getvcpucontext) {
    if (!v.initialised) return -ENODATA;
    if (handle === 0n) return 0;
    const dst = ptrArg(handle);
    if (dst === undefined) return -EFAULT;
    c.mem.writeBytes(dst, v.exportContext());
    return 0;
  }
  if (d.id === c.domid) return -EINVAL;
  if (handle === 0n) {
    resetVcpu(m, v);
    return 0;
  }
  const src = ptrArg(handle);
  if (src === undefined) return -EFAULT;
  return setContext(m, d, v, c.mem.readBytes(src, vcpu_guest_context.size));
}

function shadow(m: Machine, c: CallCtx, d: Domain, s: ViewOf<typeof xen_domctl_shadow_op>): number {
  const op = s.get('op');
  const pagesIn = s.get('pages');
  const bitmapVa = BigInt.asUintN(64, s.get('dirty_bitmap'));
  const wantsBitmap = (op === XEN_DOMCTL_SHADOW_OP_CLEAN || op === XEN_DOMCTL_SHADOW_OP_PEEK) && bitmapVa !== 0n;
  if (pagesIn > 1n << 32n) return -EINVAL;
  const pages = Number(pagesIn);
  const bitmap = wantsBitmap ? new Uint8Array(Math.ceil(pages / 8)) : null;
  const r = shadowOp(m.mmEnv, d.mem, { op, mode: s.get('mode'), bitmap, pages });
  if (r.rc !== 0) return r.rc;
  if (bitmap !== null) {
    const dst = ptrArg(bitmapVa);
    if (dst === undefined) return -EFAULT;
    c.mem.writeBytes(dst, bitmap);
  }
  s.set('pages', BigInt(r.pages));
  s.set('mb', r.mb);
  const stats = s.sub('stats');
  stats.set('fault_count', r.faultCount >>> 0);
  stats.set('dirty_count', r.dirtyCount >>> 0);
  return 0;
}

/** Page types of up to 1024 frames; each array slot is overwritten with its type, as Xen 4.17. */
function pageFrameInfo(m: Machine, c: CallCtx, d: Domain, p: ViewOf<typeof xen_domctl_getpageframeinfo3>): number {
  const num = p.get('num');
  if (num > BigInt(PFINFO_MAX)) return -E2BIG;
  const arr = ptrArg(p.get('array'));
  if (arr === undefined) return -EFAULT;
  const n = Number(num);
  const mfns: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = c.mem.getBigUint64(arr + 8 * i, true);
    mfns.push(v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
  }
  const types = getPageFrameInfo(m.mmEnv, d.id, mfns);
  for (let i = 0; i < n; i++) c.mem.setBigUint64(arr + 8 * i, BigInt(types[i]!), true);
  return 0;
}

/** xenport's set_kernel: bind a registered image; a non-zero hash must match. */
function setKernel(m: Machine, d: Domain, k: ViewOf<typeof xen_domctl_set_kernel>): number {
  if (d.isHost) return -EINVAL;
  const name = k.getString('name');
  const img = m.image(name);
  if (img === undefined) return -ENOENT;
  const want = new Uint8Array(XEN_DOMCTL_KERNEL_HASH_LEN);
  for (let i = 0; i < want.length; i++) want[i] = k.getAt('version_hash', i);
  const have = imageHashBytes(img.versionHash);
  if (want.some((b) => b !== 0) && want.some((b, i) => b !== have[i])) {
    m.log.xen(`d${d.id}: kernel ${name} has hash ${img.versionHash}, not the one asked for`);
    return -EINVAL;
  }
  for (let i = 0; i < have.length; i++) k.setAt('version_hash', i, have[i]!);
  d.kernel = img;
  return 0;
}

/** A KernelImage's versionHash as the 32 bytes of set_kernel (hex SHA-256, else hashed). */
export function imageHashBytes(hash: string): Uint8Array {
  if (/^[0-9a-f]{64}$/i.test(hash)) return Uint8Array.from(Buffer.from(hash, 'hex'));
  return Uint8Array.from(createHash('sha256').update(hash).digest());
}


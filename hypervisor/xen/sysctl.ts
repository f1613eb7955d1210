/*
 * XEN_SYSCTL_*: machine-wide queries for the toolstack (privileged only):
 * the console ring (`xl dmesg`), physinfo (`xl info`), and
 * getdomaininfolist (`xl list`).
 */
import { bytesMem } from '../public/layout.js';
import {
  XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_readconsole, XEN_SYSCTL_physinfo, XEN_SYSCTL_getdomaininfolist,
  XEN_SYSCTL_PHYSCAP_pv, XEN_SYSCTL_PHYSCAP_gnttab_v1, xen_sysctl, xen_domctl_getdomaininfo,
} from '../public/domctl.js';
import { EACCES, EPERM, ENOSYS, EFAULT, EINVAL } from '../public/errno.js';
import { guestAccess, ptrArg, type HypercallHandler } from './hcall.js';
import { fillDomainInfo } from './domctl.js';
import type { Machine } from './machine.js';

/** Most entries one getdomaininfolist call returns. */
const MAX_INFOLIST = 1024;

export function makeSysctl(m: Machine): HypercallHandler {
  return (c, a1) => guestAccess(() => {
    if (!c.privileged) return -EPERM;
    const va = ptrArg(a1);
    if (va === undefined) return -EFAULT;
    const raw = c.mem.readBytes(va, xen_sysctl.size);
    const op = xen_sysctl.view(bytesMem(raw), 0);
    if (op.get('interface_version') !== XEN_SYSCTL_INTERFACE_VERSION) return -EACCES;
    const u = op.sub('u');
    let rc: number;
    switch (op.get('cmd')) {
      case XEN_SYSCTL_readconsole: {
        const r = u.sub('readconsole');
        const buf = ptrArg(r.get('buffer'));
        if (buf === undefined) return -EFAULT;
        const { text, end } = m.log.readRing(r.get('incremental') !== 0 ? r.get('index') : undefined, r.get('count'));
        c.mem.writeBytes(buf, Buffer.from(text, 'latin1'));
        r.set('count', text.length);
        r.set('index', end >>> 0);
        if (r.get('clear') !== 0) m.log.clearRing();
        rc = 0;
        break;
      }
      case XEN_SYSCTL_physinfo: {
        const p = u.sub('physinfo');
        p.set('threads_per_core', 1);
        p.set('cores_per_socket', 1);
        p.set('nr_cpus', 1);
        p.set('max_cpu_id', 0);
        p.set('nr_nodes', 1);
        p.set('max_node_id', 0);
        p.set('cpu_khz', m.clock.tscKhz);
        p.set('capabilities', XEN_SYSCTL_PHYSCAP_pv | XEN_SYSCTL_PHYSCAP_gnttab_v1);
        p.set('total_pages', BigInt(m.frames.nrFrames));
        p.set('free_pages', BigInt(m.frames.freeFrames));
        p.set('scrub_pages', 0n);
        p.set('outstanding_pages', 0n);
        p.set('max_mfn', BigInt(m.frames.nrFrames - 1));
        rc = 0;
        break;
      }
      case XEN_SYSCTL_getdomaininfolist: {
        const l = u.sub('getdomaininfolist');
        const max = l.get('max_domains');
        if (max > MAX_INFOLIST) return -EINVAL;
        const buf = ptrArg(l.get('buffer'));
        if (buf === undefined) return -EFAULT;
        const first = l.get('first_domain');
        const doms = m.domains.filter((d) => d.id >= first).slice(0, max);
        const size = xen_domctl_getdomaininfo.size;
        const out = new Uint8Array(size * doms.length);
        doms.forEach((d, i) => fillDomainInfo(d, xen_domctl_getdomaininfo.view(bytesMem(out), i * size)));
        c.mem.writeBytes(buf, out);
        l.set('num_domains', doms.length);
        rc = 0;
        break;
      }
      default:
        return -ENOSYS;
    }
    c.mem.writeBytes(va, raw);
    return rc;
  });
}

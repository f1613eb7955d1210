import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import {
  XEN_DOMCTL_PFINFO_L1TAB, XEN_DOMCTL_PFINFO_L2TAB, XEN_DOMCTL_PFINFO_L4TAB, XEN_DOMCTL_PFINFO_LPINTAB,
  XEN_DOMCTL_PFINFO_NOTAB, XEN_DOMCTL_PFINFO_XTAB, XEN_DOMCTL_getpageframeinfo3, XEN_DOMCTL_getdomaininfo,
  XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, xen_domctl,
} from '../../hypervisor/public/domctl.js';
import { __HYPERVISOR_domctl } from '../../hypervisor/public/xen.js';
import { E2BIG, EACCES, EINVAL, ENOENT, ENOMEM } from '../../hypervisor/public/errno.js';
import { helloKernel, spinKernel } from '../kernels/basic.js';
import { build, variable } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 16 * 1024 * 1024 });

test('getpageframeinfo3 tags data pages, page tables (pinned L4) and frames of others', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true });
  const other = build(m, spinKernel, { paused: true });
  const l2 = b.p2m[b.p2m.length - 3]!;
  const types = m.xc.getPageFrameInfo(b.domid, [b.p2m[0]!, b.l1s[0]!, l2, b.l4, other.p2m[0]!, 0]);
  if (typeof types === 'number') return t.fail(String(types));
  t.deepEqual([...types], [
    XEN_DOMCTL_PFINFO_NOTAB,
    XEN_DOMCTL_PFINFO_L1TAB,
    XEN_DOMCTL_PFINFO_L2TAB,
    (XEN_DOMCTL_PFINFO_L4TAB | XEN_DOMCTL_PFINFO_LPINTAB) >>> 0,
    XEN_DOMCTL_PFINFO_XTAB,
    XEN_DOMCTL_PFINFO_XTAB,
  ]);
  // Batches above 1024 are refused, as Xen.
  const h = m.xc.h;
  h.arena.reset();
  const op = xen_domctl.view(h.arena, h.arena.alloc(xen_domctl.size));
  op.set('cmd', XEN_DOMCTL_getpageframeinfo3);
  op.set('interface_version', XEN_DOMCTL_INTERFACE_VERSION);
  op.set('domain', b.domid);
  op.sub('u').sub('getpageframeinfo3').set('num', 1025n);
  op.sub('u').sub('getpageframeinfo3').set('array', BigInt(h.arena.alloc(8)));
  t.is(h.call(__HYPERVISOR_domctl, op.base), -E2BIG);
});

test('a domctl with another interface version is -EACCES', (t) => {
  const m = small();
  const h = m.xc.h;
  h.arena.reset();
  const op = xen_domctl.view(h.arena, h.arena.alloc(xen_domctl.size));
  op.set('cmd', XEN_DOMCTL_getdomaininfo);
  op.set('interface_version', XEN_DOMCTL_INTERFACE_VERSION - 1);
  t.is(h.call(__HYPERVISOR_domctl, op.base), -EACCES);
});

test('log-dirty: pages the guest writes show up in the bitmap; CLEAN resets it', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true });
  t.is(m.xc.enableLogDirty(b.domid), 0);
  t.is(m.xc.enableLogDirty(b.domid), -EINVAL, 'already on');
  t.is(m.xc.dirtyBitmap(b.domid, b.nrPages) instanceof Uint8Array, true);
  m.xc.unpauseDomain(b.domid);
  m.runUntil(() => variable(m, b, 0) >= 3, 100);
  const bits = m.xc.dirtyBitmap(b.domid, b.nrPages);
  if (typeof bits === 'number') return t.fail(String(bits));
  t.is(bits[0]! & 1, 1, 'PFN 0 (the mailbox the guest counts in) is dirty');
  t.is(bits[1]! & 0xff, 0, 'PFN 8..15 untouched');
  m.xc.pauseDomain(b.domid);
  const again = m.xc.dirtyBitmap(b.domid, b.nrPages) as Uint8Array;
  t.true(again.every((x) => x === 0), 'clean after CLEAN with the guest paused');
  t.is(m.xc.disableLogDirty(b.domid), 0);
  t.is(m.xc.shadowOp(b.domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY).rc, 0);
});

test('set_kernel: unknown name -ENOENT, wrong hash -EINVAL, the right hash binds', (t) => {
  const m = small();
  m.registerImage(helloKernel);
  const id = m.xc.createDomain();
  t.is(m.xc.setKernel(id, 'no-such-kernel'), -ENOENT);
  t.is(m.xc.setKernel(id, 'hello', spinKernel.versionHash), -EINVAL);
  t.is(m.domain(id)!.kernel, null);
  t.is(m.xc.setKernel(id, 'hello', helloKernel.versionHash), 0);
  t.is(m.domain(id)!.kernel, helloKernel);
  t.throws(() => m.registerImage({ ...spinKernel, name: 'hello' }), { message: /different kernel image/ });
});

test('max_mem bounds populate_physmap', (t) => {
  const m = small();
  const id = m.xc.createDomain();
  t.is(m.xc.setMaxMem(id, 16), 0);
  t.is(m.xc.getDomainInfo(id)!.maxPages, 4);
  t.is(m.xc.populatePhysmap(id, [0, 1, 2, 3, 4, 5]), -ENOMEM, 'a short count');
  t.is(m.xc.getDomainInfo(id)!.totPages, 4);
});

test('a domain without a kernel image crashes on its first entry, cleanly', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true });
  b.d.kernel = null;
  m.xc.unpauseDomain(b.domid);
  m.runUntil(() => b.d.shuttingDown, 10);
  t.regex(b.d.crash?.reason ?? '', /no kernel image/);
});

/*
 * Guest workloads for the suspend tests, linked into a netbsd image and run
 * by init from `workload=<name>`. State lives in init's lwp frame and in
 * kmem; everything is reported on the console, one line per fact, so the
 * host side can check it from the transcript:
 *
 *   susp: gref <ref> mfn <mfn>      a page of ours granted to dom0 read-only,
 *                                   filled with GRANT_PATTERN (also in data/gref)
 *   susp: tick <n> t=<ns>           every TICK_EVERY ticks: guest time
 *   susp: BACKWARDS ...             guest time went back (never expected)
 *   susp: parked                    the loop ran while a suspend was under way and
 *                                   parked until it was over
 *   susp: resumed kind=<k> gen=<g> cancels=<c> ports=<p> masked=<m> inuse=<i>
 *                                   the first time the loop runs after a suspend
 *                                   (or a refused one): how it ended (XEN_RESUME_*),
 *                                   the event channels bound, how many of those
 *                                   with a handler are masked, grant refs in use
 *   susp: pong <value>              data/ping changed; its value went to data/pong
 *
 * After a restore (kind RESTORED) the old grant ref is void: the loop
 * grants the page again and publishes the new ref, as a driver would.
 *
 * `susprefuse` adds a device under mainbus0 whose pmf suspend refuses while
 * data/refuse is not "no" (read at attach and on every watch event).
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, u32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_frame } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf, aprint_normal } from '../../sys/kern/subr_prf.js';
import { config_cfdata_attach, device_lookup, device_private } from '../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../sys/kern/kern_pmf.js';
import { uvm_pagealloc } from '../../sys/uvm/uvm_page.js';
import { kva_to_pfn } from '../../arch/xen/include/vmparam.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { hypervisor_attach_child } from '../../arch/xen/xen/hypervisor.js';
import { xengnt_grant_access, xengnt_stats } from '../../arch/xen/xen/xengnt.js';
import { evtchn_list } from '../../arch/xen/xen/evtchn.js';
import { xen_global_systime_ns } from '../../arch/xen/xen/xen_clock.js';
import { xpmap_ptom } from '../../arch/xen/x86/x86_xpmap.js';
import { xen_suspending, xen_suspend_park, xen_resume_kind, xen_resume_generation, xen_suspend_stats } from '../../arch/xen/xen/xen_suspend.js';
import { XEN_RESUME_RESTORED } from '../../arch/xen/include/xen_suspend.js';
import { xs_read, xs_write, xs_result, xs_write_async } from '../../arch/xen/xenbus/xenbus_xs.js';
import { xenbus_watch_path_async } from '../../arch/xen/xenbus/xenbus_watch.js';

/** What the granted page holds, byte i. */
export function grantPattern(i: number): number {
  return (i * 7 + 0x5a) & 0xff;
}

/** Ticks between two tick lines. */
export const TICK_EVERY = 20;

/*
 * struct sus_frame {           // overlaid on init's l_frame
 *     uint64_t sf_page;        // the granted page (KVA)
 *     uint64_t sf_last;        // guest time of the last tick line
 *     uint32_t sf_ref;         // its grant ref
 *     uint32_t sf_n;           // tick lines so far
 *     uint32_t sf_gen;         // restore generation the ref belongs to
 *     uint32_t sf_seen;        // suspends (made or refused) the loop has reported
 * };
 */
const sus_frame = struct('struct sus_frame', {
  sf_page: u64,
  sf_last: u64,
  sf_ref: u32,
  sf_n: u32,
  sf_gen: u32,
  sf_seen: u32,
});

function sf(cpu: GuestCpu) {
  return sus_frame.view(cpu.mem, lwp_frame(cpu));
}

/* struct susrefuse_softc { uint32_t sr_refuse; }: the device that refuses while sr_refuse != 0. */
const susrefuse_softc = struct('struct susrefuse_softc', { sr_refuse: u32 });

function susrefuse_sc(cpu: GuestCpu): number {
  const dev = device_lookup(cpu, 'susrefuse', 0);
  return dev === 0 ? 0 : device_private(cpu, dev);
}

export const suspendWorkloads = ksymtab({
  /** Grant the page to dom0 (read-only) and say which ref. */
  sus_grant(cpu: GuestCpu): void {
    const f = sf(cpu);
    const page = Number(f.get('sf_page'));
    const mfn = xpmap_ptom(cpu, kva_to_pfn(page));
    const ref = xengnt_grant_access(cpu, 0, mfn, true);
    f.set('sf_ref', ref < 0 ? 0 : ref);
    f.set('sf_gen', xen_resume_generation(cpu));
    printf(cpu, 'susp: gref %d mfn %lu\n', ref, mfn);
    xs_write_async(cpu, 'data/gref', String(ref));
  },

  workload_susp(cpu: GuestCpu): void {
    const f = sf(cpu);
    const page = uvm_pagealloc(cpu);
    for (let i = 0; i < 4096; i++) cpu.mem.setUint8(page + i, grantPattern(i));
    f.set('sf_page', BigInt(page));
    f.set('sf_last', xen_global_systime_ns(cpu));
    kcallGrant(cpu);
    if (xenbus_watch_path_async(cpu, 'data/ping', 'sus_ping', 0) === 0) printf(cpu, 'susp: cannot watch data/ping\n');
    kpause(cpu, 'susp', TICK_EVERY, 'sus_loop');
  },

  /** The loop: park while a suspend is under way, report one that ended, a tick line. */
  sus_loop(cpu: GuestCpu): void {
    if (xen_suspending(cpu)) {
      printf(cpu, 'susp: parked\n');
      xen_suspend_park(cpu, 'sus_loop');
      return;
    }
    const f = sf(cpu);
    const st = xen_suspend_stats(cpu);
    if (st.suspends + st.refusals !== f.get('sf_seen')) {
      f.set('sf_seen', st.suspends + st.refusals);
      const ports = evtchn_list(cpu);
      const masked = ports.filter((p) => p.handler !== 0 && !p.unmasked).length;
      printf(cpu, 'susp: resumed kind=%u gen=%u cancels=%u ports=%u masked=%u inuse=%u\n', xen_resume_kind(cpu),
        xen_resume_generation(cpu), st.cancels, ports.length, masked, xengnt_stats(cpu).inuse);
      // After a restore the ref we published is void: grant the page again.
      if (xen_resume_kind(cpu) === XEN_RESUME_RESTORED && f.get('sf_gen') !== xen_resume_generation(cpu)) kcallGrant(cpu);
    }
    const now = xen_global_systime_ns(cpu);
    const last = f.get('sf_last');
    if (now < last) printf(cpu, 'susp: BACKWARDS %lu < %lu\n', now, last);
    f.set('sf_last', now);
    const n = f.get('sf_n') + 1;
    f.set('sf_n', n);
    printf(cpu, 'susp: tick %u t=%lu\n', n, now);
    kpause(cpu, 'susp', TICK_EVERY, 'sus_loop');
  },

  /** data/ping changed (a watch, on the xenbus thread): echo it to data/pong. */
  sus_ping(cpu: GuestCpu): void {
    xs_read(cpu, 0, 'data/ping', 'sus_ping_read');
  },
  sus_ping_read(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    if (r.error !== 0 || r.value === '') return;
    xs_write(cpu, 0, 'data/pong', r.value, 'sus_ping_written');
    const sc = susrefuse_sc(cpu);
    if (sc !== 0) susrefuse_softc.view(cpu.mem, sc).set('sr_refuse', r.value === 'accept' ? 0 : 1);
  },
  sus_ping_written(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'susp: pong %s\n', r.error === 0 ? 'ok' : `error ${r.error}`);
  },

  /** susp, plus a device under mainbus0 that refuses to suspend (until data/ping = "accept"). */
  workload_susprefuse(cpu: GuestCpu): void {
    config_cfdata_attach(cpu, [{ name: 'susrefuse', atname: 'mainbus', match: 'susrefuse_match', attach: 'susrefuse_attach', devsize: susrefuse_softc.size }]);
    const mb = device_lookup(cpu, 'mainbus', 0);
    if (mb === 0 || hypervisor_attach_child(cpu, mb, 'susrefuse') === 0) printf(cpu, 'susp: no susrefuse device\n');
    suspendWorkloads.workload_susp(cpu);
  },
  susrefuse_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
    let name = '';
    for (let i = 0; i < 16; i++) {
      const c = cpu.mem.getUint8(aux + i);
      if (c === 0) break;
      name += String.fromCharCode(c);
    }
    return name === 'susrefuse' ? 1 : 0;
  },
  susrefuse_attach(cpu: GuestCpu, _parent: number, self: number): void {
    aprint_normal(cpu, ': refuses to suspend\n');
    susrefuse_softc.view(cpu.mem, device_private(cpu, self)).set('sr_refuse', 1);
    pmf_device_register(cpu, self, 'susrefuse_suspend', 'susrefuse_resume');
  },
  susrefuse_suspend(cpu: GuestCpu, dev: number): boolean {
    const refuse = susrefuse_softc.view(cpu.mem, device_private(cpu, dev)).get('sr_refuse') !== 0;
    printf(cpu, 'susrefuse0: suspend %s\n', refuse ? 'refused' : 'accepted');
    return !refuse;
  },
  susrefuse_resume(cpu: GuestCpu): boolean {
    printf(cpu, 'susrefuse0: resumed\n');
    return true;
  },
  /** What pmf runs instead of susrefuse_resume after a cancelled suspend (the naming convention). */
  susrefuse_resume_cancelled(cpu: GuestCpu): boolean {
    printf(cpu, 'susrefuse0: resumed (cancelled)\n');
    return true;
  },
});

function kcallGrant(cpu: GuestCpu): void {
  suspendWorkloads.sus_grant(cpu);
}

/** The netbsd kernel with these workloads linked after it. */
export function suspendImage(): LinkedKernelImage {
  return defineNetbsdImage([suspendWorkloads], 'netbsd-suspend');
}

/*
 * Test workloads: kernel text linked into a netbsd image with
 * defineNetbsdImage([bootTestWorkloads]) and started by init from the
 * command line (`workload=<name>`). They follow the guest rules: state in
 * guest memory (the lwp frame, kmem), nothing kept in JS between entries,
 * continuation style. They report on the console, which the tests read.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, u32, u64 } from '../../hypervisor/public/layout.js';
import { EBUSY } from '../../hypervisor/public/errno.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { kpause, tsleep, wakeup } from '../../sys/kern/kern_synch.js';
import { lwp_create, lwp_frame } from '../../sys/kern/kern_lwp.js';
import { getticks } from '../../sys/kern/kern_clock.js';
import { kmem_zalloc, kmem_alloc, kmem_free } from '../../sys/kern/subr_kmem.js';
import { uvm_pagealloc } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { kva_to_pfn } from '../../arch/xen/include/vmparam.js';
import { xen_global_systime_ns, xen_wallclock_ns, NS_PER_SEC } from '../../arch/xen/xen/xen_clock.js';
import { evtchn_alloc_unbound, event_set_handler, hypervisor_unmask_event, hypervisor_notify_via_evtchn } from '../../arch/xen/xen/evtchn.js';
import { xengnt_grant_access, xengnt_revoke_access } from '../../arch/xen/xen/xengnt.js';
import { xencons_read, xencons_input_wchan } from '../../arch/xen/xen/xencons.js';
import { xpmap_ptom } from '../../arch/xen/x86/x86_xpmap.js';

/* clocktest: one sample per tick; reports monotonicity, ticks vs elapsed time, wall clock. */
const clk = struct('struct clocktest_frame', {
  n: u32, backwards: u32, first: u64, last: u64, firstTicks: u64, maxStep: u64,
});
export const CLOCKTEST_SAMPLES = 300;

/* evtest: the handler's state lives in a kmem block passed as its arg. */
const evs = struct('struct evtest_softc', { count: u32, port: u32 });

/* gnttest: state in the lwp frame. */
const gnt = struct('struct gnttest_frame', { ref: u32, tries: u32, page: u64, busyShown: u32 });

/* echo: a line buffer in the frame. */
const ECHO_MAX = 128;
const echo = struct('struct echo_frame', { len: u32 });

/* flood: more output in one step than the console ring holds. */
export const FLOOD_LINES = 300;
export function floodLine(i: number): string {
  return `flood ${i.toString().padStart(4, '0')} ${'abcdefghij'.repeat(3)}`;
}

/* eqload: counters shared by its threads, in kmem. */
const eq = struct('struct eqload_state', { produced: u32, consumed: u32, grants: u32, port: u32, events: u32, spins: u32 });

export const bootTestWorkloads = ksymtab({
  workload_clocktest(cpu: GuestCpu, _arg: number, _err: number): void {
    const f = clk.view(cpu.mem, lwp_frame(cpu));
    const now = xen_global_systime_ns(cpu);
    const n = f.get('n');
    if (n === 0) {
      f.set('first', now);
      f.set('firstTicks', BigInt(getticks(cpu)));
    } else {
      const last = f.get('last');
      if (now < last) f.set('backwards', f.get('backwards') + 1);
      else if (now - last > f.get('maxStep')) f.set('maxStep', now - last);
    }
    // Several reads in one step must not go backwards either.
    const again = xen_global_systime_ns(cpu);
    if (again < now) f.set('backwards', f.get('backwards') + 1);
    f.set('last', again);
    f.set('n', n + 1);
    if (n + 1 < CLOCKTEST_SAMPLES) {
      kpause(cpu, 'clocktest', 1, 'workload_clocktest');
      return;
    }
    const wall = xen_wallclock_ns(cpu);
    printf(cpu, 'clocktest: %u samples, %u backwards, %lu ticks in %lu us, max step %lu us, wall %lu.%09lu\n',
      n + 1, f.get('backwards'), getticks(cpu) - Number(f.get('firstTicks')), (again - f.get('first')) / 1000n,
      f.get('maxStep') / 1000n, wall / NS_PER_SEC, wall % NS_PER_SEC);
  },

  workload_evtest(cpu: GuestCpu, _arg: number, _err: number): void {
    const sc = kmem_zalloc(cpu, evs.size);
    const port = evtchn_alloc_unbound(cpu, 0);
    evs.view(cpu.mem, sc).set('port', port);
    event_set_handler(cpu, port, 'evtest_intr', sc, 'evtest');
    hypervisor_unmask_event(cpu, port);
    printf(cpu, 'evtest: port %u\n', port);
  },
  evtest_intr(cpu: GuestCpu, sc: number, port: number): void {
    const v = evs.view(cpu.mem, sc);
    v.set('count', v.get('count') + 1);
    printf(cpu, 'evtest: event %u on port %u (bound %u)\n', v.get('count'), port, v.get('port'));
  },

  workload_gnttest(cpu: GuestCpu, _arg: number, _err: number): void {
    const f = gnt.view(cpu.mem, lwp_frame(cpu));
    const page = uvm_pagealloc(cpu, UVM_KMF_ZERO);
    for (let i = 0; i < 16; i++) cpu.mem.setUint8(page + i, 0xa0 + i);
    const mfn = xpmap_ptom(cpu, kva_to_pfn(page));
    const ref = xengnt_grant_access(cpu, 0, mfn, false);
    f.set('ref', ref);
    f.set('page', BigInt(page));
    printf(cpu, 'gnttest: ref %d mfn %lu\n', ref, mfn);
    kpause(cpu, 'gnttest', 5, 'gnttest_revoke');
  },
  gnttest_revoke(cpu: GuestCpu, _arg: number, _err: number): void {
    const f = gnt.view(cpu.mem, lwp_frame(cpu));
    const rc = xengnt_revoke_access(cpu, f.get('ref'));
    f.set('tries', f.get('tries') + 1);
    if (rc === -EBUSY) {
      if (f.get('busyShown') === 0) printf(cpu, 'gnttest: ref %u busy\n', f.get('ref'));
      f.set('busyShown', 1);
      kpause(cpu, 'gnttest', 1, 'gnttest_revoke');
      return;
    }
    printf(cpu, 'gnttest: ref %u revoked (%d) after %u tries\n', f.get('ref'), rc, f.get('tries'));
  },

  workload_echo(cpu: GuestCpu, _arg: number, _err: number): void {
    printf(cpu, 'echo: ready\n');
    tsleep(cpu, xencons_input_wchan(cpu), 0, 'echo_read', 'ttyin');
  },
  echo_read(cpu: GuestCpu, _arg: number, _err: number): void {
    const fr = lwp_frame(cpu);
    const f = echo.view(cpu.mem, fr);
    const buf = fr + 8;
    for (;;) {
      let len = f.get('len');
      const n = xencons_read(cpu, buf + len, 1);
      if (n === 0) break;
      len++;
      const c = cpu.mem.getUint8(buf + len - 1);
      if (c === 0x0a || len >= ECHO_MAX) {
        let line = '';
        for (let i = 0; i < len - 1; i++) line += String.fromCharCode(cpu.mem.getUint8(buf + i));
        printf(cpu, 'echo: %s\n', line);
        len = 0;
      }
      f.set('len', len);
    }
    tsleep(cpu, xencons_input_wchan(cpu), 0, 'echo_read', 'ttyin');
  },

  workload_flood(cpu: GuestCpu, _arg: number, _err: number): void {
    for (let i = 0; i < FLOOD_LINES; i++) printf(cpu, '%s\n', floodLine(i));
    printf(cpu, 'flood: done\n');
  },

  workload_eqload(cpu: GuestCpu, _arg: number, _err: number): void {
    const st = kmem_zalloc(cpu, eq.size);
    const port = evtchn_alloc_unbound(cpu, 0);
    eq.view(cpu.mem, st).set('port', port);
    event_set_handler(cpu, port, 'eq_intr', st, 'eqload');
    hypervisor_unmask_event(cpu, port);
    lwp_create(cpu, 'producer', 'eq_producer', st);
    lwp_create(cpu, 'consumer', 'eq_consumer', st);
    lwp_create(cpu, 'granter', 'eq_granter', st);
    lwp_create(cpu, 'spinner', 'eq_spinner', st);
    printf(cpu, 'eqload: port %u\n', port);
  },
  eq_producer(cpu: GuestCpu, st: number, _err: number): void {
    const v = eq.view(cpu.mem, st);
    const n = v.get('produced') + 1;
    v.set('produced', n);
    printf(cpu, 'P%u@%u ', n, getticks(cpu));
    wakeup(cpu, st);
    kpause(cpu, 'produce', 1 + (n % 4), 'eq_producer');
  },
  eq_consumer(cpu: GuestCpu, st: number, err: number): void {
    const v = eq.view(cpu.mem, st);
    v.set('consumed', v.get('consumed') + 1);
    if (err !== 0) printf(cpu, 'C-timeout@%u\n', getticks(cpu));
    else if (v.get('consumed') % 5 === 0) printf(cpu, 'C%u t=%lu\n', v.get('produced'), xen_global_systime_ns(cpu) / 1000n);
    tsleep(cpu, st, 3, 'eq_consumer', 'eqwait');
  },
  eq_granter(cpu: GuestCpu, st: number, _err: number): void {
    const v = eq.view(cpu.mem, st);
    const page = uvm_pagealloc(cpu);
    const ref = xengnt_grant_access(cpu, 0, xpmap_ptom(cpu, kva_to_pfn(page)), (v.get('grants') & 1) === 1);
    const rc = xengnt_revoke_access(cpu, ref);
    cpu.mem.setUint32(page, ref, true);
    v.set('grants', v.get('grants') + 1);
    if (v.get('grants') % 10 === 0) printf(cpu, 'G%u ref %d rc %d\n', v.get('grants'), ref, rc);
    // Notify ourselves through dom0 if it bound the port: an event either way is deterministic.
    hypervisor_notify_via_evtchn(cpu, v.get('port'));
    kpause(cpu, 'grant', 7, 'eq_granter');
  },
  eq_spinner(cpu: GuestCpu, st: number, _err: number): void {
    const v = eq.view(cpu.mem, st);
    const f = lwp_frame(cpu);
    const s = v.get('spins');
    const old = Number(cpu.mem.getBigUint64(f, true));
    if (old !== 0) kmem_free(cpu, old, 40 + (s % 7) * 90);
    cpu.mem.setBigUint64(f, BigInt(kmem_alloc(cpu, 40 + ((s + 1) % 7) * 90)), true);
    v.set('spins', s + 1);
    kpause(cpu, 'spin', 2, 'eq_spinner');
  },
  eq_intr(cpu: GuestCpu, st: number, _port: number): void {
    const v = eq.view(cpu.mem, st);
    v.set('events', v.get('events') + 1);
    wakeup(cpu, st);
  },
});

/** A workload that cheats: its count is a JS closure variable, not guest memory. */
export function leakyWorkloads(): typeof leakyShape {
  let n = 0;
  return ksymtab({
    workload_leaky(cpu: GuestCpu, _arg: number, _err: number): void {
      n++;
      printf(cpu, 'L%d\n', n);
      kpause(cpu, 'leaky', 2, 'workload_leaky');
    },
  });
}
const leakyShape = ksymtab({ workload_leaky(_cpu: GuestCpu, _arg: number, _err: number): void {} });

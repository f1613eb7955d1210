import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { __HYPERVISOR_sched_op } from '../../hypervisor/public/xen.js';
import { SCHEDOP_block } from '../../hypervisor/public/sched.js';
import { KERNBASE } from '../../arch/xen/include/vmparam.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create, lwp_exit, lwp_frame, lwp_list } from '../../sys/kern/kern_lwp.js';
import { tsleep, kpause, preempt, wakeup, wakeup_one } from '../../sys/kern/kern_synch.js';
import { getticks } from '../../sys/kern/kern_clock.js';
import { kmem_stats } from '../../sys/kern/subr_kmem.js';
import { KernelPanic } from '../../sys/kern/subr_prf.js';
import { kglobals, curlwp } from '../../sys/sys/kernel.js';
import { LSSLEEP, LSRUN } from '../../sys/sys/lwp.js';
import { PRI_KTHREAD } from '../../sys/sys/param.js';
import { EWOULDBLOCK } from '../../sys/sys/errno.js';
import { Harness, tlog, tlogRead } from './harness.js';

/** A wait channel: any address works as an identity. */
const W = KERNBASE + 0x3000;
const chr = (n: number): string => String.fromCharCode(n);

const threads = ksymtab({
  t_once(cpu: GuestCpu, arg: number): void {
    tlog(cpu, chr(arg));
  },
  t_sleeper(cpu: GuestCpu, arg: number): void {
    tlog(cpu, `s${chr(arg)} `);
    tsleep(cpu, W, 0, 't_sleeper_woke', 'testwait');
  },
  t_sleeper_woke(cpu: GuestCpu, arg: number, err: number): void {
    tlog(cpu, `w${chr(arg)}:${err} `);
  },
  t_waker(cpu: GuestCpu): void {
    tlog(cpu, 'W ');
    wakeup(cpu, W + 8);
    wakeup(cpu, W);
  },
  t_waker_one(cpu: GuestCpu): void {
    tlog(cpu, 'W1 ');
    wakeup_one(cpu, W);
  },
  t_timed(cpu: GuestCpu, timo: number): void {
    tsleep(cpu, W, timo, 't_timed_done');
  },
  t_pauser(cpu: GuestCpu, timo: number): void {
    kpause(cpu, 'pause', timo, 't_timed_done');
  },
  t_timed_done(cpu: GuestCpu, _arg: number, err: number): void {
    tlog(cpu, `T${err}@${getticks(cpu)} `);
  },
  t_pingpong(cpu: GuestCpu, arg: number): void {
    const f = lwp_frame(cpu);
    const n = cpu.mem.getUint32(f, true);
    tlog(cpu, `${chr(arg)}${n} `);
    cpu.mem.setUint32(f, n + 1, true);
    if (n < 2) preempt(cpu, 't_pingpong');
  },
  t_rsp(cpu: GuestCpu): void {
    tlog(cpu, cpu.regs.getVa('rsp') === lwp_frame(cpu) ? 'rsp=frame' : 'rsp?');
  },
  t_double_sleep(cpu: GuestCpu): void {
    tsleep(cpu, W, 0, 't_once');
    tsleep(cpu, W, 0, 't_once');
  },
  t_explicit_exit(cpu: GuestCpu): void {
    lwp_exit(cpu);
    tlog(cpu, 'x');
  },
});

const boot = (): Harness => Harness.boot({ extra: [threads] });
const mk = (h: Harness, cont: string, arg = 0, pri = PRI_KTHREAD): number => lwp_create(h.cpu, cont, cont, arg, pri);

test('highest priority runs first, FIFO among equals; a step that arranges nothing ends its thread', (t) => {
  const h = boot();
  const before = kmem_stats(h.cpu).inuse;
  mk(h, 't_once', 65);
  mk(h, 't_once', 66);
  mk(h, 't_once', 67, PRI_KTHREAD + 10);
  t.is(kglobals(h.cpu).get('kg_nlwp'), 3);
  t.is(h.run(10), 4, 'three steps, then the idle entry that blocks');
  t.is(tlogRead(h), 'CAB');
  t.is(kglobals(h.cpu).get('kg_nlwp'), 0);
  t.deepEqual(kmem_stats(h.cpu).inuse, before, 'finished lwps were freed');
  t.is(h.rip, 'cpu_idle');
  t.true(h.fake.blocked);
  const last = h.fake.hypercalls.at(-1);
  t.is(last?.nr, __HYPERVISOR_sched_op);
  t.deepEqual(last?.args.slice(0, 2), [BigInt(SCHEDOP_block), 0n], 'blocked with SCHEDOP_block');
});

test('wakeup wakes every sleeper on the channel in sleep order, with error 0; other channels are untouched', (t) => {
  const h = boot();
  for (const c of 'abc') mk(h, 't_sleeper', c.charCodeAt(0));
  mk(h, 't_waker');
  h.run(20);
  t.is(tlogRead(h), 'sa sb sc W wa:0 wb:0 wc:0 ');
});

test('wakeup_one wakes only the longest sleeper', (t) => {
  const h = boot();
  for (const c of 'ab') mk(h, 't_sleeper', c.charCodeAt(0));
  mk(h, 't_waker_one');
  h.run(20);
  t.is(tlogRead(h), 'sa sb W1 wa:0 ');
  const sleeping = lwp_list(h.cpu);
  t.is(sleeping.length, 1);
  t.like(sleeping[0], { name: 't_sleeper', stat: LSSLEEP, wchan: W, wmesg: 'testwait' });
});

test('a sleep with a timeout ends with EWOULDBLOCK exactly at its tick', (t) => {
  const h = boot();
  mk(h, 't_timed', 3);
  h.run(5);
  t.true(h.fake.blocked);
  h.tick(2);
  h.run(5);
  t.is(tlogRead(h), '', 'not yet at tick 2');
  h.tick();
  h.run(5);
  t.is(tlogRead(h), `T${EWOULDBLOCK}@3 `);
});

test('a wakeup before the timeout cancels the timeout callout', (t) => {
  const h = boot();
  mk(h, 't_timed', 10);
  h.run(5);
  t.is(kglobals(h.cpu).get('kg_ncallout'), 1);
  h.call('wakeup', W);
  h.fake.blocked = false;
  h.run(5);
  t.is(tlogRead(h), 'T0@0 ');
  t.is(kglobals(h.cpu).get('kg_ncallout'), 0);
  h.tick(20);
  h.run(5);
  t.is(tlogRead(h), 'T0@0 ', 'no second wakeup from a stale timeout');
});

test('kpause sleeps its ticks and ignores wakeups', (t) => {
  const h = boot();
  mk(h, 't_pauser', 2);
  h.run(5);
  h.call('wakeup', 0);
  h.tick();
  h.run(5);
  t.is(tlogRead(h), '');
  h.tick();
  h.run(5);
  t.is(tlogRead(h), `T${EWOULDBLOCK}@2 `);
});

test('preempt alternates equal-priority threads; state across steps lives in the lwp frame', (t) => {
  const h = boot();
  mk(h, 't_pingpong', 97);
  mk(h, 't_pingpong', 98);
  h.run(20);
  t.is(tlogRead(h), 'a0 b0 a1 b1 a2 b2 ');
});

test('while a step runs, curlwp is set and rsp points at its frame; afterwards neither', (t) => {
  const h = boot();
  mk(h, 't_rsp');
  const rsp = h.fake.regs.get('rsp');
  h.step();
  t.is(tlogRead(h), 'rsp=frame');
  t.is(curlwp(h.cpu), 0);
  t.is(h.fake.regs.get('rsp'), rsp);
  t.is(h.rip, 'mi_switch');
});

test('an idle vCPU resumes at cpu_idle and runs work that arrived meanwhile', (t) => {
  const h = boot();
  h.step();
  t.is(h.rip, 'cpu_idle');
  t.false(h.step(), 'blocked: the machine does not enter it');
  const l = mk(h, 't_once', 90);
  t.is(lwp_list(h.cpu)[0]?.stat, LSRUN);
  t.truthy(l);
  h.fake.blocked = false; // the event that made the work
  t.true(h.step());
  t.is(tlogRead(h), 'Z');
});

test('sleeping outside an lwp or twice in one step is a kernel bug', (t) => {
  const h = boot();
  t.throws(() => tsleep(h.cpu, W, 0, 't_once'), { instanceOf: KernelPanic, message: /not called from an lwp/ });
  const h2 = boot();
  mk(h2, 't_double_sleep');
  t.throws(() => h2.step(), { instanceOf: KernelPanic, message: /already gave up the cpu/ });
});

test('lwp_exit ends the thread after its step', (t) => {
  const h = boot();
  mk(h, 't_explicit_exit');
  h.run(3);
  t.is(tlogRead(h), 'x');
  t.is(kglobals(h.cpu).get('kg_nlwp'), 0);
});

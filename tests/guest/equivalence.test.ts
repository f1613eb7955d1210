/*
 * The save/restore property in miniature: a kernel's state is its memory
 * and registers, nothing else. Run a workload, copy memory + registers
 * into a fresh machine with a freshly linked image, and both must carry on
 * identically, byte for byte and character for character.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, record, u32 } from '../../hypervisor/public/layout.js';
import { ptr_get, ptr_set } from '../../sys/lib/libkern/libkern.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create, lwp_frame } from '../../sys/kern/kern_lwp.js';
import { tsleep, kpause, preempt, wakeup } from '../../sys/kern/kern_synch.js';
import { callout_init, callout_reset, callout_schedule } from '../../sys/kern/kern_timeout.js';
import { getticks } from '../../sys/kern/kern_clock.js';
import { kmem_zalloc, kmem_alloc, kmem_free } from '../../sys/kern/subr_kmem.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { msgbuf_read } from '../../sys/kern/subr_log.js';
import { callout } from '../../sys/sys/callout.js';
import { EWOULDBLOCK } from '../../sys/sys/errno.js';
import { Harness, testImage } from './harness.js';

/*
 * struct mailbox { u32 value; u32 seq; struct callout tick; }: shared by a
 * producer (kpause between items), a consumer (tsleep with a timeout on
 * the mailbox), a spinner that preempts itself and churns kmem, and a
 * periodic callout that prints and pokes the consumer.
 */
const mailbox = struct('struct mailbox', { value: u32, seq: u32, tick: record(callout) });
const MB_CALLOUT = mailbox.offsetOf('tick');
const MB_SIZE = mailbox.size;

const workload = ksymtab({
  w_producer(cpu: GuestCpu, mb: number): void {
    const f = lwp_frame(cpu);
    const n = cpu.mem.getUint32(f, true) + 1;
    cpu.mem.setUint32(f, n, true);
    mailbox.view(cpu.mem, mb).set('value', n * 10);
    printf(cpu, 'P%d@%d ', n, getticks(cpu));
    wakeup(cpu, mb);
    if (n < 25) kpause(cpu, 'produce', 1 + (n % 3), 'w_producer');
  },
  w_consumer(cpu: GuestCpu, mb: number, err: number): void {
    const v = mailbox.view(cpu.mem, mb);
    const f = lwp_frame(cpu);
    if (err === EWOULDBLOCK) {
      printf(cpu, 'C-timeout@%d ', getticks(cpu));
      cpu.mem.setUint32(f, cpu.mem.getUint32(f, true) + 1, true);
    } else {
      printf(cpu, 'C%d ', v.get('value'));
    }
    v.set('seq', v.get('seq') + 1);
    if (cpu.mem.getUint32(f, true) < 3) tsleep(cpu, mb, 4, 'w_consumer', 'mbox');
  },
  w_spinner(cpu: GuestCpu, _arg: number): void {
    const f = lwp_frame(cpu);
    const n = cpu.mem.getUint32(f, true);
    // Keep some kmem churn in flight across steps: the block lives in the frame.
    const old = ptr_get(cpu.mem, f + 8);
    if (old !== 0) kmem_free(cpu, old, 24 + (n % 5) * 100);
    const p = kmem_alloc(cpu, 24 + ((n + 1) % 5) * 100);
    ptr_set(cpu.mem, f + 8, p);
    cpu.mem.setUint32(f, n + 1, true);
    if (n % 7 === 0) printf(cpu, 's%d ', n);
    if (n < 60) preempt(cpu, 'w_spinner');
  },
  w_tick(cpu: GuestCpu, mb: number): void {
    printf(cpu, '[t%d] ', getticks(cpu));
    wakeup(cpu, mb);
    if (getticks(cpu) < 50) callout_schedule(cpu, mb + MB_CALLOUT, 3);
  },
});

function bootWorkload(): Harness {
  const h = Harness.boot({ extra: [workload] });
  const mb = kmem_zalloc(h.cpu, MB_SIZE);
  lwp_create(h.cpu, 'producer', 'w_producer', mb);
  lwp_create(h.cpu, 'consumer', 'w_consumer', mb);
  lwp_create(h.cpu, 'spinner', 'w_spinner', 0);
  callout_init(h.cpu, mb + MB_CALLOUT);
  callout_reset(h.cpu, mb + MB_CALLOUT, 3, 'w_tick', mb);
  return h;
}

function state(h: Harness): { regs: Record<string, string>; blocked: boolean } {
  return { regs: h.fake.regs.snapshot(), blocked: h.fake.blocked };
}

function sameBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

test('snapshot after k units, restore into a fresh machine: both continue identically', (t) => {
  const a = bootWorkload();
  a.drive(37);
  const snap = a.snapshot();
  const b = Harness.restore(testImage([workload]), snap);
  const outA = a.fake.console.length;
  a.drive(300);
  b.drive(300);
  t.is(b.fake.console, a.fake.console.slice(outA), 'same console output after the copy');
  t.deepEqual(state(b), state(a), 'same registers');
  t.is(sameBytes(a.fake.mem.bytes, b.fake.mem.bytes), -1, 'same memory, byte for byte');
  t.is(msgbuf_read(b.cpu), msgbuf_read(a.cpu));
  // The workload really did cross every mechanism.
  const out = a.fake.console;
  for (const want of ['P1@0', 'C10', 'C-timeout@', '[t3]', 's0 ', 's56 ', 'P25@']) t.true(out.includes(want), `output shows ${want}`);
  t.is(a.rip, 'cpu_idle', 'everything finished: the vCPU idles');
});

test('saving at any entry boundary gives the same end state as never saving', (t) => {
  const TOTAL = 260;
  const ref = bootWorkload();
  ref.drive(TOTAL);
  for (let k = 0; k <= TOTAL; k += 13) {
    const a = bootWorkload();
    a.drive(k);
    const b = Harness.restore(testImage([workload]), a.snapshot());
    b.drive(TOTAL - k);
    const out = a.fake.console + b.fake.console;
    if (out !== ref.fake.console || sameBytes(b.fake.mem.bytes, ref.fake.mem.bytes) !== -1) {
      t.fail(`restore after ${k} units diverged (first differing byte ${sameBytes(b.fake.mem.bytes, ref.fake.mem.bytes)})`);
      return;
    }
    t.deepEqual(state(b), state(ref), `registers after a save at ${k}`);
  }
});

/** A "kernel" that cheats: its state is a JS closure variable, not guest memory. */
function leakyTable() {
  let n = 0;
  return ksymtab({
    w_leaky(cpu: GuestCpu): void {
      n++;
      printf(cpu, 'L%d ', n);
      if (n < 10) preempt(cpu, 'w_leaky');
    },
  });
}

test('the check has teeth: state kept in JS does not survive the copy', (t) => {
  const a = Harness.boot({ extra: [leakyTable()] });
  lwp_create(a.cpu, 'leaky', 'w_leaky', 0);
  a.drive(4);
  const b = Harness.restore(testImage([leakyTable()]), a.snapshot());
  a.drive(4);
  b.drive(4);
  t.is(a.fake.console, 'L1 L2 L3 L4 L5 L6 L7 L8 ');
  t.is(b.fake.console, 'L1 L2 L3 L4 ', 'the restored machine lost the count: exactly what the lint and these tests forbid');
});

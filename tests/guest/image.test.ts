import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { KERNTEXT, KSYM_STRIDE, KERNBASE, KERNEL_IMAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { defineKernelImage } from '../../arch/xen/conf/image.js';
import { MI_KSYMTABS } from '../../sys/conf/files.js';
import { ksymtab, ksymaddr, KernelText } from '../../sys/kern/kern_ksyms.js';
import { fnv64_init, fnv64_update, fnv64_hex } from '../../sys/lib/libkern/libkern.js';
import { FakeCpu, FlatMem, TEST_NOTES, testImage } from './harness.js';
import * as libkern from '../../sys/lib/libkern/libkern.js';
import * as queue from '../../sys/sys/queue.js';
import * as kernel from '../../sys/sys/kernel.js';
import * as kern_ksyms from '../../sys/kern/kern_ksyms.js';
import * as init_main from '../../sys/kern/init_main.js';
import * as subr_log from '../../sys/kern/subr_log.js';
import * as subr_prf from '../../sys/kern/subr_prf.js';
import * as uvm_page from '../../sys/uvm/uvm_page.js';
import * as subr_kmem from '../../sys/kern/subr_kmem.js';
import * as kern_timeout from '../../sys/kern/kern_timeout.js';
import * as kern_clock from '../../sys/kern/kern_clock.js';
import * as kern_runq from '../../sys/kern/kern_runq.js';
import * as kern_lwp from '../../sys/kern/kern_lwp.js';
import * as kern_synch from '../../sys/kern/kern_synch.js';
import * as subr_autoconf from '../../sys/kern/subr_autoconf.js';
import * as kern_pmf from '../../sys/kern/kern_pmf.js';

// Two versions of "the same" function: only the text differs.
const v1 = ksymtab({
  t_answer: function t_answer(cpu: GuestCpu): void {
    cpu.regs.setNum('rax', 41);
  },
});
const v2 = ksymtab({
  t_answer: function t_answer(cpu: GuestCpu): void {
    cpu.regs.setNum('rax', 42);
  },
});
const other = ksymtab({
  t_other: function t_other(cpu: GuestCpu): void {
    cpu.regs.setVa('rax', ksymaddr(cpu, 't_answer'));
  },
});

const image = (tables: Parameters<typeof defineKernelImage>[0]['symbols'], entry = 't_answer') =>
  defineKernelImage({ name: 'hash-test', symbols: tables, entry, notes: TEST_NOTES });

test('the version hash is stable for the same text and link order', (t) => {
  const a = image([...MI_KSYMTABS, v1, other]);
  const b = image([...MI_KSYMTABS, v1, other]);
  t.is(a.versionHash, b.versionHash);
  t.regex(a.versionHash, /^[0-9a-f]{16}$/);
});

test('the version hash changes when one function text changes', (t) => {
  t.not(image([...MI_KSYMTABS, v1, other]).versionHash, image([...MI_KSYMTABS, v2, other]).versionHash);
});

test('the version hash changes with the link order and with the data layout', (t) => {
  const base = image([v1, other]);
  t.not(base.versionHash, image([other, v1]).versionHash, 'reordered tables move every address');
  const bigger = defineKernelImage({ name: 'x', symbols: [v1, other], entry: 't_answer', notes: TEST_NOTES, imageSize: KERNEL_IMAGE_SIZE + 4096 });
  t.not(base.versionHash, bigger.versionHash, 'imageSize is part of what a saved image depends on');
  const renamed = defineKernelImage({ name: 'other-name', symbols: [v1, other], entry: 't_answer', notes: TEST_NOTES });
  t.is(base.versionHash, renamed.versionHash, 'the image name is not kernel text');
});

test('symbols get KERNTEXT + 16*i in link order; names and entry follow', (t) => {
  const img = image([v1, other], 't_other');
  t.is<number | undefined, number | undefined>(img.text.addrOf('t_answer'), KERNTEXT);
  t.is<number | undefined, number | undefined>(img.text.addrOf('t_other'), KERNTEXT + KSYM_STRIDE);
  t.is<number, number>(img.entry, KERNTEXT + KSYM_STRIDE);
  t.is(img.symbolNames.get(KERNTEXT), 't_answer');
  t.is(img.symbols.size, 2);
  t.is(img.virtBase, KERNBASE);
  t.is(img.imageSize, KERNEL_IMAGE_SIZE);
  t.deepEqual(img.notes, TEST_NOTES);
});

test('a symbol defined twice, a missing entry and a bad imageSize are refused', (t) => {
  t.throws(() => new KernelText([v1, v2]), { message: /t_answer is defined twice/ });
  t.throws(() => image([v1], 'nope'), { message: /no entry symbol nope/ });
  t.throws(() => defineKernelImage({ name: 'x', symbols: [v1], entry: 't_answer', notes: TEST_NOTES, imageSize: 100 }), { instanceOf: RangeError });
});

test('the machine calls symbols with a bare GuestCpu; kernel code still finds other symbols', (t) => {
  const img = image([v1, other], 't_other');
  const cpu = new FakeCpu(new FlatMem(KERNBASE, new Uint8Array(4096)));
  const fn = img.symbols.get(img.entry);
  t.truthy(fn);
  fn!(cpu);
  t.is<number | undefined, number | undefined>(cpu.regs.getVa('rax'), img.text.addrOf('t_answer'), 'ksymaddr worked through the entry wrapper');
  t.throws(() => other.t_other(cpu), { message: /without kernel text/ }, 'called around the image, kernel code has no text');
});

test('the MI kernel links: the scheduler entry points are all present', (t) => {
  const img = testImage();
  for (const name of ['mi_switch', 'cpu_idle', 'hardclock', 'sleepq_timeout', 'panic_halt', 'pmf_system_suspend', 'config_found']) {
    t.not(img.text.addrOf(name), undefined, `${name} is a kernel symbol`);
  }
});

test('FNV-1a 64 matches a bigint reference', (t) => {
  const ref = (s: string): string => {
    let h = 0xcbf29ce484222325n;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      for (const b of [c & 0xff, c >>> 8]) {
        h ^= BigInt(b);
        h = BigInt.asUintN(64, h * 0x100000001b3n);
      }
    }
    return h.toString(16).padStart(16, '0');
  };
  for (const s of ['', 'a', 'kernel text', 'ünïcödé ☃', 'x'.repeat(1000)]) {
    const h = fnv64_init();
    fnv64_update(h, s);
    t.is(fnv64_hex(h), ref(s), JSON.stringify(s.slice(0, 20)));
  }
});

test('every exported MI kernel function is in the linked text (so the hash covers it)', (t) => {
  const linked = new Set<unknown>(testImage().text.entries.map((e) => e.fn));
  const modules = {
    libkern, queue, kernel, kern_ksyms, init_main, subr_log, subr_prf, uvm_page, subr_kmem,
    kern_timeout, kern_clock, kern_runq, kern_lwp, kern_synch, subr_autoconf, kern_pmf,
  };
  const missing: string[] = [];
  for (const [mod, ns] of Object.entries(modules)) {
    for (const [name, v] of Object.entries(ns)) {
      if (typeof v !== 'function' || /^class\b/.test(Function.prototype.toString.call(v))) continue;
      if (!linked.has(v)) missing.push(`${mod}.${name}`);
    }
  }
  t.deepEqual(missing, []);
});

import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { __HYPERVISOR_console_io } from '../../hypervisor/public/xen.js';
import { SHUTDOWN_crash } from '../../hypervisor/public/sched.js';
import { MSGBUF_VA } from '../../arch/xen/include/vmparam.js';
import { kvformat, printf, aprint_normal, aprint_verbose, aprint_debug, aprint_naive, cn_set_putc, panic, panicstr, KernelPanic, snprintf } from '../../sys/kern/subr_prf.js';
import { initmsgbuf, msgbuf_read } from '../../sys/kern/subr_log.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { AB_QUIET, AB_VERBOSE, AB_DEBUG } from '../../sys/sys/reboot.js';
import { Harness, tlog, tlogRead } from './harness.js';

test('kvformat: integers, widths, flags, precision and lengths behave like C', (t) => {
  const cases: [string, (number | bigint | string)[], string][] = [
    ['%d', [42], '42'],
    ['%d', [-42], '-42'],
    ['%5d|', [42], '   42|'],
    ['%-5d|', [42], '42   |'],
    ['%05d', [-42], '-0042'],
    ['%+d % d', [5, 5], '+5  5'],
    ['%u', [-1], '4294967295'],
    ['%lu', [-1], '18446744073709551615'],
    ['%x %X', [255, 255], 'ff FF'],
    ['%#x %#o', [255, 8], '0xff 010'],
    ['%x', [-1], 'ffffffff'],
    ['%llx', [-1n], 'ffffffffffffffff'],
    ['%lld', [-(2n ** 63n)], '-9223372036854775808'],
    ['%hhd %hd', [0x1ff, 0x18000], '-1 -32768'],
    ['%.3d', [7], '007'],
    ['%.0d|', [0], '|'],
    ['%08.3x', [0xab], '     0ab'],
    ['%*d|%-*d|', [4, 1, 3, 2], '   1|2  |'],
    ['%zu %jd %qd', [10, -3, 7], '10 -3 7'],
    ['%o', [8], '10'],
    ['%%', [], '%'],
    ['%c%c', [65, 'bc'], 'Ab'],
    ['%s/%5s/%-5s/%.2s', ['a', 'b', 'c', 'def'], 'a/    b/c    /de'],
    ['%s', [0], '(null)'],
    ['%p', [0x8880_0000_1000], '0xffff888000001000'],
    ['%p', [0x1234], '0x1234'],
    ['%d %d', [1], '1 0'],
    ['%y', [1], '%y'],
    ['100%', [], '100%'],
  ];
  for (const [fmt, args, want] of cases) t.is(kvformat(fmt, args), want, `printf("${fmt}", ${args.map(String).join(', ')})`);
});

test('%s with a number reads a C string from guest memory', (t) => {
  const h = Harness.boot();
  const va = MSGBUF_VA - 64;
  snprintf(h.cpu, va, 16, 'xencons%d', 0);
  printf(h.cpu, '[%s]\n', va);
  t.is(h.fake.console, '[xencons0]\n');
});

test('before a console exists printf uses HYPERVISOR_console_io, in chunks of the bounce buffer', (t) => {
  const h = Harness.boot();
  const line = 'x'.repeat(300);
  printf(h.cpu, '%s\n', line);
  t.is(h.fake.console, line + '\n');
  t.is(h.fake.hypercalls.filter((c) => c.nr === __HYPERVISOR_console_io).length, 2, '301 bytes through a 256-byte buffer');
});

const putc = ksymtab({
  t_cnputc(cpu: GuestCpu, c: number): void {
    tlog(cpu, String.fromCharCode(c));
  },
});

test('once the console driver installs its putc, text goes there and not to Xen', (t) => {
  const h = Harness.boot({ extra: [putc] });
  printf(h.cpu, 'early ');
  cn_set_putc(h.cpu, h.addr('t_cnputc'));
  printf(h.cpu, 'xencons %d\n', 0);
  t.is(h.fake.console, 'early ');
  t.is(tlogRead(h), 'xencons 0\n');
  t.is(msgbuf_read(h.cpu), 'early xencons 0\n', 'both reached the message buffer');
});

test('the message buffer keeps the most recent bytes when it wraps', (t) => {
  const h = Harness.boot();
  const va = MSGBUF_VA;
  initmsgbuf(h.cpu, va, 32 + 64); // 64-byte ring
  let all = '';
  for (let i = 0; i < 40; i++) {
    const s = `line ${i}\n`;
    printf(h.cpu, 'line %d\n', i);
    all += s;
  }
  t.is(msgbuf_read(h.cpu), all.slice(-63), 'a 64-byte ring holds the last 63 bytes');
  initmsgbuf(h.cpu, va, 32 + 64);
  t.is(msgbuf_read(h.cpu), all.slice(-63), 'initmsgbuf keeps a valid buffer of the same size (warm boot)');
  initmsgbuf(h.cpu, va, 32 + 128);
  t.is(msgbuf_read(h.cpu), '', 'a different size starts over');
});

test('aprint_* obey boothowto: quiet, verbose, debug', (t) => {
  const say = (how: number): [string, string] => {
    const h = Harness.boot({ boothowto: how });
    aprint_normal(h.cpu, 'N');
    aprint_verbose(h.cpu, 'V');
    aprint_debug(h.cpu, 'D');
    aprint_naive(h.cpu, 'n');
    return [h.fake.console, msgbuf_read(h.cpu)];
  };
  t.deepEqual(say(0), ['N', 'NV'], 'normal: verbose text is logged only');
  t.deepEqual(say(AB_QUIET), ['n', 'NVn'], 'quiet: only the naive text on the console');
  t.deepEqual(say(AB_VERBOSE), ['NV', 'NV']);
  t.deepEqual(say(AB_DEBUG), ['ND', 'NVD']);
});

test('panic prints, records panicstr, crashes the domain and unwinds', (t) => {
  const h = Harness.boot();
  t.is(panicstr(h.cpu), undefined);
  t.throws(() => panic(h.cpu, 'tick %d: %s', 7, 'bad'), { instanceOf: KernelPanic, message: 'panic: tick 7: bad' });
  t.is(h.fake.console, 'panic: tick 7: bad\n');
  t.is(panicstr(h.cpu), 'tick 7: bad');
  t.is(h.fake.shutdownReason, SHUTDOWN_crash);
  t.is(h.rip, 'panic_halt', 'if ever entered again, the vCPU crashes again');
  t.false(h.step(), 'a dead domain runs nothing');
});

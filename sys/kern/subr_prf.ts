/*
 * Kernel printf, the aprint_*() family for autoconfiguration messages, and
 * panic().
 *
 * Every byte goes to the message buffer (unless the caller asks for the
 * console only) and to the console. The console is whatever kernel symbol
 * `kg_cn_putc` names (the console driver installs its putc when it
 * attaches, as cn_tab does in NetBSD); before that, text goes to Xen's
 * emergency console with HYPERVISOR_console_io(CONSOLEIO_write), copied
 * through a bounce buffer in the kernel globals because a hypercall takes
 * guest addresses, never JS strings.
 *
 * The format language is C's, the subset a kernel uses: %d %i %u %x %X %o
 * %c %s %p %%, flags `-+ #0`, width and precision (digits or `*`), length
 * modifiers hh h l ll j z t q. Arguments are JS numbers, bigints or
 * strings; %s also takes the guest address of a NUL-terminated string.
 * Without a 64-bit length modifier integers are 32-bit, as in C, so
 * printf("%x", -1) prints ffffffff.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { __HYPERVISOR_console_io, __HYPERVISOR_sched_op, CONSOLEIO_write } from '../../hypervisor/public/xen.js';
import { SCHEDOP_shutdown, SHUTDOWN_crash } from '../../hypervisor/public/sched.js';
import { kglobals, kg_addr, PANICMSG_LEN, PRFBUF_LEN } from '../sys/kernel.js';
import { AB_QUIET, AB_SILENT, AB_VERBOSE, AB_DEBUG } from '../sys/reboot.js';
import { device } from '../sys/device.js';
import { hcall_ptr, kstr_get, strlcpy, vptr, vptr_set } from '../lib/libkern/libkern.js';
import { ksymtab, ksymaddr, kcall } from './kern_ksyms.js';
import { logputchar } from './subr_log.js';

export type PrintfArg = number | bigint | string;

/** Host-side trace (DEBUG=guest:kern): panics show up in the host log too. */
const dbg = createDebug('guest:kern');

/* Where output goes. */
export const TOCONS = 0x01;
export const TOLOG = 0x02;

const MAXSTRLEN = 1024;
const CANON_HIGH = 0xffff_0000_0000_0000n;

function prf_tobig(a: PrintfArg | undefined): bigint {
  if (typeof a === 'bigint') return a;
  if (typeof a === 'number') return Number.isFinite(a) ? BigInt(Math.trunc(a)) : 0n;
  return 0n;
}

/**
 * Format `fmt` with `args` the way the kernel's printf does. `strAt` reads
 * a C string from a guest address for %s given a number.
 */
export function kvformat(fmt: string, args: readonly PrintfArg[], strAt?: (va: number) => string): string {
  let out = '';
  let ai = 0;
  const next = (): PrintfArg | undefined => args[ai++];
  let i = 0;
  while (i < fmt.length) {
    const ch = fmt[i++] as string;
    if (ch !== '%') {
      out += ch;
      continue;
    }
    const start = i - 1;
    let left = false, plus = false, space = false, alt = false, zero = false;
    for (;;) {
      const f = fmt[i];
      if (f === '-') left = true;
      else if (f === '+') plus = true;
      else if (f === ' ') space = true;
      else if (f === '#') alt = true;
      else if (f === '0') zero = true;
      else break;
      i++;
    }
    let width = 0;
    if (fmt[i] === '*') {
      width = Number(prf_tobig(next()));
      if (width < 0) { left = true; width = -width; }
      i++;
    } else {
      while (i < fmt.length && fmt[i]! >= '0' && fmt[i]! <= '9') width = width * 10 + (fmt.charCodeAt(i++) - 48);
    }
    let prec = -1;
    if (fmt[i] === '.') {
      i++;
      prec = 0;
      if (fmt[i] === '*') {
        prec = Math.max(0, Number(prf_tobig(next())));
        i++;
      } else {
        while (i < fmt.length && fmt[i]! >= '0' && fmt[i]! <= '9') prec = prec * 10 + (fmt.charCodeAt(i++) - 48);
      }
    }
    let bits = 32;
    if (fmt.startsWith('hh', i)) { bits = 8; i += 2; }
    else if (fmt.startsWith('ll', i)) { bits = 64; i += 2; }
    else if (fmt[i] === 'h') { bits = 16; i++; }
    else if (fmt[i] === 'l' || fmt[i] === 'j' || fmt[i] === 'z' || fmt[i] === 't' || fmt[i] === 'q') { bits = 64; i++; }
    const conv = fmt[i++];
    const pad = (body: string, prefix = '', zeroOk = false): string => {
      const len = prefix.length + body.length;
      if (len >= width) return prefix + body;
      if (left) return prefix + body + ' '.repeat(width - len);
      if (zero && zeroOk) return prefix + '0'.repeat(width - len) + body;
      return ' '.repeat(width - len) + prefix + body;
    };
    switch (conv) {
      case '%':
        out += '%';
        break;
      case 'c': {
        const a = next();
        out += pad(typeof a === 'string' ? a.charAt(0) : String.fromCharCode(Number(BigInt.asUintN(8, prf_tobig(a)))));
        break;
      }
      case 's': {
        const a = next();
        let s = typeof a === 'string' ? a : typeof a === 'number' && a !== 0 && strAt !== undefined ? strAt(a) : '(null)';
        if (prec >= 0) s = s.slice(0, prec);
        out += pad(s);
        break;
      }
      case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'p': {
        let v = prf_tobig(next());
        let prefix = '';
        let base = 10;
        if (conv === 'd' || conv === 'i') {
          v = BigInt.asIntN(bits, v);
          if (v < 0n) { prefix = '-'; v = -v; }
          else if (plus) prefix = '+';
          else if (space) prefix = ' ';
        } else if (conv === 'p') {
          if (v >= 0x8000_0000_0000n && v < 0x1_0000_0000_0000n) v |= CANON_HIGH;
          v = BigInt.asUintN(64, v);
          base = 16;
          prefix = '0x';
        } else {
          v = BigInt.asUintN(bits, v);
          base = conv === 'o' ? 8 : conv === 'u' ? 10 : 16;
          if (alt && v !== 0n) prefix = conv === 'o' ? '0' : conv === 'X' ? '0X' : '0x';
        }
        let digits = prec === 0 && v === 0n ? '' : v.toString(base);
        if (conv === 'X') digits = digits.toUpperCase();
        if (prec > digits.length) digits = '0'.repeat(prec - digits.length) + digits;
        out += pad(digits, prefix, prec < 0);
        break;
      }
      default:
        // Unknown conversion: print it as written, consume nothing.
        out += fmt.slice(start, i);
        break;
    }
  }
  return out;
}

/** Read a guest C string for %s. */
function prf_strat(cpu: GuestCpu): (va: number) => string {
  return (va) => kstr_get(cpu.mem, va, MAXSTRLEN);
}

/** Write text to the console: the console driver's putc, else Xen's console. */
export function cnputs(cpu: GuestCpu, s: string): void {
  const putc = vptr(kglobals(cpu), 'kg_cn_putc');
  if (putc !== 0) {
    for (let i = 0; i < s.length; i++) kcall(cpu, putc, s.charCodeAt(i) & 0xff);
    return;
  }
  const buf = kg_addr('kg_prfbuf');
  for (let off = 0; off < s.length; off += PRFBUF_LEN) {
    const chunk = s.slice(off, off + PRFBUF_LEN);
    for (let i = 0; i < chunk.length; i++) cpu.mem.setUint8(buf + i, chunk.charCodeAt(i) & 0xff);
    cpu.hypercall(__HYPERVISOR_console_io, CONSOLEIO_write, chunk.length, hcall_ptr(buf));
  }
}

/**
 * Install (or, with 0, remove) the console output routine: a kernel symbol
 * `putc(cpu, c)`. The console driver calls this when it attaches.
 */
export function cn_set_putc(cpu: GuestCpu, putcSym: number): void {
  vptr_set(kglobals(cpu), 'kg_cn_putc', putcSym);
}

/** Emit already-formatted text. */
export function kputs(cpu: GuestCpu, s: string, flags: number): void {
  if (flags & TOLOG) for (let i = 0; i < s.length; i++) logputchar(cpu, s.charCodeAt(i));
  if (flags & TOCONS) cnputs(cpu, s);
}

export function printf(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), TOCONS | TOLOG);
}

/** printf to the console only. */
export function printf_nolog(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), TOCONS);
}

/** Format into guest memory (always NUL-terminated); returns the full length. */
export function snprintf(cpu: GuestCpu, va: number, size: number, fmt: string, ...args: PrintfArg[]): number {
  return strlcpy(cpu.mem, va, kvformat(fmt, args, prf_strat(cpu)), size);
}

/** Format to a JS string (for building xenstore paths and the like within one entry). */
export function ksprintf(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): string {
  return kvformat(fmt, args, prf_strat(cpu));
}

function prf_boothowto(cpu: GuestCpu): number {
  return kglobals(cpu).get('kg_boothowto');
}

/** Autoconfiguration message: console unless booting quietly; always logged. */
export function aprint_normal(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  const quiet = (prf_boothowto(cpu) & (AB_QUIET | AB_SILENT)) !== 0;
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), quiet ? TOLOG : TOCONS | TOLOG);
}

/** Shown only on a quiet boot (the short form of what aprint_normal says). */
export function aprint_naive(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  if ((prf_boothowto(cpu) & (AB_QUIET | AB_SILENT | AB_VERBOSE)) !== AB_QUIET) return;
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), TOCONS | TOLOG);
}

/** Console only when booting verbosely; always logged. */
export function aprint_verbose(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  const verbose = (prf_boothowto(cpu) & AB_VERBOSE) !== 0;
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), verbose ? TOCONS | TOLOG : TOLOG);
}

/** Only when booting with debug messages. */
export function aprint_debug(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  if ((prf_boothowto(cpu) & AB_DEBUG) === 0) return;
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), TOCONS | TOLOG);
}

/** Errors always reach the console. */
export function aprint_error(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): void {
  kputs(cpu, kvformat(fmt, args, prf_strat(cpu)), TOCONS | TOLOG);
}

function prf_xname(cpu: GuestCpu, dev: number): string {
  return kstr_get(cpu.mem, dev + device.offsetOf('dv_xname'), 16);
}

/** aprint_normal prefixed with "xname: ". */
export function aprint_normal_dev(cpu: GuestCpu, dev: number, fmt: string, ...args: PrintfArg[]): void {
  aprint_normal(cpu, '%s: ' + fmt, prf_xname(cpu, dev), ...args);
}

/** aprint_error prefixed with "xname: ". */
export function aprint_error_dev(cpu: GuestCpu, dev: number, fmt: string, ...args: PrintfArg[]): void {
  aprint_error(cpu, '%s: ' + fmt, prf_xname(cpu, dev), ...args);
}

/** aprint_verbose prefixed with "xname: ". */
export function aprint_verbose_dev(cpu: GuestCpu, dev: number, fmt: string, ...args: PrintfArg[]): void {
  aprint_verbose(cpu, '%s: ' + fmt, prf_xname(cpu, dev), ...args);
}

/** aprint_debug prefixed with "xname: ". */
export function aprint_debug_dev(cpu: GuestCpu, dev: number, fmt: string, ...args: PrintfArg[]): void {
  aprint_debug(cpu, '%s: ' + fmt, prf_xname(cpu, dev), ...args);
}

/**
 * Thrown by panic() after the domain has been shut down with
 * SHUTDOWN_crash, to unwind the JS stack: the kernel has stopped, and the
 * machine should treat the entry as over (the domain is already crashed).
 * Recognize it by `name === 'KernelPanic'`.
 */
export class KernelPanic extends Error {
  constructor(message: string) {
    super(`panic: ${message}`);
    this.name = 'KernelPanic';
  }
}

/** The continuation a panicked vCPU is left at: crash again if ever entered. */
export function panic_halt(cpu: GuestCpu): void {
  kglobals(cpu).sub('kg_shutdown').set('reason', SHUTDOWN_crash);
  cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, hcall_ptr(kg_addr('kg_shutdown')));
}

/**
 * Print "panic: <message>", record it in `panicstr`, shut the domain down
 * with SHUTDOWN_crash, and stop (by throwing KernelPanic). Never returns.
 */
export function panic(cpu: GuestCpu, fmt: string, ...args: PrintfArg[]): never {
  const msg = kvformat(fmt, args, prf_strat(cpu));
  const g = kglobals(cpu);
  if (vptr(g, 'kg_panicstr') === 0) {
    strlcpy(cpu.mem, kg_addr('kg_panicmsg'), msg, PANICMSG_LEN);
    vptr_set(g, 'kg_panicstr', kg_addr('kg_panicmsg'));
  }
  kputs(cpu, `panic: ${msg}\n`, TOCONS | TOLOG);
  dbg('vcpu%d: panic: %s', cpu.vcpuId, msg);
  cpu.regs.setVa('rip', ksymaddr(cpu, 'panic_halt'));
  panic_halt(cpu);
  throw new KernelPanic(msg);
}

/** The panic message, or undefined when the kernel has not panicked. */
export function panicstr(cpu: GuestCpu): string | undefined {
  const p = vptr(kglobals(cpu), 'kg_panicstr');
  return p === 0 ? undefined : kstr_get(cpu.mem, p, PANICMSG_LEN);
}

/** KASSERT: panic with the failed condition's description. */
export function KASSERT(cpu: GuestCpu, cond: boolean, what: string): asserts cond {
  if (!cond) panic(cpu, 'kernel diagnostic assertion "%s" failed', what);
}

export const subr_prf_ksyms = ksymtab({
  prf_tobig, kvformat, prf_strat, prf_boothowto, prf_xname, cnputs, cn_set_putc, kputs, printf, printf_nolog, snprintf, ksprintf,
  aprint_normal, aprint_naive, aprint_verbose, aprint_debug, aprint_error,
  aprint_normal_dev, aprint_error_dev, aprint_verbose_dev, aprint_debug_dev,
  panic_halt, panic, panicstr, KASSERT,
});

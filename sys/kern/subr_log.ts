/*
 * The kernel message buffer: every byte printf() writes also lands here,
 * which is what dmesg reads. See sys/sys/msgbuf.ts for the ring's rules.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { kern_msgbuf, MSG_MAGIC, MSGBUF_HDRSIZE } from '../sys/msgbuf.js';
import { kglobals } from '../sys/kernel.js';
import { vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab } from './kern_ksyms.js';

/**
 * Make the `size` bytes at `va` the message buffer. A buffer that already
 * carries the magic and the same size is kept (its contents survive, as
 * NetBSD keeps the previous boot's messages); otherwise it is emptied.
 */
export function initmsgbuf(cpu: GuestCpu, va: number, size: number): void {
  const bufs = size - MSGBUF_HDRSIZE;
  if (bufs < 2) throw new RangeError(`msgbuf of ${size} bytes has no room`);
  const mb = kern_msgbuf.view(cpu.mem, va);
  const keep = Number(mb.get('msg_magic')) === MSG_MAGIC && vu64(mb, 'msg_bufs') === bufs &&
    vu64(mb, 'msg_bufx') < bufs && vu64(mb, 'msg_bufr') < bufs;
  if (!keep) {
    mb.set('msg_magic', BigInt(MSG_MAGIC));
    vu64_set(mb, 'msg_bufx', 0);
    vu64_set(mb, 'msg_bufr', 0);
    vu64_set(mb, 'msg_bufs', bufs);
  }
  vptr_set(kglobals(cpu), 'kg_msgbufp', va);
}

/** Append one byte to the message buffer (dropping the oldest when full). */
export function logputchar(cpu: GuestCpu, c: number): void {
  const va = vptr(kglobals(cpu), 'kg_msgbufp');
  if (va === 0) return;
  const mb = kern_msgbuf.view(cpu.mem, va);
  if (Number(mb.get('msg_magic')) !== MSG_MAGIC) return;
  const bufs = vu64(mb, 'msg_bufs');
  let x = vu64(mb, 'msg_bufx');
  if (x >= bufs) x = 0;
  cpu.mem.setUint8(va + MSGBUF_HDRSIZE + x, c & 0xff);
  x = x + 1 >= bufs ? 0 : x + 1;
  vu64_set(mb, 'msg_bufx', x);
  const r = vu64(mb, 'msg_bufr');
  if (r === x) vu64_set(mb, 'msg_bufr', r + 1 >= bufs ? 0 : r + 1);
}

/** The retained messages, oldest first (what dmesg prints). */
export function msgbuf_read(cpu: GuestCpu): string {
  const va = vptr(kglobals(cpu), 'kg_msgbufp');
  if (va === 0) return '';
  const mb = kern_msgbuf.view(cpu.mem, va);
  if (Number(mb.get('msg_magic')) !== MSG_MAGIC) return '';
  const bufs = vu64(mb, 'msg_bufs');
  const x = vu64(mb, 'msg_bufx');
  let out = '';
  for (let i = vu64(mb, 'msg_bufr'); i !== x; i = i + 1 >= bufs ? 0 : i + 1) {
    const c = cpu.mem.getUint8(va + MSGBUF_HDRSIZE + i);
    if (c !== 0) out += String.fromCharCode(c);
  }
  return out;
}

export const subr_log_ksyms = ksymtab({ initmsgbuf, logputchar, msgbuf_read });

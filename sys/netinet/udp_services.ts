/*
 * Two small UDP services run as kernel threads, for the network workload
 * and its tests (what inetd's echo and a monitoring agent would be on a
 * real system):
 *
 *   udpecho_start(cpu, port = 7)              RFC 862 echo: every datagram
 *                                             goes back to its sender
 *   heartbeat_start(cpu, dst, dport, ticks)   a datagram "hb <seq> <ticks>"
 *                                             to dst:dport every `ticks`
 *
 * Each thread's state is a small struct in kmem whose address is the lwp's
 * argument, so it survives save/restore like everything else:
 *
 *   struct udpecho_state {
 *       struct inpcb *ue_pcb;
 *       uint8_t *ue_buf;            // UDP_MAXDATA bytes
 *       uint32_t ue_nechoed, ue_nerrors;
 *       struct sockaddr_in ue_from;
 *   };
 *
 *   struct heartbeat_state {
 *       struct inpcb *hb_pcb;
 *       uint32_t hb_dst;            // host order
 *       uint16_t hb_dport, hb_pad;
 *       uint32_t hb_interval;       // ticks
 *       uint32_t hb_seq;            // beats sent
 *       uint32_t hb_nerrors;        // udp_send failures
 *       uint32_t hb_pad2;
 *   };
 */
import { struct, array, u8, u16, u32, u64 } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { vptr, vptr_set } from '../lib/libkern/libkern.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kmem_zalloc, kmem_alloc, kmem_free } from '../kern/subr_kmem.js';
import { lwp_create } from '../kern/kern_lwp.js';
import { kpause, preempt } from '../kern/kern_synch.js';
import { getticks } from '../kern/kern_clock.js';
import { udp_bind, udp_close, udp_recv, udp_recvfrom, udp_send, udp_sendbytes, sockaddr_in_get, UDP_MAXDATA, SOCKADDR_IN_LEN } from './udp_usrreq.js';

export const udpecho_state = struct('struct udpecho_state', {
  ue_pcb: u64,
  ue_buf: u64,
  ue_nechoed: u32,
  ue_nerrors: u32,
  ue_from: array(u8, SOCKADDR_IN_LEN),
});

export const heartbeat_state = struct('struct heartbeat_state', {
  hb_pcb: u64,
  hb_dst: u32,
  hb_dport: u16,
  hb_pad: u16,
  hb_interval: u32,
  hb_seq: u32,
  hb_nerrors: u32,
  hb_pad2: u32,
});

/** The RFC 862 port. */
export const ECHO_PORT = 7;
/** Datagrams echoed per thread step before letting others run. */
const ECHO_BATCH = 32;

/**
 * Start the echo service on `port`. Returns the state struct's address
 * (for udpecho_stats), or 0 when the port is taken or memory is short.
 */
export function udpecho_start(cpu: GuestCpu, port = ECHO_PORT): number {
  const st = kmem_zalloc(cpu, udpecho_state.size);
  if (st === 0) return 0;
  const buf = kmem_alloc(cpu, UDP_MAXDATA);
  const pcb = buf === 0 ? -1 : udp_bind(cpu, port);
  if (pcb <= 0) {
    if (buf !== 0) kmem_free(cpu, buf, UDP_MAXDATA);
    kmem_free(cpu, st, udpecho_state.size);
    return 0;
  }
  const v = udpecho_state.view(cpu.mem, st);
  vptr_set(v, 'ue_pcb', pcb);
  vptr_set(v, 'ue_buf', buf);
  if (lwp_create(cpu, 'udpecho', 'udpecho_loop', st) === 0) {
    udp_close(cpu, pcb);
    kmem_free(cpu, buf, UDP_MAXDATA);
    kmem_free(cpu, st, udpecho_state.size);
    return 0;
  }
  return st;
}

/** One step of the echo thread: answer what is queued, then wait for more. */
export function udpecho_loop(cpu: GuestCpu, st: number, _error: number): void {
  const v = udpecho_state.view(cpu.mem, st);
  const pcb = vptr(v, 'ue_pcb');
  const buf = vptr(v, 'ue_buf');
  const from = v.addr('ue_from');
  for (let i = 0; i < ECHO_BATCH; i++) {
    const n = udp_recvfrom(cpu, pcb, buf, UDP_MAXDATA, from);
    if (n < 0) {
      udp_recv(cpu, pcb, 'udpecho_loop');
      return;
    }
    const peer = sockaddr_in_get(cpu, from);
    if (udp_send(cpu, pcb, peer.addr, peer.port, buf, n) === 0) v.set('ue_nechoed', v.get('ue_nechoed') + 1);
    else v.set('ue_nerrors', v.get('ue_nerrors') + 1);
  }
  preempt(cpu, 'udpecho_loop');
}

export function udpecho_stats(cpu: GuestCpu, st: number): { echoed: number; errors: number } {
  const v = udpecho_state.view(cpu.mem, st);
  return { echoed: v.get('ue_nechoed'), errors: v.get('ue_nerrors') };
}

/**
 * Start sending a heartbeat to `dst`:`dport` every `interval` ticks, from
 * an ephemeral port. Returns the state struct's address, or 0.
 */
export function heartbeat_start(cpu: GuestCpu, dst: number, dport: number, interval: number): number {
  const st = kmem_zalloc(cpu, heartbeat_state.size);
  if (st === 0) return 0;
  const pcb = udp_bind(cpu, 0);
  if (pcb <= 0) {
    kmem_free(cpu, st, heartbeat_state.size);
    return 0;
  }
  const v = heartbeat_state.view(cpu.mem, st);
  vptr_set(v, 'hb_pcb', pcb);
  v.set('hb_dst', dst >>> 0);
  v.set('hb_dport', dport);
  v.set('hb_interval', Math.max(1, Math.floor(interval)));
  if (lwp_create(cpu, 'heartbeat', 'heartbeat_tick', st) === 0) {
    udp_close(cpu, pcb);
    kmem_free(cpu, st, heartbeat_state.size);
    return 0;
  }
  return st;
}

/** One beat, then sleep until the next. */
export function heartbeat_tick(cpu: GuestCpu, st: number, _error: number): void {
  const v = heartbeat_state.view(cpu.mem, st);
  const seq = v.get('hb_seq') + 1;
  const text = `hb ${seq} ${getticks(cpu)}`;
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  if (udp_sendbytes(cpu, vptr(v, 'hb_pcb'), v.get('hb_dst'), v.get('hb_dport'), bytes) === 0) v.set('hb_seq', seq);
  else v.set('hb_nerrors', v.get('hb_nerrors') + 1);
  kpause(cpu, 'hbeat', v.get('hb_interval'), 'heartbeat_tick');
}

export function heartbeat_stats(cpu: GuestCpu, st: number): { sent: number; errors: number } {
  const v = heartbeat_state.view(cpu.mem, st);
  return { sent: v.get('hb_seq'), errors: v.get('hb_nerrors') };
}

export const udp_services_ksyms = ksymtab({
  udpecho_start, udpecho_loop, udpecho_stats, heartbeat_start, heartbeat_tick, heartbeat_stats,
});

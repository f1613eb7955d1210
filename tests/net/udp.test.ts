/*
 * UDP on the test harness: the datagram the guest builds (golden bytes),
 * bind/recv/send from kernel threads in continuation style, hostile
 * datagrams, the echo and heartbeat services, and the save/restore
 * property: a stack's state is guest memory and nothing else.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create, lwp_frame, lwp_frame_of } from '../../sys/kern/kern_lwp.js';
import { ptr_get, ptr_set } from '../../sys/lib/libkern/libkern.js';
import { kmem_alloc } from '../../sys/kern/subr_kmem.js';
import { EWOULDBLOCK } from '../../sys/sys/errno.js';
import { netstat_snapshot } from '../../sys/net/net_globals.js';
import { mbuf_inuse } from '../../sys/net/mbuf.js';
import { EADDRINUSE, EMSGSIZE, EDESTADDRREQ, EHOSTUNREACH } from '../../sys/net/net_errno.js';
import {
  udp_bind, udp_send, udp_sendbytes, udp_recv, udp_recvfrom, udp_close, udp_port, udp_pcblist, sockaddr_in_get, UDP_MAXDATA, UDP_RECVSPACE,
} from '../../sys/netinet/udp_usrreq.js';
import { udpecho_start, udpecho_stats, heartbeat_start, heartbeat_stats } from '../../sys/netinet/udp_services.js';
import { inet_aton } from '../../sys/netinet/in.js';
import { Harness, tlog, tlogRead } from '../guest/harness.js';
import {
  netRig, wire, inject, hex, cksum, etherFrame, ipv4Packet, udpDatagram, udpFrameToGuest, parseFrame, learnPeer, text,
  GUEST_MAC, PEER_MAC, GUEST_IP, PEER_IP,
} from './fixture.js';

const UDP_HELLO = '00163effff0100163e00000208004500002100014000401126c90a0000020a000001000715b3000d924568656c6c6f';
const PORT_UNREACH = '00163effff0100163e00000208004500003800014000400126c20a0000020a00000103037984000000004500001e00054000401126c80a0000010a00000204d20009000a7e93';

const udpPayload = (f: Uint8Array): string => new TextDecoder().decode(f.subarray(14 + 28));

test('udp_send builds the datagram byte for byte (golden), checksums verified independently', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const pcb = udp_bind(cpu, 7);
  t.is(udp_sendbytes(cpu, pcb, PEER_IP, 5555, text('hello')), 0);
  const out = wire(cpu, ifp);
  t.deepEqual(out.map(hex), [UDP_HELLO]);
  const ip = (out[0] as Uint8Array).subarray(14);
  const pseudo = (GUEST_IP >>> 16) + (GUEST_IP & 0xffff) + (PEER_IP >>> 16) + (PEER_IP & 0xffff) + 17 + 13;
  t.is(cksum(ip.subarray(20), pseudo), 0, 'UDP checksum over the pseudo-header');
});

test('udp_send copies its payload from guest memory', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const buf = kmem_alloc(cpu, 64);
  cpu.mem.writeBytes(buf, text('from memory'));
  t.is(udp_send(cpu, udp_bind(cpu, 0), PEER_IP, 9, buf, 11), 0);
  t.is(udpPayload(wire(cpu, ifp)[0] as Uint8Array), 'from memory');
});

test('bind: a port is taken once; port 0 picks distinct ephemeral ports; close frees it', (t) => {
  const { cpu } = netRig();
  const a = udp_bind(cpu, 7);
  t.true(a > 0);
  t.is(udp_bind(cpu, 7), -EADDRINUSE);
  const e1 = udp_bind(cpu, 0);
  const e2 = udp_bind(cpu, 0);
  t.true(udp_port(cpu, e1) >= 49152 && udp_port(cpu, e2) >= 49152);
  t.not(udp_port(cpu, e1), udp_port(cpu, e2));
  t.is(udp_close(cpu, a), 0);
  t.true(udp_bind(cpu, 7) > 0);
  t.is(udp_pcblist(cpu).length, 3);
});

test('send errors: too big, no destination, no route', (t) => {
  const { cpu } = netRig();
  const pcb = udp_bind(cpu, 0);
  t.is(udp_sendbytes(cpu, pcb, PEER_IP, 9, new Uint8Array(UDP_MAXDATA + 1)), EMSGSIZE);
  t.is(udp_sendbytes(cpu, pcb, PEER_IP, 9, new Uint8Array(1473)), EMSGSIZE, 'beyond the MTU: no fragmentation');
  t.is(udp_sendbytes(cpu, pcb, 0, 9, text('x')), EDESTADDRREQ);
  t.is(udp_sendbytes(cpu, pcb, inet_aton('192.168.0.1') as number, 9, text('x')), EHOSTUNREACH);
  t.is(mbuf_inuse(cpu), 0);
});

/*
 * A receiver thread in continuation style. Its frame holds what it needs
 * across steps:  [0] the PCB, [8] a buffer, [16] the receive timeout
 * (ticks; set by the test before the first step).
 */
const receiver = ksymtab({
  t_recv_start(cpu: GuestCpu, port: number): void {
    const f = lwp_frame(cpu);
    const pcb = udp_bind(cpu, port);
    ptr_set(cpu.mem, f, pcb);
    ptr_set(cpu.mem, f + 8, kmem_alloc(cpu, 2048));
    udp_recv(cpu, pcb, 't_recv_loop', cpu.mem.getUint32(f + 16, true));
  },
  t_recv_loop(cpu: GuestCpu, _arg: number, err: number): void {
    const f = lwp_frame(cpu);
    const pcb = ptr_get(cpu.mem, f);
    if (err === EWOULDBLOCK) {
      tlog(cpu, 'timeout ');
      return;
    }
    const buf = ptr_get(cpu.mem, f + 8);
    const from = buf + 1024;
    for (let n = udp_recvfrom(cpu, pcb, buf, 1024, from); n >= 0; n = udp_recvfrom(cpu, pcb, buf, 1024, from)) {
      const s = String.fromCharCode(...cpu.mem.readBytes(buf, n));
      const peer = sockaddr_in_get(cpu, from);
      tlog(cpu, `${s}<${peer.addr.toString(16)}:${peer.port}> `);
    }
    udp_recv(cpu, pcb, 't_recv_loop');
  },
});

test('udp_recv sleeps until a datagram arrives; the thread then takes it with udp_recvfrom', (t) => {
  const { h, cpu, ifp } = netRig({ extra: [receiver] });
  lwp_create(cpu, 'rcv', 't_recv_start', 5000);
  h.run(5);
  t.true(h.fake.blocked, 'the thread sleeps, the vCPU blocks');
  inject(cpu, ifp, udpFrameToGuest(1234, 5000, text('ping')));
  inject(cpu, ifp, udpFrameToGuest(1235, 5000, text('pong')));
  h.fake.blocked = false;
  h.run(5);
  t.is(tlogRead(h), 'ping<a000001:1234> pong<a000001:1235> ');
  t.is(mbuf_inuse(cpu), 0);
});

test('udp_recv with a timeout continues with EWOULDBLOCK when nothing comes', (t) => {
  const { h, cpu } = netRig({ extra: [receiver] });
  const l = lwp_create(cpu, 'rcv', 't_recv_start', 5001);
  cpu.mem.setUint32(lwp_frame_of(l) + 16, 20, true);
  h.drive(100);
  t.is(tlogRead(h), 'timeout ');
});

test('a datagram for a port nobody bound gets ICMP port unreachable (golden)', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, id: 5 }, udpDatagram(PEER_IP, GUEST_IP, 1234, 9, text('hi')))));
  t.deepEqual(wire(cpu, ifp).map(hex), [PORT_UNREACH]);
  t.like(netstat_snapshot(cpu, 'ng_udpstat'), { udps_noport: 1 });
  t.like(netstat_snapshot(cpu, 'ng_icmpstat'), { icps_out_unreach: 1 });
});

test('hostile UDP: short, bad length, bad checksum are dropped and counted; checksum 0 is accepted', (t) => {
  const { cpu, ifp } = netRig();
  const pcb = udp_bind(cpu, 9);
  const send = (u: Uint8Array): void => inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17 }, u)));
  send(new Uint8Array([0, 1, 0, 9]));
  send(udpDatagram(PEER_IP, GUEST_IP, 1, 9, text('abc'), { ulen: 7 }));
  send(udpDatagram(PEER_IP, GUEST_IP, 1, 9, text('abc'), { ulen: 200 }));
  send(udpDatagram(PEER_IP, GUEST_IP, 1, 9, text('abc'), { badSum: true }));
  send(udpDatagram(PEER_IP, GUEST_IP, 1, 9, text('nosum'), { noSum: true }));
  t.like(netstat_snapshot(cpu, 'ng_udpstat'), { udps_hdrops: 1, udps_badlen: 2, udps_badsum: 1, udps_nosum: 1, udps_delivered: 1 });
  const buf = kmem_alloc(cpu, 64);
  t.is(udp_recvfrom(cpu, pcb, buf, 64), 5);
  t.is(udp_recvfrom(cpu, pcb, buf, 64), -EWOULDBLOCK);
  t.deepEqual(wire(cpu, ifp), []);
});

test('a full receive queue drops and counts; a long datagram is truncated to the buffer', (t) => {
  const { cpu, ifp } = netRig();
  const pcb = udp_bind(cpu, 9);
  const big = new Uint8Array(1400).fill(0x61);
  const fit = Math.floor(UDP_RECVSPACE / 1400);
  for (let i = 0; i < fit + 3; i++) inject(cpu, ifp, udpFrameToGuest(1, 9, big));
  t.is(netstat_snapshot(cpu, 'ng_udpstat')['udps_fullsock'], 3);
  t.is(udp_pcblist(cpu)[0]?.queued, fit);
  const buf = kmem_alloc(cpu, 16);
  t.is(udp_recvfrom(cpu, pcb, buf, 16), 16);
  t.is(udp_close(cpu, pcb), 0);
  t.is(mbuf_inuse(cpu), 0, 'closing freed the queue');
});

test('the echo service sends every datagram back to its sender', (t) => {
  const { h, cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const st = udpecho_start(cpu);
  t.not(st, 0);
  h.run(5);
  for (const s of ['a', 'bb', 'ccc']) inject(cpu, ifp, udpFrameToGuest(40000, 7, text(s)));
  h.fake.blocked = false;
  h.run(5);
  const out = wire(cpu, ifp).map(parseFrame);
  t.deepEqual(out.map((f) => new TextDecoder().decode(f.payload.subarray(28))), ['a', 'bb', 'ccc']);
  t.deepEqual(out.map((f) => ((f.payload[22] as number) << 8) | (f.payload[23] as number)), [40000, 40000, 40000], 'to the source port');
  t.deepEqual(udpecho_stats(cpu, st), { echoed: 3, errors: 0 });
});

test('the heartbeat sends "hb <seq> <ticks>" every interval', (t) => {
  const { h, cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const st = heartbeat_start(cpu, PEER_IP, 7777, 10);
  h.drive(60);
  const beats = wire(cpu, ifp).map((f) => udpPayload(f));
  t.true(beats.length >= 3, `expected several beats, got ${beats.length}`);
  t.deepEqual(beats.slice(0, 3).map((b) => b.split(' ').slice(0, 2).join(' ')), ['hb 1', 'hb 2', 'hb 3']);
  const ticks = beats.map((b) => Number(b.split(' ')[2]));
  t.is((ticks[1] as number) - (ticks[0] as number), 10);
  t.is(heartbeat_stats(cpu, st).sent, beats.length);
});

test('save/restore: a stack restored from memory + registers carries on identically', (t) => {
  const run = (h: Harness, ifp: number, from: number, to: number): string[] => {
    const out: string[] = [];
    for (let i = from; i < to; i++) {
      inject(h.cpu, ifp, udpFrameToGuest(30000 + i, 7, text(`msg${i}`)));
      h.fake.blocked = false;
      h.drive(7);
      out.push(...wire(h.cpu, ifp).map(hex));
    }
    return out;
  };
  const a = netRig();
  learnPeer(a.cpu, a.ifp);
  udpecho_start(a.cpu);
  heartbeat_start(a.cpu, PEER_IP, 7777, 5);
  const before = run(a.h, a.ifp, 0, 5);
  t.true(before.length >= 5);
  const snap = a.h.snapshot();
  const b = { h: Harness.restore(a.h.image, snap), ifp: a.ifp };
  const c = { h: Harness.restore(a.h.image, snap), ifp: a.ifp };
  const outB = run(b.h, b.ifp, 5, 15);
  const outC = run(c.h, c.ifp, 5, 15);
  t.deepEqual(outB, outC, 'two restores of one snapshot send the same bytes');
  t.deepEqual(outB, run(a.h, a.ifp, 5, 15), 'and the same as the original');
});

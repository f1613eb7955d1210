/*
 * UDP echo round trips per second from a real host client (node dgram on
 * 127.0.0.1) through a vif's `forward=udp:H:7`, the dom0 bridge, netback,
 * and the netbsd guest's xennet and UDP echo server (workload=net), on a
 * machine running in real time. Round trips are sequential: one datagram
 * out, wait for its echo, next.
 */
import dgram from 'node:dgram';
import { MachineHost } from '../hypervisor/tools/machine/host.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';
import { freeUdpPort, guestConfig, wlStatus } from '../tests/e2e/fixture.js';

export interface GuestUdpBenchResult {
  readonly roundTrips: number;
  readonly payloadBytes: number;
  readonly ms: number;
  readonly roundTripsPerSec: number;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function until(cond: () => boolean, what: string, limitMs: number): Promise<void> {
  const end = performance.now() + limitMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`bench: ${what} did not happen within ${limitMs} ms`);
    await turn();
  }
}

export async function benchGuestUdpEcho(roundTrips = 2000, payloadBytes = 64): Promise<GuestUdpBenchResult> {
  const port = await freeUdpPort();
  const h = await MachineHost.create({ machine: { memoryBytes: 128 * 2 ** 20, clock: 'realtime', scrambleSeed: 5 }, images: [netbsdImage] });
  const sock = dgram.createSocket('udp4');
  try {
    h.m.start();
    const b = await h.create(guestConfig({ name: 'udpbench', extra: 'workload=net', memory: 32, vifs: [`mac=00:16:3e:00:00:42,ip=10.0.0.42,bridge=xenbr0,forward=udp:${port}:7`] }));
    await until(() => wlStatus(h, b.domid, 'net') === 'running', 'the guest echo server starting', 30_000);
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const payload = Buffer.alloc(payloadBytes, 0x61);
    let got = 0;
    sock.on('message', () => {
      got++;
    });
    // Warm-up: the first datagram also resolves ARP on the bridge.
    sock.send(payload, port, '127.0.0.1');
    await until(() => got >= 1, 'the first echo', 30_000);
    const start = performance.now();
    for (let i = 0; i < roundTrips; i++) {
      const want = got + 1;
      sock.send(payload, port, '127.0.0.1');
      await until(() => got >= want, `echo ${i}`, 10_000);
    }
    const ms = performance.now() - start;
    return { roundTrips, payloadBytes, ms, roundTripsPerSec: (roundTrips * 1000) / ms };
  } finally {
    sock.close();
    await h.close();
  }
}

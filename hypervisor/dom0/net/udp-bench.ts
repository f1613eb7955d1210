/*
 * UDP forwarding benchmark: a real dgram client on 127.0.0.1 ping-pongs
 * datagrams through a UdpForwarder, dom0's endpoint, the bridge and an
 * echoing stand-in guest, one datagram in flight at a time. Each round
 * trip is two loopback socket hops plus the whole emulated path both ways
 * (frames built, bridged, parsed, checksummed). For `make bench`.
 */
import dgram from 'node:dgram';
import { Bridge, type NetClock } from './bridge.js';
import { Dom0Endpoint } from './endpoint.js';
import { EchoGuest } from './echo-guest.js';
import { UdpForwarder, FORWARD_BIND_ADDRESS } from './forward.js';

export interface UdpForwardBenchResult {
  readonly roundTrips: number;
  readonly payloadBytes: number;
  readonly ms: number;
  readonly roundTripsPerSec: number;
}

export async function benchUdpForward(roundTrips = 5_000, payloadBytes = 64): Promise<UdpForwardBenchResult> {
  const base = process.hrtime.bigint();
  const clock: NetClock = { now: () => Number(process.hrtime.bigint() - base) };
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock });
  new EchoGuest({ name: 'vif1.0', mac: '00:16:3e:00:00:01', ip: '10.0.0.2', echoPorts: [7] }).plug(bridge);
  const fwd = await UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 7, guestIp: '10.0.0.2', name: 'bench' });
  const client = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => client.bind(0, FORWARD_BIND_ADDRESS, resolve));
  const payload = Buffer.alloc(payloadBytes, 0x5a);
  const once = (): Promise<void> => new Promise((resolve, reject) => {
    client.once('message', (msg) => (msg.length === payloadBytes ? resolve() : reject(new Error(`echo of ${msg.length} bytes, sent ${payloadBytes}`))));
    client.send(payload, fwd.hostPort, FORWARD_BIND_ADDRESS);
  });
  try {
    await once(); // warm-up: ARP resolution and the client's mapping
    const start = process.hrtime.bigint();
    for (let i = 0; i < roundTrips; i++) await once();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    return { roundTrips, payloadBytes, ms, roundTripsPerSec: Math.round(roundTrips / (Math.max(ms, 1e-3) / 1000)) };
  } finally {
    client.close();
    await fwd.close();
    dom0.close();
  }
}

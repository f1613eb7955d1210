/*
 * netback throughput: packets/s and MB/s through the rings, each way, for
 * a few frame sizes (loopback frontend over buffer grants, the real vif
 * engine, a real Bridge with one sink port on the other side).
 *
 *  TX: the frontend keeps the TX ring full of frames (one request per page
 *      of frame, NETTXF_more_data between), the vif copies them out and
 *      sends them into the bridge, the sink counts them.
 *  RX: the sink sends frames into the bridge towards the guest's MAC, the
 *      vif queues them and copies each into posted buffers; the frontend
 *      keeps the RX ring full of buffers and reassembles the frames.
 *
 * A short unmeasured warm-up runs first for each size. Prints nothing;
 * `make bench` formats the numbers.
 */
import { NETIF_RSP_OKAY, NET_RX_RING_SIZE } from '../../public/io/netif.js';
import { domid } from '../../public/types.js';
import { LoopbackHost } from '../blkback/loopback.js';
import { Bridge, type BridgeLink, type BridgePort } from '../net/bridge.js';
import { LoopbackNetFront } from './loopback.js';
import { Netback } from './netback.js';
import { DEFAULT_RX_QUEUE_BYTES, DEFAULT_RX_QUEUE_FRAMES, type Vif } from './vif.js';
import { rxSlotsFor } from './wire.js';

export interface NetBenchCase {
  readonly dir: 'tx' | 'rx';
  readonly frameBytes: number;
  readonly packets: number;
  readonly seconds: number;
  readonly packetsPerSec: number;
  readonly mbPerSec: number;
}

export interface NetBenchResult {
  readonly cases: readonly NetBenchCase[];
}

export interface NetBenchOptions {
  /** Frame sizes in bytes, 60..65535 (default 64, 1514 and 9014). */
  readonly frameSizes?: readonly number[];
  /** Frames per case (default 20000). */
  readonly packets?: number;
}

const FRONT = domid(1);
const GUEST_MAC = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const SINK_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const MB = 1e6;
const WARMUP = 2000;

const now = (): bigint => process.hrtime.bigint();

/** A frame of `bytes` from `src` to `dst` (a local experimental ethertype; the payload is filler). */
function frameOf(bytes: number, dst: readonly number[], src: readonly number[]): Uint8Array {
  const f = new Uint8Array(bytes);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < bytes; i++) f[i] = i & 0xff;
  return f;
}

class Sink implements BridgePort {
  readonly name = 'sink';
  frames = 0;
  bytes = 0;
  link: BridgeLink | undefined;
  deliver(frame: Uint8Array): void {
    this.frames++;
    this.bytes += frame.length;
  }
}

interface Rig {
  readonly nb: Netback;
  readonly vif: Vif;
  readonly front: LoopbackNetFront;
  readonly sink: Sink;
}

function rig(): Rig {
  const host = new LoopbackHost();
  const bridge = new Bridge({ name: 'xenbr-bench', clock: { now: () => 0 } });
  const nb = new Netback({ host });
  const created = nb.create({ frontendDomid: FRONT, devid: 0, mac: '00:16:3e:00:00:01', bridge });
  if (!created.ok) throw new Error(`bench: ${created.error.message}`);
  const front = new LoopbackNetFront(host, FRONT);
  const up = created.value.connect(front.connectParams());
  if (!up.ok) throw new Error(`bench: connect: ${up.error}`);
  const sink = new Sink();
  sink.link = bridge.attach(sink);
  return { nb, vif: created.value, front, sink };
}

function txRun(frameBytes: number, packets: number): NetBenchCase {
  const { nb, front, sink } = rig();
  const frame = frameOf(frameBytes, SINK_MAC, GUEST_MAC);
  const t0 = now();
  let sent = 0;
  let answered = 0;
  while (answered < packets) {
    while (sent < packets && front.queueFrame(frame) !== undefined) sent++;
    front.push();
    nb.drain();
    const got = front.txResponses();
    if (got.length === 0) throw new Error(`bench TX: no progress after ${answered} of ${packets} frames`);
    for (const r of got) if (r.status !== NETIF_RSP_OKAY) throw new Error(`bench TX: request ${r.id} answered ${r.status}`);
    answered = sent;
  }
  const seconds = Math.max(Number(now() - t0) / 1e9, 1e-9);
  if (sink.frames !== packets) throw new Error(`bench TX: the bridge passed ${sink.frames} of ${packets} frames`);
  return { dir: 'tx', frameBytes, packets, seconds, packetsPerSec: packets / seconds, mbPerSec: sink.bytes / MB / seconds };
}

function rxRun(frameBytes: number, packets: number): NetBenchCase {
  const { nb, front, sink } = rig();
  const frame = frameOf(frameBytes, GUEST_MAC, SINK_MAC);
  const slots = rxSlotsFor(frameBytes);
  // As many frames per round as the ring has buffers for and the queue holds.
  const batch = Math.max(1, Math.min(Math.floor(NET_RX_RING_SIZE / slots), DEFAULT_RX_QUEUE_FRAMES,
    Math.floor(DEFAULT_RX_QUEUE_BYTES / frameBytes)));
  const t0 = now();
  let received = 0;
  let bytes = 0;
  while (received < packets) {
    front.postRx(NET_RX_RING_SIZE);
    front.push();
    const n = Math.min(batch, packets - received);
    for (let i = 0; i < n; i++) sink.link!.transmit(frame);
    nb.drain();
    const got = front.received();
    if (got.length !== n) throw new Error(`bench RX: ${got.length} of ${n} frames arrived`);
    for (const r of got) {
      if (!r.ok) throw new Error(`bench RX: a frame was answered ${r.status}`);
      bytes += r.frame.length;
    }
    received += n;
  }
  const seconds = Math.max(Number(now() - t0) / 1e9, 1e-9);
  return { dir: 'rx', frameBytes, packets, seconds, packetsPerSec: packets / seconds, mbPerSec: bytes / MB / seconds };
}

export function benchNetback(opts: NetBenchOptions = {}): NetBenchResult {
  const sizes = opts.frameSizes ?? [64, 1514, 9014];
  const packets = opts.packets ?? 20_000;
  for (const s of sizes) {
    if (!(Number.isInteger(s) && s >= 60 && s <= 0xffff)) throw new RangeError(`bench frame size ${s}: 60..65535 bytes`);
  }
  if (!(Number.isInteger(packets) && packets >= 1)) throw new RangeError(`bench packets ${packets}: at least 1`);
  const cases: NetBenchCase[] = [];
  for (const size of sizes) {
    txRun(size, Math.min(WARMUP, packets));
    cases.push(txRun(size, packets));
    rxRun(size, Math.min(WARMUP, packets));
    cases.push(rxRun(size, packets));
  }
  return { cases };
}

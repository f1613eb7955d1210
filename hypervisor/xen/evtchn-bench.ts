/*
 * Event channel micro-benchmark: a frontend and a backend domain ping-pong
 * over one interdomain channel. Each round trip is two EVTCHNOP_send calls
 * and two upcalls (drainPending) through real shared_info frames in machine
 * memory, i.e. the whole 2-level delivery path including the write path
 * into machine memory.
 */
import { MachineMemory } from './physmem.js';
import { FrameTable } from './frametable.js';
import { EventChannels, type EvtchnCaller } from './evtchn.js';
import { DOMID_SELF } from '../public/xen.js';

export interface EvtchnBenchResult {
  readonly roundTrips: number;
  readonly sends: number;
  readonly kicks: number;
  readonly ms: number;
  readonly sendsPerSec: number;
  readonly roundTripsPerSec: number;
}

export function benchEvtchn(roundTrips = 200_000): EvtchnBenchResult {
  const memory = new MachineMemory(64 * 4096);
  const frames = new FrameTable(memory, 1);
  const shinfo = new Map<number, number>([[0, frames.alloc(0)!], [1, frames.alloc(1)!]]);
  let kicks = 0;
  const ev = new EventChannels({
    vcpuCount: () => 1,
    sharedInfo: (d) => memory.frameMem(shinfo.get(d)!),
    kick: () => { kicks++; },
    wakePoller: () => {},
  });
  ev.initDomain(0);
  ev.initDomain(1);
  const back: EvtchnCaller = { domid: 0, vcpuId: 0, privileged: true };
  const front: EvtchnCaller = { domid: 1, vcpuId: 0, privileged: false };
  const backPort = ev.allocUnbound(back, DOMID_SELF, 1);
  const frontPort = ev.bindInterdomain(front, 0, backPort);
  if (backPort < 0 || frontPort < 0) throw new Error(`bench setup failed: ${backPort} ${frontPort}`);
  ev.drainPending(1, 0);
  kicks = 0;

  const start = process.hrtime.bigint();
  let delivered = 0;
  for (let i = 0; i < roundTrips; i++) {
    ev.send(front, frontPort);
    delivered += ev.drainPending(0, 0).length;
    ev.send(back, backPort);
    delivered += ev.drainPending(1, 0).length;
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (delivered !== 2 * roundTrips) throw new Error(`bench lost events: ${delivered} of ${2 * roundTrips}`);
  const secs = Math.max(ms, 1e-3) / 1000;
  return {
    roundTrips,
    sends: 2 * roundTrips,
    kicks,
    ms,
    sendsPerSec: Math.round((2 * roundTrips) / secs),
    roundTripsPerSec: Math.round(roundTrips / secs),
  };
}

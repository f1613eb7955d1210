/*
 * Event channel round trips through the whole machine: two guest domains
 * ping-pong over an interdomain channel. One round trip is a send each
 * way, each waking a blocked vCPU, running its upcall and its
 * continuation: hypercalls, 2-level delivery in shared_info, the
 * scheduler. (The event channel module's own micro-benchmark, without
 * guests, is hypervisor/xen/evtchn-bench.ts.)
 */
import { Machine } from '../hypervisor/xen/machine.js';
import { A_PARAM } from '../tests/kernels/guest.js';
import { pingKernel } from '../tests/kernels/basic.js';
import { build, result, rc } from '../tests/xen/builder.js';

export interface EventBench {
  readonly roundTrips: number;
  readonly roundTripsPerSec: number;
  readonly entriesPerRoundTrip: number;
}

export function benchEventRoundTrips(rounds = 50_000): EventBench {
  const m = new Machine({ memoryBytes: 32 * 1024 * 1024 });
  const a = build(m, pingKernel, { paused: true, args: { [A_PARAM]: 0, [A_PARAM + 3]: rounds } });
  const b = build(m, pingKernel, { paused: true, args: { [A_PARAM]: 1, [A_PARAM + 3]: rounds } });
  m.memory.writeU64(a.mbox, 8 * (A_PARAM + 1), BigInt(b.domid));
  m.memory.writeU64(b.mbox, 8 * (A_PARAM + 1), BigInt(a.domid));
  m.xc.unpauseDomain(a.domid);
  m.runUntil(() => a.d.state === 'blocked');
  m.memory.writeU64(b.mbox, 8 * (A_PARAM + 2), result(m, a, 0));
  const entries0 = m.sched.entries;
  const t0 = process.hrtime.bigint();
  m.xc.unpauseDomain(b.domid);
  m.runUntil(() => a.d.shuttingDown && b.d.shuttingDown);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (rc(m, b, 1) !== rounds) throw new Error(`ping-pong lost events: ${rc(m, b, 1)} of ${rounds}`);
  return {
    roundTrips: rounds,
    roundTripsPerSec: Math.round(rounds / (ms / 1000)),
    entriesPerRoundTrip: (m.sched.entries - entries0) / rounds,
  };
}

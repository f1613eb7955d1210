/*
 * Hypercall round trips per second: a guest kernel calling xen_version in
 * a loop, through GuestCpu.hypercall, the dispatch table and back; and the
 * same call made by dom0 (host code) through its arena.
 */
import { Machine } from '../hypervisor/xen/machine.js';
import { __HYPERVISOR_xen_version, XENVER_version } from '../hypervisor/public/xen.js';
import { A_PARAM } from '../tests/kernels/guest.js';
import { build } from '../tests/xen/builder.js';
import { hypercallLoopKernel } from './kernels.js';

export interface HypercallBench {
  readonly guestCallsPerSec: number;
  readonly dom0CallsPerSec: number;
  readonly calls: number;
}

export function benchHypercalls(calls = 2_000_000): HypercallBench {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024 });
  // Warm-up run, then the timed one.
  const warm = build(m, hypercallLoopKernel, { args: { [A_PARAM]: 100_000 } });
  m.runUntil(() => warm.d.shuttingDown);
  const b = build(m, hypercallLoopKernel, { args: { [A_PARAM]: calls } });
  const t0 = process.hrtime.bigint();
  m.runUntil(() => b.d.shuttingDown);
  const guestMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (b.d.crash !== null) throw new Error(`bench kernel crashed: ${b.d.crash.reason}`);

  const h = m.xc.h;
  const n0 = Math.floor(calls / 4);
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < n0; i++) h.call(__HYPERVISOR_xen_version, XENVER_version);
  const dom0Ms = Number(process.hrtime.bigint() - t1) / 1e6;
  return {
    calls,
    guestCallsPerSec: Math.round(calls / (guestMs / 1000)),
    dom0CallsPerSec: Math.round(n0 / (dom0Ms / 1000)),
  };
}

/*
 * Save/restore benchmarks:
 *
 *   benchSaveThroughput(sizes)   save and restore throughput of a guest of
 *                                each size against a raw write/read of the
 *                                same bytes to/from the same kind of file in
 *                                the same run (hypervisor/tools/save's
 *                                benchSaveRestore, the memtest guest)
 *   benchRestoreLatency(o)       a netbsd guest with workload=mem,clock is
 *                                suspended and saved on one host, then
 *                                restored on another, as `xl save` and
 *                                `xl restore` do: host wall time from the
 *                                start of the restore until both workloads
 *                                count on past the values they had at the
 *                                save
 *
 * Both break their totals down from the machines' trace (see
 * hypervisor/tools/save/bench.ts): the throughput rows carry the save's
 * and the restore's steps in host ms; the restore latency splits
 * untilRunningMs into restoreDomain's steps, the toolstack's (nodes,
 * XS_INTRODUCE, console, devices, unpause) and the guest's resume (the
 * hypercall-gate records of shared_info mapped, set_callbacks,
 * setup_table and the event channel binds, then xenstore, then the
 * workload's first data/ write) up to the workloads counting on.
 *
 * The suspend handshake latencies are in ./suspend.ts. Numbers are
 * returned, nothing is printed.
 */
import { performance } from 'node:perf_hooks';
import { MachineHost } from '../hypervisor/tools/machine/host.js';
import { benchSaveRestore, restoreDomain, type SaveBenchOptions, type SaveBenchRow } from '../hypervisor/tools/save/index.js';
import {
  RESTORE_STEPS, stepNames, stepsMs, toolstackStep, traceSince, type StepMs, type StepRule,
} from '../hypervisor/tools/save/bench.js';
import type { TraceRecord } from '../hypervisor/xen/trace.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';
import { memtestBenchGuest } from '../tests/save/fixture.js';
import { saveBytes } from '../tests/helpers/save-restore.js';
import { MiB, driveUntil, isSuspended, netbsdConfig, node } from './suspend.js';

export interface ThroughputRow extends SaveBenchRow {
  /** Save MiB/s over raw write MiB/s (1: as fast as the disk). */
  readonly saveRatio: number;
  /** Restore MiB/s over raw read MiB/s. */
  readonly restoreRatio: number;
  /** Host wall time of this size's whole round (guest set-up included), ms. */
  readonly roundMs: number;
}

export interface ThroughputOptions {
  /** Break each save and restore down into steps from the machines' trace (default true). */
  readonly trace?: boolean;
}

export async function benchSaveThroughput(
  sizesMiB: readonly number[] = [64, 256, 1024],
  onImage?: SaveBenchOptions['onImage'],
  o: ThroughputOptions = {},
): Promise<ThroughputRow[]> {
  const out: ThroughputRow[] = [];
  for (const size of sizesMiB) {
    const t0 = performance.now();
    const [r] = await benchSaveRestore(memtestBenchGuest, { sizesMiB: [size], trace: o.trace ?? true, ...(onImage === undefined ? {} : { onImage }) });
    if (r === undefined) throw new Error(`bench: no row for ${size} MiB`);
    out.push({ ...r, saveRatio: r.saveMiBps / r.rawWriteMiBps, restoreRatio: r.restoreMiBps / r.rawReadMiBps, roundMs: performance.now() - t0 });
  }
  return out;
}

export interface RestoreLatencyOptions {
  /** Guest memory (default 64 MiB). */
  readonly guestMiB?: number;
  /** mem workload size (default 8 MiB). */
  readonly memMiB?: number;
  /** Called with the saved image before it is restored, outside every measurement (tests check it). */
  readonly onImage?: (image: Uint8Array) => Promise<void> | void;
  /** Run the restoring machine with its trace on and break untilRunningMs down (default true). */
  readonly trace?: boolean;
}

/**
 * untilRunningMs, step by step from the restoring machine's trace: each
 * group starts where the one before ended, so the three add up to the
 * span from "stream read started" to the workloads counting on, which is
 * within untilRunningMs.
 */
export interface RestoreLatencyBreakdown {
  /** restoreDomain's steps (RESTORE_STEPS). */
  readonly restoreDomain: readonly StepMs[];
  /** adoptRestored's: xenstore nodes, XS_INTRODUCE, console, devices, unpause. */
  readonly toolstack: readonly StepMs[];
  /** From the unpause until the workloads count on past their values at the save. */
  readonly guestResume: readonly StepMs[];
}

export interface RestoreLatencyResult {
  readonly guestMiB: number;
  readonly imageBytes: number;
  /** Host ms of the save into memory (the image as `xl save` writes it, then the domain destroyed). */
  readonly saveMs: number;
  /** Host ms of restoreDomain alone (image in memory). */
  readonly restoreDomainMs: number;
  /** Host ms of the toolstack's part after it (MachineHost.adoptRestored): xenstore nodes, XS_INTRODUCE, console, ctrl_if, devices, unpause. */
  readonly toolstackMs: number;
  /** Host ms from the start of the restore until mem/rewrites and clock/ticks both passed their values at the save. */
  readonly untilRunningMs: number;
  /** Simulated system time the restored guest ran until then, ns. */
  readonly guestRunNs: number;
  readonly before: { readonly rewrites: number; readonly ticks: number };
  readonly after: { readonly rewrites: number; readonly ticks: number };
  /** From the trace (when the bench ran with `trace`). */
  readonly breakdown?: RestoreLatencyBreakdown;
}

/** The event the bench records once both workloads count on. */
export const WORKLOADS_COUNTING = 'workloads counting on';

const xenStep = (step: string, match: (event: string) => boolean): StepRule => ({ step, match: (r) => r.src === 'xen' && match(r.event) });
const GUEST_XS = new Set(['XS_WATCH', 'XS_RESET_WATCHES', 'XS_WRITE']);
/** A request of the guest's own (dom0's writes about it say "(by d0)"). */
const guestXs = (r: TraceRecord): boolean => r.src === 'xenstored' && GUEST_XS.has(r.event) && !/\(by d\d+\)/.test(r.detail ?? '');
const FIRST_DATA = /\(first data\/ write/;

/** adoptRestored's steps, after restoreDomain's. */
export const ADOPT_STEPS: readonly StepRule[] = [
  toolstackStep('xenstore nodes written'),
  { step: 'XS_INTRODUCE', match: (r) => r.src === 'xenstored' && r.event === 'XS_INTRODUCE' },
  toolstackStep('console attached'),
  toolstackStep('devices attached'),
  xenStep('unpause', (e) => e === 'domctl unpausedomain'),
];

/** The guest's resume as the hypercall gate and xenstored see it, then the bench's own record. */
export const GUEST_RESUME_STEPS: readonly StepRule[] = [
  xenStep('shared_info mapped', (e) => e === 'shared_info mapped'),
  xenStep('set_callbacks', (e) => e === 'set_callbacks'),
  xenStep('GNTTABOP_setup_table', (e) => e === 'GNTTABOP_setup_table'),
  xenStep('event channels bound', (e) => e.startsWith('EVTCHNOP_')),
  { step: 'xenstore watches', match: (r) => guestXs(r) && !FIRST_DATA.test(r.detail ?? '') },
  { step: 'first data/ write', match: (r) => guestXs(r) && FIRST_DATA.test(r.detail ?? '') },
  toolstackStep('workloads counting', WORKLOADS_COUNTING),
];

/** Every step of the restore latency in protocol order, by group. */
export const RESTORE_LATENCY_STEP_NAMES = {
  restoreDomain: stepNames(RESTORE_STEPS),
  toolstack: stepNames(ADOPT_STEPS),
  guestResume: stepNames(GUEST_RESUME_STEPS),
} as const;

function latencyBreakdown(records: readonly TraceRecord[]): RestoreLatencyBreakdown {
  const steps = stepsMs(records, [...RESTORE_STEPS, ...ADOPT_STEPS, ...GUEST_RESUME_STEPS]);
  const of = (names: readonly string[]): StepMs[] => steps.filter((s) => names.includes(s.step));
  return {
    restoreDomain: of(RESTORE_LATENCY_STEP_NAMES.restoreDomain),
    toolstack: of(RESTORE_LATENCY_STEP_NAMES.toolstack),
    guestResume: of(RESTORE_LATENCY_STEP_NAMES.guestResume),
  };
}

function counter(h: MachineHost, domid: number, wl: string, name: string): number {
  const v = node(h, `/local/domain/${domid}/data/workload/${wl}/${name}`);
  return v === undefined ? NaN : Number(v);
}

export async function benchRestoreLatency(o: RestoreLatencyOptions = {}): Promise<RestoreLatencyResult> {
  const guestMiB = o.guestMiB ?? 64;
  const memMiB = o.memMiB ?? 8;
  const machine = (seed: number, tscKhz: number) => ({ memoryBytes: (guestMiB + 64) * MiB, clock: 'simulated' as const, scrambleSeed: seed, tscKhz });
  const cfg = netbsdConfig('bench-restore', `workload=mem,clock mem_mb=${memMiB}`, guestMiB);
  const a = await MachineHost.create({ machine: machine(41, 2_000_000), images: [netbsdImage] });
  let image: Uint8Array;
  let saveMs: number;
  let before: { rewrites: number; ticks: number };
  try {
    const b0 = await a.create(cfg);
    const d0 = b0.domid;
    await driveUntil(a, () => node(a, `/local/domain/${d0}/data/boot`) === 'complete', 'boot');
    await driveUntil(a, () => counter(a, d0, 'mem', 'passes') >= 1 && counter(a, d0, 'mem', 'rewrites') >= 1 && counter(a, d0, 'clock', 'ticks') >= 1,
      'the mem and clock workloads running');
    await a.xs.write(`/local/domain/${d0}/control/shutdown`, 'suspend');
    await driveUntil(a, () => isSuspended(a, d0), 'the suspend');
    before = { rewrites: counter(a, d0, 'mem', 'rewrites'), ticks: counter(a, d0, 'clock', 'ticks') };
    const s0 = performance.now();
    image = await saveBytes(a, d0);
    saveMs = performance.now() - s0;
  } finally {
    await a.close();
  }
  await o.onImage?.(image);

  const trace = o.trace ?? true;
  const h = await MachineHost.create({ machine: { ...machine(43, 3_100_000), trace }, images: [netbsdImage] });
  try {
    const since = h.m.trace.nextSeq;
    const w0 = performance.now();
    const r = await restoreDomain(h.m, image, trace ? { onStep: h.m.trace.steps() } : {});
    const restoreDomainMs = performance.now() - w0;
    const { domid: d } = await h.adoptRestored(r, { what: 'bench: restore', source: 'the bench image', paused: false });
    const toolstackMs = performance.now() - w0 - restoreDomainMs;
    const g0 = h.m.clock.now();
    await driveUntil(h, () => counter(h, d, 'mem', 'rewrites') > before.rewrites && counter(h, d, 'clock', 'ticks') > before.ticks,
      'the workloads counting on after the restore');
    h.m.trace.record(d, 'toolstack', WORKLOADS_COUNTING);
    const untilRunningMs = performance.now() - w0;
    return {
      guestMiB, imageBytes: image.length, saveMs, restoreDomainMs, toolstackMs, untilRunningMs, guestRunNs: h.m.clock.now() - g0, before,
      after: { rewrites: counter(h, d, 'mem', 'rewrites'), ticks: counter(h, d, 'clock', 'ticks') },
      ...(trace ? { breakdown: latencyBreakdown(traceSince(h.m.trace, since, 'restore')) } : {}),
    };
  } finally {
    await h.close();
  }
}

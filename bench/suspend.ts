/*
 * Suspend handshake latency of the netbsd guest, per path a toolstack can
 * ask by: xenstore (control/shutdown = suspend), the suspend event channel
 * the guest advertises in device/suspend/event-channel, and ctrl_if
 * (CMSG_SHUTDOWN_SUSPEND from dom0's DomainController). Each run times the
 * request until the toolstack sees SHUTDOWN_suspend, in simulated system
 * time (ns) and in host wall time (ms); between runs the suspend is
 * cancelled (rax = 1, resumedomain, XS_RESUME) and the guest resumes in the
 * same domain. Medians of `runs` per path. Numbers are returned, nothing
 * is printed.
 *
 * Where the handshake's simulated time goes comes from the machine's trace
 * (on by default): the bench records "suspend requested" as it asks and
 * "SHUTDOWN_suspend seen" as it sees the domain suspended, and in between
 * the hypercall gate records the guest's suspend path; each run splits into
 * the request until the first hypercall of that path the trace records
 * (the gate records only protocol steps, see trace-hypercalls.ts), from there
 * until its SCHEDOP_shutdown(suspend), and from there until the toolstack
 * sees it. Both ends are taken on the same clock reads as simNs, so the
 * steps add up to simNs exactly.
 */
import { performance } from 'node:perf_hooks';
import { SHUTDOWN_suspend } from '../hypervisor/public/sched.js';
import { domid as toDomId } from '../hypervisor/public/types.js';
import { MachineHost } from '../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../hypervisor/tools/xl/config.js';
import { lookup } from '../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../hypervisor/tools/xenstored/wire.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';
import { durations, stepsOf, toolstackStep, traceSince, type StepRule } from '../hypervisor/tools/save/bench.js';
import type { TraceRecord } from '../hypervisor/xen/trace.js';

export const MiB = 2 ** 20;
export type SuspendPath = 'xenstore' | 'evtchn' | 'ctrl_if';
export const SUSPEND_PATHS: readonly SuspendPath[] = ['xenstore', 'evtchn', 'ctrl_if'];

export interface SuspendBenchOptions {
  /** Suspends per path (default 9). */
  readonly runs?: number;
  /** Paths to measure (default all three). */
  readonly paths?: readonly SuspendPath[];
  /** Run with the machine's trace on and break each run down into steps (default true). */
  readonly trace?: boolean;
}

/** A step of one suspend handshake: simulated ns (and host ms, for reading only). */
export interface StepNs {
  readonly step: string;
  readonly ns: number;
  readonly ms: number;
}

/** What the bench records at the two ends of each handshake. */
export const SUSPEND_REQUESTED = 'suspend requested';
export const SUSPEND_SEEN = 'SHUTDOWN_suspend seen';
/** The steps of a handshake, in protocol order. */
export const SUSPEND_STEP_NAMES = ['first suspend hypercall', 'SCHEDOP_shutdown', 'seen by the toolstack'] as const;

/** The rules for domain `domid`'s handshake (the SCHEDOP_shutdown rule first: it is never "the first hypercall"). */
function suspendRules(domid: number): StepRule[] {
  const guestCall = (r: TraceRecord): boolean => r.src === 'xen' && r.domid === domid && !r.event.startsWith('domctl ');
  return [
    { step: SUSPEND_STEP_NAMES[1], match: (r) => guestCall(r) && r.event === 'SCHEDOP_shutdown' },
    { step: SUSPEND_STEP_NAMES[0], match: guestCall, once: true },
    toolstackStep(SUSPEND_STEP_NAMES[2], SUSPEND_SEEN),
  ];
}

/** One handshake's steps from its records (the first being SUSPEND_REQUESTED), and which hypercall came first. */
export function suspendSteps(records: readonly TraceRecord[], domid: number): { steps: StepNs[]; firstHypercall?: string } {
  const start = records[0];
  if (start === undefined) return { steps: [] };
  const ends = stepsOf(records, suspendRules(domid));
  const first = ends.find((e) => e.step === SUSPEND_STEP_NAMES[0])?.end.event;
  const ms = durations(start, ends, 'hostMs');
  const steps = durations(start, ends, 'ns').map(({ step, d }, i) => ({ step, ns: d, ms: ms[i]!.d }));
  return { steps, ...(first === undefined ? {} : { firstHypercall: first }) };
}

export interface SuspendPathResult {
  readonly path: SuspendPath;
  readonly runs: number;
  /** Median simulated system time from the request to SHUTDOWN_suspend, ns. */
  readonly medianSimNs: number;
  /** Median host wall time of the same, ms. */
  readonly medianWallMs: number;
  readonly simNs: readonly number[];
  readonly wallMs: readonly number[];
  /** From the trace (when on): each run's steps, adding up to its simNs. */
  readonly stepsNs?: readonly (readonly StepNs[])[];
  /** The median of each step (ns and ms apart) over the runs that had it, in protocol order. */
  readonly medianStepsNs?: readonly StepNs[];
  /** The guest's first hypercall of the suspend path that the trace records (the first run's). */
  readonly firstHypercall?: string;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Each step's median over the runs that had it, in SUSPEND_STEP_NAMES order. */
function medianSteps(runs: readonly (readonly StepNs[])[]): StepNs[] {
  return SUSPEND_STEP_NAMES.flatMap((step) => {
    const xs = runs.flatMap((r) => r.filter((s) => s.step === step));
    return xs.length === 0 ? [] : [{ step, ns: median(xs.map((s) => s.ns)), ms: median(xs.map((s) => s.ms)) }];
  });
}

export function turn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** A node's value straight from xenstored's state (undefined: no such node). */
export function node(h: MachineHost, path: string): string | undefined {
  const n = lookup(h.xenstored.state.root, path);
  return n === undefined ? undefined : latin1(n.value);
}

export function consoleText(h: MachineHost, domid: number): string {
  return latin1(h.consoled.tail(toDomId(domid)));
}

/** Slices of simulated time between turns of the event loop (dom0's promises). */
const SLICE_NS = 5_000_000;

/** Run the machine and the event loop in turn until `cond` holds; throw after `maxNs` of system time. */
export async function driveUntil(h: MachineHost, cond: () => boolean, what: string, maxNs = 60_000_000_000): Promise<void> {
  const end = h.m.clock.now() + maxNs;
  for (let i = 0; i < 1_000_000 && !cond() && h.m.clock.now() < end; i++) {
    const until = Math.min(end, h.m.clock.now() + SLICE_NS);
    h.m.runUntil(() => cond() || h.m.clock.now() >= until, 100_000);
    await turn();
  }
  if (!cond()) throw new Error(`bench: never saw ${what} within ${maxNs / 1e6} ms of system time`);
}

export function isSuspended(h: MachineHost, domid: number): boolean {
  const i = h.m.xc.getDomainInfo(domid);
  return i !== undefined && i.shutdown && i.shutdownReason === SHUTDOWN_suspend;
}

export function netbsdConfig(name: string, extra: string, memoryMiB: number): DomainConfig {
  return {
    name, kernel: netbsdImage.name, memory: memoryMiB, vcpus: 1, extra, disks: [], vifs: [],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
  };
}

function count(text: string, s: string): number {
  return text.split(s).length - 1;
}

const CANCELLED = 'suspend cancelled, resumed in the same domain';

export async function benchSuspend(o: SuspendBenchOptions = {}): Promise<SuspendPathResult[]> {
  const runs = o.runs ?? 9;
  const trace = o.trace ?? true;
  const h = await MachineHost.create({
    machine: { memoryBytes: 96 * MiB, clock: 'simulated', scrambleSeed: 17, trace }, images: [netbsdImage],
  });
  try {
    const b = await h.create(netbsdConfig('bench-suspend', 'workload=clock', 32));
    const d = b.domid;
    const dom = `/local/domain/${d}`;
    await driveUntil(h, () => node(h, `${dom}/data/boot`) === 'complete', 'boot');
    await driveUntil(h, () => /^\d+$/.test(node(h, `${dom}/device/suspend/event-channel`) ?? ''), 'device/suspend/event-channel');
    const local = h.m.xc.bindInterdomain(d, Number(node(h, `${dom}/device/suspend/event-channel`)));
    if (local <= 0) throw new Error(`bench: bindInterdomain: ${local}`);
    let cancels = 0;
    const out: SuspendPathResult[] = [];
    for (const path of o.paths ?? SUSPEND_PATHS) {
      const simNs: number[] = [];
      const wallMs: number[] = [];
      const stepsNs: StepNs[][] = [];
      let firstHypercall: string | undefined;
      for (let i = 0; i < runs; i++) {
        let answered = (path === 'ctrl_if' ? undefined : true) as boolean | undefined;
        const since = h.m.trace.nextSeq;
        const s0 = h.m.clock.now();
        const w0 = performance.now();
        h.m.trace.record(d, 'toolstack', SUSPEND_REQUESTED, `via ${path}`);
        if (path === 'xenstore') {
          await h.xs.write(`${dom}/control/shutdown`, 'suspend');
        } else if (path === 'evtchn') {
          if (h.m.xc.notify(local) !== 0) throw new Error('bench: notify failed');
        } else {
          void h.controller.sendShutdown(toDomId(d), 'suspend').then((r) => {
            answered = r.ok;
          });
        }
        await driveUntil(h, () => isSuspended(h, d), `suspend ${i + 1} via ${path}`);
        h.m.trace.record(d, 'toolstack', SUSPEND_SEEN);
        wallMs.push(performance.now() - w0);
        simNs.push(h.m.clock.now() - s0);
        if (trace) {
          const b = suspendSteps(traceSince(h.m.trace, since, `suspend via ${path}`), d);
          stepsNs.push(b.steps);
          firstHypercall ??= b.firstHypercall;
        }
        // Cancel (what `xl save -c` does) and wait until the guest runs on.
        if (h.m.xc.setSuspendResult(d, 1) !== 0) throw new Error('bench: setSuspendResult failed');
        if (h.m.xc.resumeDomain(d) !== 0) throw new Error('bench: resumedomain failed');
        await h.xs.resume(d);
        h.domainResumed(d);
        cancels++;
        await driveUntil(h, () => count(consoleText(h, d), CANCELLED) >= cancels && answered !== undefined, `resume ${cancels}`);
        if ((answered as boolean | undefined) === false) throw new Error('bench: ctrl_if suspend request failed');
        if (path === 'xenstore') await driveUntil(h, () => node(h, `${dom}/control/shutdown`) === '', 'control/shutdown acked');
        // Let the guest run a little before the next request.
        const settle = h.m.clock.now() + 20_000_000;
        await driveUntil(h, () => h.m.clock.now() >= settle, 'settle');
      }
      out.push({
        path, runs, medianSimNs: median(simNs), medianWallMs: median(wallMs), simNs, wallMs,
        ...(trace ? { stepsNs, medianStepsNs: medianSteps(stepsNs) } : {}),
        ...(firstHypercall === undefined ? {} : { firstHypercall }),
      });
    }
    return out;
  } finally {
    await h.close();
  }
}

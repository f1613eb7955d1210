/*
 * Shared set-up for the builder and machine-host tests: an in-process
 * machine host (simulated clock) with the probe kernel, configs, and
 * host-side readers of a built domain's memory.
 */
import type { ExecutionContext } from 'ava';
import { MachineHost, type HostOptions } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { probeKernel } from './builder-kernel.js';

export const MiB = 2 ** 20;

export function config(name: string, over: Partial<DomainConfig> = {}): DomainConfig {
  return {
    name, kernel: 'probe', memory: 16, vcpus: 1, extra: '', disks: [], vifs: [],
    onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
    ...over,
  };
}

export async function host(t: ExecutionContext, opts: HostOptions = {}): Promise<MachineHost> {
  const h = await MachineHost.create({
    machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: 7 },
    images: [probeKernel],
    ...opts,
  });
  t.teardown(() => h.close());
  return h;
}

/** u64 slot `i` of a probe domain's report page (its PFN 0). */
export function report(h: MachineHost, b: BuiltDomain, i: number): number {
  return Number(h.m.memory.readU64(b.p2m[0]!, 8 * i));
}

/** Run the machine until `cond` holds; fails the test if it never does. */
export function runUntil(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, budget = 100_000): void {
  const r = h.m.runUntil(cond, budget);
  if (r !== 'done') t.fail(`machine went ${r} before ${what}`);
}

/**
 * Run the machine and the host's async work (xenstore replies, lifecycle
 * actions) in turn until `cond` holds: each round runs the machine until it
 * holds or idles, then lets pending promises settle. No sleeps: a round is
 * one turn of the event loop.
 */
export async function drive(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, rounds = 200): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (h.m.runUntil(cond, 100_000) === 'done') return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (cond()) return;
  }
  t.fail(`never saw ${what}`);
}

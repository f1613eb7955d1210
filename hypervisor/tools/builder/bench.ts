/*
 * Builder benchmarks, for bench/ and for anyone curious:
 *
 *  - boot time: from `xl create` (the builder's first hypercall) to the
 *    guest kernel's first instruction (vCPU 0's first entry), wall time;
 *  - creation rate: domains built per second (paused, so that only the
 *    builder is measured), on one machine, until `guests` exist.
 *
 * The machine runs on the simulated clock: only host CPU time is measured.
 */
import { performance } from 'node:perf_hooks';
import type { KernelImage } from '../../public/cpu.js';
import { MachineHost } from '../machine/host.js';
import type { DomainConfig } from '../xl/config.js';

export interface BuilderBenchOptions {
  /** Domains for the creation rate (default 50). */
  readonly guests?: number;
  /** MiB per domain (default 16). */
  readonly memoryMiB?: number;
  /** Boots timed for the boot-time figure (default 10; the median is reported). */
  readonly boots?: number;
  /** The kernel command line (`extra`). */
  readonly extra?: string;
}

export interface BuilderBenchResult {
  readonly image: string;
  readonly memoryMiB: number;
  /** Median wall ms from create to the guest's first entry. */
  readonly bootMs: number;
  readonly guests: number;
  /** Domains built per second. */
  readonly createsPerSecond: number;
}

function cfgFor(image: KernelImage, name: string, memory: number, extra: string): DomainConfig {
  return {
    name, kernel: image.name, memory, vcpus: 1, extra, disks: [], vifs: [],
    onPoweroff: 'destroy', onReboot: 'destroy', onCrash: 'preserve',
  };
}

export async function benchBuilder(image: KernelImage, opts: BuilderBenchOptions = {}): Promise<BuilderBenchResult> {
  const guests = opts.guests ?? 50;
  const memory = opts.memoryMiB ?? 16;
  const boots = opts.boots ?? 10;
  const extra = opts.extra ?? '';
  const machineMiB = Math.max(64, (guests + 1) * (memory + 1) + 32);
  const host = await MachineHost.create({ machine: { memoryBytes: machineMiB * 2 ** 20, clock: 'simulated' }, images: [image] });
  try {
    const times: number[] = [];
    for (let i = 0; i < boots; i++) {
      const t0 = performance.now();
      const b = await host.create(cfgFor(image, `boot${i}`, memory, extra));
      const v = host.m.domain(b.domid)!.vcpus[0]!;
      host.m.runUntil(() => v.entries > 0, 1_000_000);
      times.push(performance.now() - t0);
      await host.destroy(b.domid);
    }
    times.sort((a, b) => a - b);
    const t0 = performance.now();
    for (let i = 0; i < guests; i++) await host.create(cfgFor(image, `g${i}`, memory, extra), true);
    const seconds = (performance.now() - t0) / 1000;
    return {
      image: image.name,
      memoryMiB: memory,
      bootMs: times[Math.floor(times.length / 2)] ?? 0,
      guests,
      createsPerSecond: guests / seconds,
    };
  } finally {
    await host.close();
  }
}

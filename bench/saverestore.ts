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
 * The suspend handshake latencies are in ./suspend.ts. Numbers are
 * returned, nothing is printed.
 */
import { performance } from 'node:perf_hooks';
import { MachineHost } from '../hypervisor/tools/machine/host.js';
import { benchSaveRestore, restoreDomain, waitForSuspend, type SaveBenchOptions, type SaveBenchRow } from '../hypervisor/tools/save/index.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';
import { ALL_MEMTEST_KERNELS, memtestKernel } from '../tests/save/kernels/memtest.js';
import { askSuspend, guest } from '../tests/save/fixture.js';
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

export async function benchSaveThroughput(
  sizesMiB: readonly number[] = [64, 256, 1024],
  onImage?: SaveBenchOptions['onImage'],
): Promise<ThroughputRow[]> {
  const out: ThroughputRow[] = [];
  for (const size of sizesMiB) {
    const t0 = performance.now();
    const [r] = await benchSaveRestore({
      images: ALL_MEMTEST_KERNELS,
      async suspended(m, pages) {
        const g = guest(m, memtestKernel, { pages, patternPages: 64 });
        askSuspend(m, g.domid);
        await waitForSuspend(m, g.domid, 1e9);
        return g.domid;
      },
    }, { sizesMiB: [size], ...(onImage === undefined ? {} : { onImage }) });
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

  const h = await MachineHost.create({ machine: machine(43, 3_100_000), images: [netbsdImage] });
  try {
    const w0 = performance.now();
    const r = await restoreDomain(h.m, image);
    const restoreDomainMs = performance.now() - w0;
    const { domid: d } = await h.adoptRestored(r, { what: 'bench: restore', source: 'the bench image', paused: false });
    const toolstackMs = performance.now() - w0 - restoreDomainMs;
    const g0 = h.m.clock.now();
    await driveUntil(h, () => counter(h, d, 'mem', 'rewrites') > before.rewrites && counter(h, d, 'clock', 'ticks') > before.ticks,
      'the workloads counting on after the restore');
    const untilRunningMs = performance.now() - w0;
    return {
      guestMiB, imageBytes: image.length, saveMs, restoreDomainMs, toolstackMs, untilRunningMs, guestRunNs: h.m.clock.now() - g0, before,
      after: { rewrites: counter(h, d, 'mem', 'rewrites'), ticks: counter(h, d, 'clock', 'ticks') },
    };
  } finally {
    await h.close();
  }
}

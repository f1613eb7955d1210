/*
 * Boot benchmark: host time to build and boot a 64 MiB netbsd guest
 * (create -> "boot complete" on its console), and how many 16 MiB guests
 * one machine builds and boots per second of host time.
 */
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { BOOT_COMPLETE } from '../../arch/xen/x86/machdep.js';
import { bootRig } from './fixture.js';

export interface BootBenchOptions {
  /** Guests for the throughput part (default 40). */
  readonly guests?: number;
  /** Size of each of those guests in MiB (default 16). */
  readonly guestMiB?: number;
  /** Size of the single-boot guest in MiB (default 64). */
  readonly bootMiB?: number;
}

export interface BootBenchResult {
  /** Host ms from createdomain to the boot-complete line, one guest of bootMiB. */
  readonly bootMs: number;
  readonly bootMiB: number;
  /** Guest entries that boot took (1 is the whole boot in one entry). */
  readonly bootEntries: number;
  readonly guests: number;
  readonly guestMiB: number;
  /** Host ms to build and boot all of them, one after the other on one machine. */
  readonly totalMs: number;
  readonly guestsPerSec: number;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function benchBoot(o: BootBenchOptions = {}): BootBenchResult {
  const bootMiB = o.bootMiB ?? 64;
  const guests = o.guests ?? 40;
  const guestMiB = o.guestMiB ?? 16;

  const one = bootRig({ memoryBytes: (bootMiB + 64) * 1024 * 1024 });
  const t0 = nowMs();
  const pv = one.create({ image: netbsdImage, memMiB: bootMiB });
  one.runUntilOutput(pv.domid, BOOT_COMPLETE);
  const bootMs = nowMs() - t0;
  const bootEntries = one.m.domain(pv.domid)!.vcpus[0]!.entries;

  const many = bootRig({ memoryBytes: (guests * (guestMiB + 1) + 64) * 1024 * 1024 });
  const t1 = nowMs();
  for (let i = 0; i < guests; i++) {
    const g = many.create({ image: netbsdImage, memMiB: guestMiB });
    many.runUntilOutput(g.domid, BOOT_COMPLETE);
  }
  const totalMs = nowMs() - t1;
  return {
    bootMs, bootMiB, bootEntries, guests, guestMiB, totalMs,
    guestsPerSec: Math.round((guests * 1000) / Math.max(totalMs, 1e-3)),
  };
}

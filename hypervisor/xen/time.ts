/*
 * Time: the machine's system time (ns since boot), its TSC, the per-vCPU
 * `vcpu_time_info` records and the wall clock in shared_info, and the
 * timer queue the scheduler drains.
 *
 * The TSC is the primary counter: tsc = raw_ns * tsc_khz / 10^6, and the
 * system time the hypervisor uses (timers, time records) is *defined* as
 * the TSC scaled with the very mul/shift pair the guest is given. A guest
 * extrapolating from a record computes
 *     system_time + scale(tsc - tsc_timestamp)
 * and since scale() truncates, scale(a) + scale(b) <= scale(a + b): the
 * guest never runs ahead of the hypervisor, and a fresh record is exactly
 * the hypervisor's time. That makes the guest's clock monotonic across
 * record updates for any TSC frequency, not just above 1 GHz.
 *
 * Two clocks drive raw_ns: `simulated` (a counter the scheduler advances:
 * a small quantum per guest entry, and a jump to the next timer when every
 * vCPU is blocked) and `realtime` (the host's monotonic clock).
 */
import type { ByteMem } from '../public/layout.js';
import { vcpu_time_info, shared_info, XEN_PVCLOCK_TSC_STABLE_BIT } from '../public/xen.js';

export type ClockKind = 'simulated' | 'realtime';

/** Xen's `struct time_scale`: tsc_to_system_mul and tsc_shift. */
export interface TimeScale {
  readonly mul: number;
  readonly shift: number;
}

const NS_PER_SEC = 1_000_000_000n;

/**
 * Xen's set_time_scale(): normalise ticks/s into (2 GHz/2, 2 GHz] by
 * shifting, then mul = (10^9 << 32) / normalised (div_frac).
 */
export function timeScaleFor(ticksPerSec: bigint): TimeScale {
  if (ticksPerSec <= 0n) throw new RangeError(`tsc frequency ${ticksPerSec}`);
  let tps64 = ticksPerSec;
  let shift = 0;
  while (tps64 > NS_PER_SEC * 2n) {
    tps64 >>= 1n;
    shift--;
  }
  let tps32 = BigInt.asUintN(32, tps64);
  while (tps32 <= NS_PER_SEC) {
    tps32 <<= 1n;
    shift++;
  }
  const mul = (NS_PER_SEC << 32n) / tps32;
  return { mul: Number(mul), shift };
}

/** Xen's scale_delta(): the guest formula, (delta << shift) * mul >> 32. */
export function scaleDelta(delta: bigint, ts: TimeScale): bigint {
  const d = ts.shift < 0 ? delta >> BigInt(-ts.shift) : delta << BigInt(ts.shift);
  return (d * BigInt(ts.mul)) >> 32n;
}

/** A wall-clock instant as shared_info stores it. */
export interface WallClock {
  readonly sec: number;
  readonly nsec: number;
}

export interface ClockOptions {
  readonly kind: ClockKind;
  readonly tscKhz: number;
  /**
   * Unix time (ns) at system time 0. Simulated clocks default to a fixed
   * instant so runs are reproducible; realtime clocks to the host's clock.
   */
  readonly bootWallNs?: bigint;
}

/** 2024-01-01T00:00:00Z: the simulated machine's boot instant. */
export const SIMULATED_BOOT_WALL_NS = 1_704_067_200n * NS_PER_SEC;

export class Clock {
  readonly kind: ClockKind;
  readonly tscKhz: number;
  readonly scale: TimeScale;
  readonly bootWallNs: bigint;
  private simRawNs = 0;
  private readonly hostBase: bigint;

  constructor(opts: ClockOptions) {
    if (!Number.isInteger(opts.tscKhz) || opts.tscKhz <= 0 || opts.tscKhz > 0xffff_ffff) {
      throw new RangeError(`tscKhz must be a positive 32-bit integer, not ${opts.tscKhz}`);
    }
    this.kind = opts.kind;
    this.tscKhz = opts.tscKhz;
    this.scale = timeScaleFor(BigInt(opts.tscKhz) * 1000n);
    this.hostBase = process.hrtime.bigint();
    this.bootWallNs = opts.bootWallNs ?? (opts.kind === 'simulated' ? SIMULATED_BOOT_WALL_NS : BigInt(Date.now()) * 1_000_000n);
  }

  /** ns of the underlying counter (not yet quantised by the TSC). */
  rawNs(): number {
    return this.kind === 'simulated' ? this.simRawNs : Number(process.hrtime.bigint() - this.hostBase);
  }

  private tscAt(raw: number): bigint {
    return (BigInt(raw) * BigInt(this.tscKhz)) / 1_000_000n;
  }

  /** The time stamp counter (`rdtsc`). */
  tsc(): bigint {
    return this.tscAt(this.rawNs());
  }

  /** System time in ns: the TSC through the guest-visible scale. */
  now(): number {
    return Number(scaleDelta(this.tsc(), this.scale));
  }

  /** Both at once, consistent with each other (for a time record). */
  sample(): { tsc: bigint; systemTime: number } {
    const tsc = this.tsc();
    return { tsc, systemTime: Number(scaleDelta(tsc, this.scale)) };
  }

  /** Simulated clock: move raw time forward by `ns`. */
  advance(ns: number): void {
    if (this.kind !== 'simulated') return;
    if (ns > 0) this.simRawNs += ns;
  }

  /** Simulated clock: move forward until now() >= `systemTime` (never back). */
  advanceTo(systemTime: number): void {
    if (this.kind !== 'simulated') return;
    if (this.simRawNs < systemTime) this.simRawNs = systemTime;
    // Scaling truncates, so now() may trail raw ns by a tick or so: step up.
    for (let i = 0; i < 64 && this.now() < systemTime; i++) {
      this.simRawNs += Math.max(1, Math.ceil((systemTime - this.now()) * 1.0001));
    }
  }

  /** Wall clock of system time 0 (what shared_info's wc_* hold). */
  wallAtBoot(): WallClock {
    return { sec: Number(this.bootWallNs / NS_PER_SEC), nsec: Number(this.bootWallNs % NS_PER_SEC) };
  }
}

/**
 * Write one vcpu_time_info with Xen's version protocol: the version is odd
 * while the fields change, so a reader that saw an odd or changed version
 * retries.
 */
export function writeTimeInfo(mem: ByteMem, base: number, tsc: bigint, systemTime: number, scale: TimeScale): void {
  const v = vcpu_time_info.view(mem, base);
  const version = v.get('version');
  v.set('version', (version + 1) | 1);
  v.set('tsc_timestamp', tsc);
  v.set('system_time', BigInt(systemTime));
  v.set('tsc_to_system_mul', scale.mul);
  v.set('tsc_shift', scale.shift);
  v.set('flags', XEN_PVCLOCK_TSC_STABLE_BIT);
  v.set('version', ((version | 1) + 1) >>> 0);
}

/** Write shared_info's wall clock (wc_version odd while updating). */
export function writeWallClock(sharedInfo: ByteMem, wc: WallClock): void {
  const s = shared_info.view(sharedInfo, 0);
  const version = s.get('wc_version');
  s.set('wc_version', (version + 1) | 1);
  s.set('wc_sec', wc.sec >>> 0);
  s.set('wc_nsec', wc.nsec >>> 0);
  s.set('wc_sec_hi', Math.floor(wc.sec / 2 ** 32) >>> 0);
  s.set('wc_version', ((version | 1) + 1) >>> 0);
}

/**
 * What a guest computes from a record (the reference reader, used by the
 * tests and by host code that wants a guest's view of time).
 */
export function readGuestTime(mem: ByteMem, base: number, tsc: bigint): number | undefined {
  const v = vcpu_time_info.view(mem, base);
  for (let tries = 0; tries < 4; tries++) {
    const before = v.get('version');
    if (before & 1) continue;
    const stamp = v.get('tsc_timestamp');
    const sys = v.get('system_time');
    const scale = { mul: v.get('tsc_to_system_mul'), shift: v.get('tsc_shift') };
    if (v.get('version') !== before) continue;
    return Number(sys + scaleDelta(tsc - stamp, scale));
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Timer queue: an indexed binary min-heap so a timer can be re-armed or
// cancelled in O(log n) (guests re-arm their one-shot timer every tick).

export class Timer {
  deadline = 0;
  /** Position in the heap, -1 when not queued. */
  index = -1;
  /** Tie-break for equal deadlines: arming order, so firing is deterministic. */
  seq = 0;
  constructor(readonly fire: () => void) {}
  get active(): boolean {
    return this.index >= 0;
  }
}

export class TimerQueue {
  private readonly heap: Timer[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Arm (or re-arm) `t` for absolute system time `deadline`. */
  set(t: Timer, deadline: number): void {
    if (t.index >= 0) this.remove(t);
    t.deadline = deadline;
    t.seq = this.seq++;
    t.index = this.heap.length;
    this.heap.push(t);
    this.up(t.index);
  }

  cancel(t: Timer): void {
    if (t.index >= 0) this.remove(t);
  }

  /** Earliest deadline, or undefined when nothing is armed. */
  next(): number | undefined {
    return this.heap[0]?.deadline;
  }

  /** Fire every timer due at `now`, earliest first. Returns how many fired. */
  runDue(now: number): number {
    let n = 0;
    for (let top = this.heap[0]; top !== undefined && top.deadline <= now; top = this.heap[0]) {
      this.remove(top);
      top.fire();
      n++;
    }
    return n;
  }

  private less(a: Timer, b: Timer): boolean {
    return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    this.heap[i] = b;
    this.heap[j] = a;
    a.index = j;
    b.index = i;
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(this.heap[i]!, this.heap[p]!)) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(this.heap[l]!, this.heap[m]!)) m = l;
      if (r < n && this.less(this.heap[r]!, this.heap[m]!)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private remove(t: Timer): void {
    const i = t.index;
    const last = this.heap.length - 1;
    if (i !== last) this.swap(i, last);
    this.heap.pop();
    t.index = -1;
    if (i < this.heap.length) {
      this.down(i);
      this.up(i);
    }
  }
}

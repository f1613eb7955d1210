/*
 * The trace tests' world: a netbsd guest with a disk and a vif, saved by
 * one MachineHost (simulated clock, trace on) with `xl save`'s code path
 * and restored into another with `xl restore`'s, the way the machine
 * daemon does it; and helpers to find records and check their order.
 */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { TraceRecord } from '../../hypervisor/xen/trace.js';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { MiB, tempDir, diskImage, e2eHost, guestConfig, boot, drive, node } from '../e2e/fixture.js';

export interface RoundTrip {
  readonly a: MachineHost;
  readonly b: MachineHost;
  /** The domain saved on `a` and the one restored on `b`. */
  readonly saved: number;
  readonly restored: number;
  /** The saved domain's shared_info and start_info frames on `a` (it is gone after the save). */
  readonly savedSharedInfoMfn: number;
  readonly savedStartInfoMfn: number;
}

/** A traced machine on the simulated clock. */
export function tracedHost(t: ExecutionContext, seed: number): Promise<MachineHost> {
  return e2eHost(t, [netbsdImage], { machine: { memoryBytes: 128 * MiB, clock: 'simulated', scrambleSeed: seed, trace: true } });
}

export const VBD_STATE = 'device/vbd/51712/state';
export const VIF_STATE = 'device/vif/0/state';

/**
 * Boot on `a`, `xl save` to a file (MachineHost.save), `xl restore` it on
 * `b` (MachineHost.restore), run `b` until both frontends are Connected
 * and the workload published a tick after the restore.
 */
export async function roundTrip(t: ExecutionContext): Promise<RoundTrip> {
  const dir = tempDir(t, 'xenport-trace-');
  const cfg = guestConfig({
    name: 'traced', extra: 'workload=clock', memory: 32,
    disks: [`file:${diskImage(dir, 2)},xvda,w`], vifs: ['mac=00:16:3e:00:00:31,ip=10.0.0.31,bridge=xenbr0'],
  });
  const a = await tracedHost(t, 5);
  const built = await boot(t, a, cfg);
  const saved = built.domid;
  const connected = (h: MachineHost, d: number): boolean =>
    node(h, `/local/domain/${d}/${VBD_STATE}`) === '4' && node(h, `/local/domain/${d}/${VIF_STATE}`) === '4';
  await drive(t, a, () => connected(a, saved), 'the devices Connected before the save');
  const savedSharedInfoMfn = a.m.domain(saved)?.sharedInfoMfn ?? -1;
  const file = join(dir, 'traced.img');
  const report = await a.save(saved, file);
  t.is(report.outcome, 'destroyed');

  const b = await tracedHost(t, 23);
  const { domid: restored } = await b.restore(file);
  const ticks = (): number => Number(node(b, `/local/domain/${restored}/data/workload/clock/ticks`) ?? NaN);
  await drive(t, b, () => connected(b, restored) && Number.isFinite(ticks()), 'the devices Connected and the workload running after the restore');
  return { a, b, saved, restored, savedSharedInfoMfn, savedStartInfoMfn: built.startInfoMfn };
}

/** Index of the first record after `from` matching, or -1. */
export function find(rs: readonly TraceRecord[], pred: (r: TraceRecord) => boolean, from = -1): number {
  for (let i = Math.max(0, from + 1); i < rs.length; i++) if (pred(rs[i]!)) return i;
  return -1;
}

/** A predicate on event (and a detail pattern). */
export function ev(event: string, detail?: RegExp): (r: TraceRecord) => boolean {
  return (r) => r.event === event && (detail === undefined || detail.test(r.detail ?? ''));
}

/**
 * Check that each step of `chain` is found after the one before it (the
 * first from `from` on); returns the indices. A missing or out-of-order
 * step fails the test with the records around it.
 */
export function inOrder(t: ExecutionContext, rs: readonly TraceRecord[], chain: readonly [string, (r: TraceRecord) => boolean][], from = -1): number[] {
  const at: number[] = [];
  let prev = from;
  for (const [what, pred] of chain) {
    const i = find(rs, pred, prev);
    if (i < 0) {
      const before = find(rs, pred);
      t.fail(before < 0
        ? `no "${what}" in the trace`
        : `"${what}" (#${before}) is not after "${chain[at.length - 1]?.[0] ?? 'the start'}" (#${prev})\n${dump(rs)}`);
      return at;
    }
    at.push(i);
    prev = i;
  }
  t.pass();
  return at;
}

export function dump(rs: readonly TraceRecord[]): string {
  return rs.map((r, i) => `#${i} d${r.domid} ${r.src} ${r.event}${r.detail === undefined ? '' : `: ${r.detail}`}`).join('\n');
}

/*
 * The toolstack's `xl restore` for tests that leave one of its steps out
 * (tests/porting/skip-restore-steps.test.ts): libxc's restore
 * (restoreDomain), then libxl's part as MachineHost.adoptRestored does it
 * (the domain's xenstore nodes, XS_INTRODUCE, xenconsoled and the ctrl_if
 * controller, the devices' backends), paused, with XS_INTRODUCE optional,
 * then a hook where a test can undo what the restore did to the new
 * shared_info, through the toolstack's own write path; then the unpause.
 */
import { PAGE_SIZE } from '../../hypervisor/public/types.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { restoreDomain, type RestoredDomain } from '../../hypervisor/tools/save/index.js';

export interface LibxlRestoreOptions {
  /** The domain's name. */
  readonly name: string;
  /** The kernel and memory the image's config must name (checked). */
  readonly kernel?: string;
  readonly memoryMib?: number;
  /** Restore with this config instead of the image's (`xl restore CONFIG FILE`): its disks and vifs get backends. */
  readonly devices?: DomainConfig;
  /** false: XS_INTRODUCE is left out (xenstored never hears of the new store ring and port). */
  readonly introduce?: boolean;
  /** Runs after everything else, just before the unpause. */
  readonly beforeUnpause?: (r: RestoredDomain) => void | Promise<void>;
}

/** `xl restore` of `bytes` into `h`; the restored domain (running unless the unpause failed: that throws). */
export async function restoreLibxl(h: MachineHost, bytes: Uint8Array, o: LibxlRestoreOptions): Promise<RestoredDomain> {
  const r = await restoreDomain(h.m, bytes);
  const d = r.domid;
  await h.adoptRestored(r, {
    what: `restore of ${o.name}`, source: `the image of ${o.name}`, paused: true, name: () => o.name,
    ...(o.devices === undefined ? {} : { config: o.devices }),
    ...(o.introduce === undefined ? {} : { introduce: o.introduce }),
  });
  const cfg = h.record(d)?.built.config;
  if (o.kernel !== undefined && cfg?.kernel !== o.kernel) throw new Error(`d${d} runs kernel ${cfg?.kernel}, not ${o.kernel}`);
  if (o.memoryMib !== undefined && cfg?.memory !== o.memoryMib) throw new Error(`d${d} has ${cfg?.memory} MiB, not ${o.memoryMib}`);
  await o.beforeUnpause?.(r);
  h.unpause(d);
  return r;
}

/**
 * Rewrite the new domain's shared_info as a toolstack does (map the frame
 * through the privileged foreign-map interface, write the page back):
 * `edit` gets the page as the restore left it and changes it in place.
 */
export function editSharedInfo(h: MachineHost, r: RestoredDomain, edit: (page: Uint8Array) => void): void {
  const f = h.m.xc.foreignFrame(r.domid, r.sharedInfoMfn, true);
  if (typeof f === 'number') throw new Error(`mapping the shared_info of d${r.domid}: ${f}`);
  const page = f.read(0, PAGE_SIZE);
  edit(page);
  const rc = f.write(0, page);
  if (rc < 0) throw new Error(`writing the shared_info of d${r.domid}: ${rc}`);
}

/** Simulated time per turn of runFor: dom0's backends work through promises and must get their turns. */
const SLICE_NS = 5_000_000;

/**
 * Run `h` for `ns` of simulated time, letting the host's promises run
 * between slices. A machine that stops advancing its clock (nothing left
 * to run) ends it early; the caller looks at what happened either way.
 */
export async function runFor(h: MachineHost, ns: number): Promise<void> {
  const end = h.m.clock.now() + ns;
  for (let i = 0, limit = Math.ceil(ns / SLICE_NS) * 4 + 100; i < limit && h.m.clock.now() < end; i++) {
    const until = Math.min(end, h.m.clock.now() + SLICE_NS);
    h.m.runUntil(() => h.m.clock.now() >= until, 100_000);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

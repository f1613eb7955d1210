/*
 * The toolstack's half of `xl restore` for tests that leave one of its
 * steps out (tests/porting/skip-restore-steps.test.ts): libxc's restore
 * (restoreDomain), then libxl's part in libxl's order (the domain's
 * xenstore nodes, the devices' backends, XS_INTRODUCE, xenconsoled and the
 * ctrl_if controller, unpause), with XS_INTRODUCE optional and a hook that
 * runs last before the unpause, where a test can undo what the restore did
 * to the new shared_info, through the toolstack's own write path.
 */
import { PAGE_SIZE, domid as toDomId, mfn as toMfn, evtchnPort } from '../../hypervisor/public/types.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { writeDomainNodes, introduceDomain } from '../../hypervisor/tools/builder/xenstore.js';
import { restoreDomain, type RestoredDomain } from '../../hypervisor/tools/save/index.js';

export interface LibxlRestoreOptions {
  /** The domain's name in xenstore. */
  readonly name: string;
  readonly kernel: string;
  readonly memoryMib: number;
  /** Disks and vifs whose backends are created (none when absent). */
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
  await writeDomainNodes(h.xs, {
    domid: d, name: o.name, uuid: `00000000-0000-4000-8000-${String(d).padStart(12, '0')}`, kernel: o.kernel, vcpus: 1,
    targetKb: o.memoryMib * 1024, maxMemKb: o.memoryMib * 1024, storeMfn: r.storeMfn, storePort: r.storePort,
    consoleMfn: r.consoleMfn, consolePort: r.consolePort, consoleOutput: 'pty', startTime: 0,
  });
  if (o.devices !== undefined) await h.backends.attachDevices(d, o.devices);
  if (o.introduce !== false) await introduceDomain(h.xs, d, r.storeMfn, r.storePort);
  const c = h.services.attachConsole?.(toDomId(d), toMfn(r.consoleMfn), evtchnPort(r.consolePort));
  if (c !== undefined && !c.ok) throw new Error(`console of d${d}: ${c.error}`);
  if (r.ctrlIf !== undefined) {
    const ci = h.services.attachCtrlIf?.(toDomId(d), toMfn(r.ctrlIf.mfn), evtchnPort(r.ctrlIf.port));
    if (ci !== undefined && !ci.ok) throw new Error(`ctrl_if of d${d}: ${ci.error}`);
  }
  await o.beforeUnpause?.(r);
  if (h.m.xc.unpauseDomain(d) !== 0) throw new Error(`unpause d${d}`);
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

/*
 * Save a netbsd guest and restore it on the same machine host, as the
 * toolstack does (tests/helpers/save-restore.ts, MachineHost.adoptRestored):
 * the domain's xenstore nodes, XS_INTRODUCE, the console, and for ctrl_if
 * the domain controller serving the page (same PFN, new MFN) on the port
 * restoreDomain made and wrote into the command line of start_info.
 * `movePort` moves ctrl_if to another fresh port first (rewriting the
 * command line), as a toolstack allocating ports in another order would:
 * the guest can then only find it on the command line.
 */
import type { ExecutionContext } from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { start_info, MAX_GUEST_CMDLINE } from '../../hypervisor/public/xen.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import { restoreDomain } from '../../hypervisor/tools/save/index.js';
import { suspended, saveToBytes } from '../helpers/save-restore.js';
import { drive } from './fixture.js';

/** Rewrite `ctrl_if=<pfn>,<port>` in the live start_info of a (paused) domain. */
export function rewriteCtrlIfPort(h: MachineHost, domid: number, startInfoMfn: number, port: number): void {
  const f = h.m.xc.foreignFrame(domid, startInfoMfn, true);
  if (typeof f === 'number') throw new Error(`start_info frame: ${f}`);
  const at = start_info.offsetOf('cmd_line');
  let line = '';
  for (let i = 0; i < MAX_GUEST_CMDLINE; i++) {
    const ch = f.mem.getUint8(at + i);
    if (ch === 0) break;
    line += String.fromCharCode(ch);
  }
  const next = line.replace(/\bctrl_if=(\d+),\d+/, `ctrl_if=$1,${port}`);
  const bytes = new Uint8Array(MAX_GUEST_CMDLINE);
  for (let i = 0; i < next.length; i++) bytes[i] = next.charCodeAt(i);
  f.write(at, bytes);
}

export interface Restored {
  readonly domid: number;
  /** The port dom0 serves the restored ctrl_if page on. */
  readonly ctrlIfPort: number;
}

/**
 * Ask the guest to suspend through ctrl_if, save it (the domain goes),
 * restore it (ctrl_if moved to another port first if `movePort`), unpause.
 */
export async function ctrlIfSaveRestore(t: ExecutionContext, h: MachineHost, b: BuiltDomain, movePort: boolean): Promise<Restored> {
  const d = b.domid;
  let answered = false;
  void h.controller.sendShutdown(toDomId(d), 'suspend').then((r) => {
    answered = r.ok;
  });
  await drive(t, h, () => answered && suspended(h, d), 'the suspend');
  const saved = await saveToBytes(h, d);

  const r = await restoreDomain(h.m, saved);
  if (r.ctrlIf === undefined) throw new Error('the restore found no ctrl_if= on the command line');
  let ctrlIf = r.ctrlIf;
  if (movePort) {
    const port = h.m.xc.allocUnbound(0, r.domid);
    if (port < 0) throw new Error(`allocUnbound: ${port}`);
    rewriteCtrlIfPort(h, r.domid, r.startInfoMfn, port);
    ctrlIf = { ...ctrlIf, port };
  }
  const { domid } = await h.adoptRestored({ ...r, ctrlIf }, { what: `restore of d${d}`, source: `the image of d${d}`, paused: false });
  return { domid, ctrlIfPort: ctrlIf.port };
}

/*
 * Save a netbsd guest and restore it on the same machine host, with the
 * host steps a toolstack's restore must take after restoreDomain
 * (hypervisor/tools/save): the domain's xenstore nodes, XS_INTRODUCE, the
 * console, and for ctrl_if: the domain controller serving the page (same
 * PFN, new MFN) on the port restoreDomain made and wrote into the command
 * line of start_info. `movePort` moves ctrl_if to another fresh port first
 * (rewriting the command line), as a toolstack allocating ports in another
 * order would: the guest can then only find it on the command line.
 */
import type { ExecutionContext } from 'ava';
import { domid as toDomId, mfn as toMfn, evtchnPort } from '../../hypervisor/public/types.js';
import { SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { start_info, MAX_GUEST_CMDLINE } from '../../hypervisor/public/xen.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import { saveDomain, restoreDomain } from '../../hypervisor/tools/save/index.js';
import { assertValidImage } from '../helpers/verify-image.js';
import { writeDomainNodes, introduceDomain } from '../../hypervisor/tools/builder/xenstore.js';
import { drive } from './fixture.js';

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

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
 * restore it, do the toolstack's part, unpause.
 */
export async function ctrlIfSaveRestore(t: ExecutionContext, h: MachineHost, b: BuiltDomain, movePort: boolean): Promise<Restored> {
  const d = b.domid;
  let answered = false;
  void h.controller.sendShutdown(toDomId(d), 'suspend').then((r) => {
    answered = r.ok;
  });
  await drive(t, h, () => answered && h.m.xc.getDomainInfo(d)?.shutdownReason === SHUTDOWN_suspend, 'the suspend');
  const chunks: Uint8Array[] = [];
  await saveDomain(h.m, d, (c) => {
    chunks.push(c.slice());
  }, { config: `name = "${b.config.name}"\nkernel = "${b.image.name}"\nmemory = ${b.config.memory}\n` });
  await h.settle();
  const saved = concat(chunks);
  await assertValidImage(saved, `image of d${d}`);

  const r = await restoreDomain(h.m, saved);
  if (r.ctrlIf === undefined) throw new Error('the restore found no ctrl_if= on the command line');
  const n = r.domid;
  await writeDomainNodes(h.xs, {
    domid: n, name: b.config.name, uuid: b.uuid, kernel: b.image.name, vcpus: 1, targetKb: b.config.memory * 1024,
    maxMemKb: (b.config.memory + 1) * 1024, storeMfn: r.storeMfn, storePort: r.storePort, consoleMfn: r.consoleMfn,
    consolePort: r.consolePort, consoleOutput: 'pty', startTime: 0,
  });
  await introduceDomain(h.xs, n, r.storeMfn, r.storePort);
  const cons = h.consoled.add(toDomId(n), toMfn(r.consoleMfn), evtchnPort(r.consolePort));
  if (!cons.ok) throw new Error(`console: ${cons.error}`);
  let port = r.ctrlIf.port;
  if (movePort) {
    port = h.m.xc.allocUnbound(0, n);
    if (port < 0) throw new Error(`allocUnbound: ${port}`);
    rewriteCtrlIfPort(h, n, r.startInfoMfn, port);
  }
  const ci = h.controller.add(toDomId(n), toMfn(r.ctrlIf.mfn), evtchnPort(port));
  if (!ci.ok) throw new Error(`ctrl_if: ${ci.error}`);
  const rc = h.m.xc.unpauseDomain(n);
  if (rc !== 0) throw new Error(`unpause: ${rc}`);
  return { domid: n, ctrlIfPort: port };
}

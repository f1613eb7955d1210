/*
 * Issue 7's proofs: the host side of a save and a restore into another
 * machine (tests/e2e/restore.test.ts does the same by hand and exports
 * nothing), the devices' Connected states, and a cycle's checks.
 */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { domid as toDomId, mfn as toMfn, evtchnPort } from '../../hypervisor/public/types.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { writeDomainNodes, introduceDomain, domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { restoreDomain, saveDomain } from '../../hypervisor/tools/save/index.js';
import { checkImage } from '../../hypervisor/tools/stream/check.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { MiB, e2eHost, node } from '../e2e/fixture.js';

export function suspended(h: MachineHost, domid: number): boolean {
  const i = h.m.xc.getDomainInfo(domid);
  return i !== undefined && i.shutdown && i.shutdownReason === SHUTDOWN_suspend;
}

/** `xl save` of a suspended domain into bytes (the domain goes). */
export async function saveImage(h: MachineHost, domid: number, cfg: DomainConfig): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await saveDomain(h.m, domid, (c) => void chunks.push(c.slice()), {
    config: `name = "${cfg.name}"\nkernel = "${cfg.kernel}"\nmemory = ${cfg.memory}\n`,
  });
  return new Uint8Array(Buffer.concat(chunks));
}

/** A new machine (its own frames, xenstored, backends), the kernel linked afresh. */
export function nextHost(t: ExecutionContext, seed: number): Promise<MachineHost> {
  return e2eHost(t, [defineNetbsdImage()], { machine: { memoryBytes: 256 * MiB, clock: 'simulated', scrambleSeed: seed } });
}

/** `xl restore` into `h`, libxl's order: domain, nodes, devices, XS_INTRODUCE, console, unpause. */
export async function restoreImage(h: MachineHost, bytes: Uint8Array, cfg: DomainConfig): Promise<number> {
  const r = await restoreDomain(h.m, bytes);
  const d = r.domid;
  await writeDomainNodes(h.xs, {
    domid: d, name: cfg.name, uuid: `00000000-0000-4000-8000-${String(d).padStart(12, '0')}`, kernel: cfg.kernel, vcpus: 1,
    targetKb: cfg.memory * 1024, maxMemKb: cfg.memory * 1024, storeMfn: r.storeMfn, storePort: r.storePort,
    consoleMfn: r.consoleMfn, consolePort: r.consolePort, consoleOutput: 'pty', startTime: 0,
  });
  await h.backends.attachDevices(d, cfg);
  await introduceDomain(h.xs, d, r.storeMfn, r.storePort);
  const c = h.services.attachConsole?.(toDomId(d), toMfn(r.consoleMfn), evtchnPort(r.consolePort));
  if (c !== undefined && !c.ok) throw new Error(`console of d${d}: ${c.error}`);
  if (h.m.xc.unpauseDomain(d) !== 0) throw new Error(`unpause d${d}`);
  return d;
}

export const VBD = 'device/vbd/51712/state';
export const VIF = 'device/vif/0/state';

/** xbd0 (and xennet0 when `net`) Connected (4), frontend and backend. */
export function connected(h: MachineHost, d: number, net: boolean): boolean {
  const fe = [VBD, ...(net ? [VIF] : [])];
  return fe.every((p) => {
    if (node(h, `${domainPath(d)}/${p}`) !== '4') return false;
    const be = node(h, `${domainPath(d)}/${p.replace(/state$/, 'backend')}`);
    return be !== undefined && node(h, `${be}/state`) === '4';
  });
}

/** checkImage's verdict, as a message ('' when the image is good). */
export async function imageProblems(bytes: Uint8Array): Promise<string> {
  const r = await checkImage(bytes);
  return r.ok ? '' : r.errors.map((e) => JSON.stringify(e)).join('\n');
}

export const VERIFY_TOOL = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
export const VERIFY_PYTHONPATH = process.env['XEN_PYTHONPATH'] ?? '/usr/lib/xen-4.17/lib/python';

/** Xen's verify-stream-v2 -f xl on an image; throws when the tool or its modules are missing. */
export function xenVerify(dir: string, bytes: Uint8Array, name: string): { status: number | null; out: string } {
  if (!existsSync(VERIFY_TOOL)) throw new Error(`${VERIFY_TOOL} is missing`);
  if (!existsSync(join(VERIFY_PYTHONPATH, 'xen', 'migration', 'libxc.py'))) throw new Error(`Xen's python modules are missing under ${VERIFY_PYTHONPATH}`);
  const file = join(dir, `${name}.img`);
  writeFileSync(file, bytes);
  const r = spawnSync(VERIFY_TOOL, ['-v', '-f', 'xl', '-i', file], {
    env: { ...process.env, PYTHONPATH: VERIFY_PYTHONPATH }, encoding: 'utf8', timeout: 120_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

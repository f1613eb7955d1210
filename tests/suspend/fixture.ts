/*
 * The suspend tests' world: MachineHosts (hypervisor, xenstored,
 * xenconsoled, simulated clock) booting the netbsd kernel with the suspend
 * workloads, driven until a condition holds, and the toolstack's side of
 * a cancelled suspend (xc_domain_resume, fast); save and restore are the
 * toolstack's own (tests/helpers/save-restore.ts).
 */
import type { ExecutionContext } from 'ava';
import type { PingResult } from '../../hypervisor/dom0/net/endpoint.js';
import { domid as toDomId, grantRef } from '../../hypervisor/public/types.js';
import { MachineGrantIo } from '../../hypervisor/dom0/backend-host.js';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { MachineOptions } from '../../hypervisor/xen/machine.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import { restoreBytes } from '../helpers/save-restore.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { suspendImage, grantPattern } from './workloads.js';

export { suspended, saveToBytes } from '../helpers/save-restore.js';

export const MiB = 2 ** 20;
export const image = suspendImage();

export function config(name: string, workload: string): DomainConfig {
  return {
    name, kernel: image.name, memory: 16, vcpus: 1, extra: `workload=${workload}`, disks: [], vifs: [],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
  };
}

/** A machine host on a simulated clock; `img` is the kernel it knows (default: the module's link). */
export async function host(t: ExecutionContext, machine: MachineOptions = {}, img: LinkedKernelImage = image): Promise<MachineHost> {
  const h = await MachineHost.create({
    machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: 11, ...machine },
    images: [img],
  });
  t.teardown(() => h.close());
  return h;
}

/** A node's value straight from xenstored's state (undefined: no such node). */
export function node(h: MachineHost, path: string): string | undefined {
  const n = lookup(h.xenstored.state.root, path);
  return n === undefined ? undefined : latin1(n.value);
}

export function consoleText(h: MachineHost, domid: number): string {
  return latin1(h.consoled.tail(toDomId(domid)));
}

/**
 * Run the machine and the host's promises in turn until `cond` holds. The
 * condition is looked at every few guest steps (reading a transcript
 * costs more than a step); a little overshoot does not matter here.
 */
export async function drive(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, rounds = 200): Promise<void> {
  let n = 0;
  const sometimes = (): boolean => ++n % 32 === 0 && cond();
  for (let i = 0; i < rounds; i++) {
    if (h.m.runUntil(sometimes, 20_000) === 'done' || cond()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (cond()) return;
  }
  throw new Error(`never saw ${what} (${t.title})\n${h.m.log.ring()}`);
}

/** Occurrences of `s` in `text`. */
export function count(text: string, s: string): number {
  return text.split(s).length - 1;
}

export async function boot(t: ExecutionContext, h: MachineHost, workload: string): Promise<BuiltDomain> {
  const b = await h.create(config(`g-${workload}`, workload));
  await drive(t, h, () => node(h, `${domainPath(b.domid)}/data/boot`) === 'complete' && /susp: tick 1 /.test(consoleText(h, b.domid)), 'boot');
  return b;
}

/** What xl does for `save -c` or a failed save: rax = 1, resumedomain, XS_RESUME. */
export async function cancelSuspend(h: MachineHost, domid: number): Promise<void> {
  if (h.m.xc.setSuspendResult(domid, 1) !== 0) throw new Error('setSuspendResult failed');
  if (h.m.xc.resumeDomain(domid) !== 0) throw new Error('resumedomain failed');
  await h.xs.resume(domid);
  h.domainResumed(domid);
}

/** Every "susp: tick n t=ns" guest time, in order. */
export function ticks(text: string): bigint[] {
  return [...text.matchAll(/^susp: tick \d+ t=(\d+)$/gm)].map((m) => BigInt(m[1] ?? '0'));
}

/** Guest times of the resume lines, in order. */
export function resumeTimes(text: string): bigint[] {
  return [...text.matchAll(/^xen_suspend: .*resumed in .*: guest time (\d+)\.(\d{9}) s/gm)].map((m) => BigInt(m[1] ?? '0') * 1_000_000_000n + BigInt(m[2] ?? '0'));
}

export function nonDecreasing(xs: readonly bigint[]): boolean {
  return xs.every((x, i) => i === 0 || x >= xs[i - 1]!);
}

/** Write data/ping = value as dom0 and wait for the guest to echo it to data/pong. */
export async function ping(t: ExecutionContext, h: MachineHost, domid: number, value: string): Promise<void> {
  const dom = domainPath(domid);
  await h.xs.write(`${dom}/data/ping`, value);
  await drive(t, h, () => node(h, `${dom}/data/pong`) === value, `data/pong = ${value}`);
}

/**
 * Copy grant `ref` of `domid` as dom0 (GNTTABOP_copy, as netback reads a
 * guest's page) and check it holds the workload's pattern: 'ok' or why not.
 */
export function grantHoldsPattern(h: MachineHost, domid: number, ref: number): string {
  const io = new MachineGrantIo(h.m);
  try {
    const r = io.copyFromGrant(toDomId(domid), grantRef(ref), 0, 4096);
    if (!r.ok) return `copy of ref ${ref}: ${r.error}`;
    for (let i = 0; i < 4096; i++) if (r.value[i] !== grantPattern(i)) return `byte ${i} of ref ${ref} is ${r.value[i]}`;
    return 'ok';
  } finally {
    io.close();
  }
}

/**
 * `xl restore` of `bytes` into `h` under `name`: the domain's config
 * (devices too) comes from the image; the kernel it binds must be `img`,
 * the link `h` was given (default: the module's).
 */
export async function restoreInto(h: MachineHost, bytes: Uint8Array, name: string, img: LinkedKernelImage = image): Promise<number> {
  const domid = await restoreBytes(h, bytes, { name });
  const bound = h.record(domid)?.built.image;
  if (bound !== img) throw new Error(`d${domid} was restored with kernel ${bound?.name ?? '(none)'}, not the link the test gave`);
  return domid;
}

/** dom0 pings `ip` on its bridge (ICMP echo), the machine driven meanwhile: the answer, or why not. */
export async function pingFromDom0(t: ExecutionContext, h: MachineHost, ip: string): Promise<PingResult | string> {
  let r: PingResult | string | undefined;
  h.backends.ping(ip, 1e9).then((x) => {
    r = x;
  }, (e: unknown) => {
    r = String(e);
  });
  await drive(t, h, () => r !== undefined, 'the ping');
  return r ?? 'no answer';
}

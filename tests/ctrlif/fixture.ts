/*
 * A real machine (MachineHost, simulated clock) booting the netbsd image
 * through the real builder, for the ctrl_if and workload tests: dom0's
 * DomainController serves the guest's ctrl_if page, xenstored its store.
 * `drive` runs the machine and the host's promises in turn, so dom0 work
 * deferred by the machine (event deliveries to dom0) and promise
 * settlements interleave as in the daemon.
 */
import type { ExecutionContext } from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { MachineHost, type HostOptions } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import type { KernelImage } from '../../hypervisor/public/cpu.js';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';

export const MiB = 2 ** 20;

export function config(name: string, extra: string, over: Partial<DomainConfig> = {}, image: KernelImage = netbsdImage): DomainConfig {
  return {
    name, kernel: image.name, memory: 32, vcpus: 1, extra, disks: [], vifs: [],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
    ...over,
  };
}

export async function host(t: ExecutionContext, images: readonly KernelImage[] = [netbsdImage], over: Partial<HostOptions> = {}): Promise<MachineHost> {
  const h = await MachineHost.create({
    machine: { memoryBytes: 96 * MiB, clock: 'simulated', scrambleSeed: 7 }, images, ...over,
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

/** Let promises settle and I/O callbacks run once. */
export function turn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Run the machine and the host's promises in turn until `cond` holds; fail
 * the test if it does not within `maxNs` of guest time (or real rounds).
 */
export async function drive(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, maxNs = 30_000_000_000): Promise<void> {
  const deadline = h.m.clock.now() + maxNs;
  for (let i = 0; i < 5000; i++) {
    if (cond()) return;
    if (h.m.clock.now() >= deadline) break;
    h.m.runUntil(() => cond() || h.m.clock.now() >= deadline, 20_000);
    await turn();
  }
  if (cond()) return;
  const last = [...h.domainRecords].pop()?.built.domid ?? 0;
  t.fail(`never saw ${what}; the guest's console ends:\n${consoleText(h, last).slice(-3000)}`);
  throw new Error(`never saw ${what}`);
}

/** Run the machine for `ns` of system time, letting the host's promises run along. */
export async function runFor(h: MachineHost, ns: number): Promise<void> {
  const until = h.m.clock.now() + ns;
  for (let i = 0; i < 10_000 && h.m.clock.now() < until; i++) {
    h.m.runUntil(until, 50_000);
    await turn();
  }
}

/** Create a domain and wait until its kernel says it booted (and xenbus published data/boot). */
export async function boot(t: ExecutionContext, h: MachineHost, cfg: DomainConfig): Promise<BuiltDomain> {
  const b = await h.create(cfg);
  await drive(t, h, () => node(h, `/local/domain/${b.domid}/data/boot`) === 'complete', 'data/boot = complete');
  return b;
}

/** The guest's ctrl_if page as dom0 maps it (through the controller's view of the domain). */
export function ctrlIfPage(h: MachineHost, domid: number): { mem: { getUint32(o: number, le: boolean): number }; write(o: number, b: Uint8Array): void } {
  const st = h.controller.state(toDomId(domid));
  if (st?.state !== 'connected') throw new Error(`ctrl_if of d${domid} is not connected: ${JSON.stringify(st)}`);
  const f = h.m.xc.foreignFrame(domid, st.mfn, true);
  if (typeof f === 'number') throw new Error(`foreign frame: ${f}`);
  return f;
}

export function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

/**
 * Make dom0 deaf to the guest's ctrl_if port for a while (a busy dom0):
 * the guest's notifications are counted, not served, until release(),
 * which serves what waits (as the controller's own binding would).
 */
export function holdDom0CtrlIf(h: MachineHost, domid: number): { release(): void; held(): number } {
  const st = h.controller.state(toDomId(domid));
  if (st?.state !== 'connected') throw new Error(`ctrl_if of d${domid} is not connected`);
  const s = h.m.evtchn.status({ domid: 0, vcpuId: 0, privileged: true }, domid, st.port);
  if (typeof s === 'number' || s.port === undefined) throw new Error(`d${domid} port ${st.port}: no dom0 end (${JSON.stringify(s)})`);
  const local = s.port;
  let n = 0;
  h.m.onDom0Event(local, () => {
    n++;
  });
  return {
    release: () => {
      h.m.onDom0Event(local, () => h.controller.kick(toDomId(domid)));
      h.controller.kick(toDomId(domid));
    },
    held: () => n,
  };
}

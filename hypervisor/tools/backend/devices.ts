/*
 * The toolstack's half of a device: what libxl does when `xl create` adds
 * a domain's disks and vifs, and when the domain goes.
 *
 *   add      1. number the devices (vdev -> devid, vif index -> handle);
 *            2. open the vifs' host UDP forwards (as the vif hotplug script
 *               sets up the host side before the backend runs); a port in
 *               use fails here, before any node is written;
 *            3. write every frontend and backend directory in one
 *               transaction, with libxl's owners (nodes.ts);
 *            4. wait for the backend driver to take each device (libxl
 *               waits for the backend's hotplug and InitWait): a disk that
 *               cannot be opened fails `xl create` with its reason.
 *   remove   the backend driver lets go of every device of the domain
 *            (rings unmapped, ports closed, disks closed, vifs off their
 *            bridges) and removes /local/domain/0/backend/<kind>/N; the
 *            forwards are closed. The frontend directories go with
 *            /local/domain/N (builder/xenstore.ts).
 *
 * Failures are BuildErrors at step 'devices', one line naming the device:
 * "disk xvda: disk image /srv/missing.img does not exist". The builder
 * then undoes the whole domain (teardownDomain calls remove).
 */
import createDebug from 'debug';
import type { Dom0Network } from '../../dom0/net/network.js';
import type { XsClient } from '../xenstored/client.js';
import type { DomainConfig } from '../xl/config.js';
import { BuildError } from '../builder/errors.js';
import { inTransaction } from '../builder/xenstore.js';
import type { BackendDriver } from './driver.js';
import {
  BACKEND_DOMID, backendDomainDir, backendPath, backendPerms, frontendKindDir, frontendPath, frontendPerms,
  vbdNodes, vdevToDevid, vifNodes, type DeviceNodes, type DeviceRef,
} from './nodes.js';

const log = createDebug('dom0:backend');

/** The devices to add: a whole config fits, and so does a hotplugged disk. */
export type DeviceSet = Pick<DomainConfig, 'disks' | 'vifs'>;

export interface DeviceAdderDeps {
  /** The toolstack's xenstore connection (privileged). */
  readonly xs: XsClient;
  readonly driver: BackendDriver;
  readonly net: Dom0Network;
}

/** One device of a config, numbered, with how xl create names it in errors. */
interface Planned {
  readonly nodes: DeviceNodes;
  readonly label: string;
}

/** The vif's name on its bridge and in forwards: `vif<domid>.<handle>`. */
export const vifName = (domid: number, devid: number): string => `vif${domid}.${devid}`;

function plan(domid: number, cfg: DeviceSet): Planned[] {
  const out: Planned[] = [];
  const seen = new Map<number, string>();
  for (const disk of cfg.disks) {
    const devid = vdevToDevid(disk.vdev);
    if (devid === undefined) throw new BuildError('devices', `disk ${disk.vdev}: not a Xen PV disk name (xvda, xvdb, ...)`);
    const other = seen.get(devid);
    if (other !== undefined) throw new BuildError('devices', `disk ${disk.vdev}: same device number ${devid} as ${other}`);
    seen.set(devid, disk.vdev);
    out.push({ nodes: vbdNodes(domid, devid, disk), label: `disk ${disk.vdev}` });
  }
  cfg.vifs.forEach((vif, i) => out.push({ nodes: vifNodes(domid, i, vif), label: `vif ${i} (${vif.mac})` }));
  return out;
}

export class DeviceAdder {
  /** Vifs whose forwards are open, by domain. */
  private readonly forwarded = new Map<number, string[]>();

  constructor(private readonly deps: DeviceAdderDeps) {}

  /**
   * Add every disk and vif of `cfg` to domain `domid`; a BuildError
   * ('devices') when one cannot be. Also for hotplug, after the domain
   * runs; a vif is numbered by its place in `cfg.vifs`, and a device
   * already there is refused.
   */
  async add(domid: number, cfg: DeviceSet): Promise<void> {
    const devices = plan(domid, cfg);
    if (devices.length === 0) return;
    const opened = await this.openForwards(domid, cfg);
    let written = false;
    try {
      await this.writeNodes(domid, devices);
      written = true;
      for (const d of devices) {
        const r = await this.deps.driver.probe(d.nodes.ref);
        if (!r.ok) throw new BuildError('devices', `${d.label}: ${r.error}`);
      }
    } catch (e) {
      // What this call made goes again (the rest of the domain is the caller's).
      await this.undo(domid, written ? devices : [], opened);
      throw e;
    }
    log.enabled && log('d%d: %d device(s) added', domid, devices.length);
  }

  private async undo(domid: number, devices: readonly Planned[], opened: readonly string[]): Promise<void> {
    for (const { nodes } of devices) {
      await this.deps.driver.removeDevice(nodes.ref).catch(() => undefined);
      await this.deps.xs.rm(frontendPath(nodes.ref)).catch(() => undefined);
    }
    const names = this.forwarded.get(domid);
    if (names !== undefined) this.forwarded.set(domid, names.filter((n) => !opened.includes(n)));
    await Promise.all(opened.map((n) => this.deps.net.closeForwards(n)));
  }

  /** Take every device of the domain away (idempotent; nothing there is fine). */
  async remove(domid: number): Promise<void> {
    await this.deps.driver.removeDomain(domid).catch((e: unknown) => {
      log('d%d: removing devices: %s', domid, e instanceof Error ? e.message : String(e));
    });
    const names = this.forwarded.get(domid) ?? [];
    this.forwarded.delete(domid);
    await Promise.all(names.map((n) => this.deps.net.closeForwards(n)));
  }

  /** Vifs of a domain whose host forwards are open. */
  forwardsOf(domid: number): readonly string[] {
    return this.forwarded.get(domid) ?? [];
  }

  /** Open the forwards of the vifs that have some: the vif names opened (all or none). */
  private async openForwards(domid: number, cfg: DeviceSet): Promise<string[]> {
    const names = this.forwarded.get(domid) ?? [];
    this.forwarded.set(domid, names);
    const opened: string[] = [];
    try {
      for (const [i, vif] of cfg.vifs.entries()) {
        if (vif.forwards.length === 0) continue;
        const name = vifName(domid, i);
        if (names.includes(name)) throw new BuildError('devices', `vif ${i} (${vif.mac}): ${name} is already attached`);
        try {
          await this.deps.net.openForwards(name, vif);
        } catch (e) {
          throw new BuildError('devices', `vif ${i} (${vif.mac}): ${e instanceof Error ? e.message : String(e)}`);
        }
        names.push(name);
        opened.push(name);
      }
    } catch (e) {
      await this.undo(domid, [], opened);
      throw e;
    }
    return opened;
  }

  private async writeNodes(domid: number, devices: readonly Planned[]): Promise<void> {
    const there = async (path: string, tx: number): Promise<boolean> => this.deps.xs.read(path, tx).then(() => true, () => false);
    try {
      await inTransaction(this.deps.xs, async (tx) => {
        for (const { nodes, label } of devices) {
          if (await there(backendPath(nodes.ref), tx)) throw new BuildError('devices', `${label}: already attached (${backendPath(nodes.ref)} exists)`);
        }
        const dir = async (path: string, perms: readonly string[]): Promise<void> => {
          await this.deps.xs.write(path, '', tx);
          await this.deps.xs.setPerms(path, perms, tx);
        };
        const done = new Set<string>();
        for (const { nodes } of devices) {
          const ref: DeviceRef = nodes.ref;
          // Directories above the devices: dom0's, readable by the guest.
          for (const parent of [frontendKindDir(ref.kind, domid), backendDomainDir(ref.kind, domid)]) {
            if (done.has(parent)) continue;
            done.add(parent);
            await dir(parent, [`n${BACKEND_DOMID}`, `r${domid}`]);
          }
          await dir(frontendPath(ref), frontendPerms(domid));
          for (const [k, v] of Object.entries(nodes.frontend)) await this.deps.xs.write(`${frontendPath(ref)}/${k}`, v, tx);
          await dir(backendPath(ref), backendPerms(domid));
          for (const [k, v] of Object.entries(nodes.backend)) await this.deps.xs.write(`${backendPath(ref)}/${k}`, v, tx);
        }
      });
    } catch (e) {
      if (e instanceof BuildError) throw e;
      throw new BuildError('devices', `writing the device nodes of domain ${domid}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

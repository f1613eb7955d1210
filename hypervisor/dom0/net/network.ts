/*
 * dom0's network as the machine holds it: the bridges by name (created on
 * first use, as `vif = [ '...,bridge=NAME' ]` asks), dom0's endpoint on
 * the default bridge, the heartbeat monitor, and the host UDP forwards of
 * each vif. One tick() lets time act on all of them; the machine calls it
 * whenever its clock moves (after each scheduler step or timer jump).
 */
import createDebug from 'debug';
import type { VifSpec } from '../../tools/xl/config.js';
import { Bridge, type NetClock } from './bridge.js';
import { Dom0Endpoint, DOM0_IP, DOM0_MAC, DOM0_PREFIX_LENGTH } from './endpoint.js';
import { HeartbeatMonitor, HEARTBEAT_PORT } from './heartbeat.js';
import { UdpForwarder } from './forward.js';

const log = createDebug('dom0:net');

export interface Dom0NetworkOptions {
  readonly clock: NetClock;
  /** The bridge dom0's address lives on (default `xenbr0`). */
  readonly bridgeName?: string;
  readonly ip?: string;
  readonly prefixLength?: number;
  readonly mac?: string;
  readonly heartbeatPort?: number;
  /** Idle timeout of forwarded UDP flows (default 60 s). */
  readonly forwardIdleTimeoutNs?: number;
}

export class Dom0Network {
  readonly endpoint: Dom0Endpoint;
  readonly heartbeats: HeartbeatMonitor;
  readonly defaultBridge: Bridge;
  private readonly clock: NetClock;
  private readonly bridges = new Map<string, Bridge>();
  private readonly forwards = new Map<string, UdpForwarder[]>();
  private readonly forwardIdleTimeoutNs: number | undefined;

  constructor(opts: Dom0NetworkOptions) {
    this.clock = opts.clock;
    this.forwardIdleTimeoutNs = opts.forwardIdleTimeoutNs;
    this.defaultBridge = this.bridge(opts.bridgeName ?? 'xenbr0');
    this.endpoint = new Dom0Endpoint({
      bridge: this.defaultBridge,
      clock: opts.clock,
      ip: opts.ip ?? DOM0_IP,
      prefixLength: opts.prefixLength ?? DOM0_PREFIX_LENGTH,
      mac: opts.mac ?? DOM0_MAC,
    });
    this.heartbeats = new HeartbeatMonitor(this.endpoint, opts.heartbeatPort ?? HEARTBEAT_PORT);
  }

  /** The bridge of that name, created on first use. */
  bridge(name: string): Bridge {
    let b = this.bridges.get(name);
    if (!b) {
      b = new Bridge({ name, clock: this.clock });
      this.bridges.set(name, b);
      log('bridge %s created', name);
    }
    return b;
  }

  bridgeNames(): string[] {
    return [...this.bridges.keys()];
  }

  /**
   * Open the host UDP forwards of one vif (`vifName` such as `vif3.0`).
   * All or nothing: if one host port cannot be bound, those already opened
   * are closed and the UdpForwardError (naming the port) is rethrown.
   * Forwards reach guests on dom0's bridge only.
   */
  async openForwards(vifName: string, vif: VifSpec): Promise<readonly UdpForwarder[]> {
    if (this.forwards.has(vifName)) throw new Error(`forwards of ${vifName} are already open`);
    if (vif.forwards.length > 0 && vif.bridge !== this.defaultBridge.name) {
      throw new Error(`${vifName}: forward= needs the vif on ${this.defaultBridge.name}, where dom0 has its address, not on ${vif.bridge}`);
    }
    const opened: UdpForwarder[] = [];
    try {
      for (const f of vif.forwards) {
        opened.push(await UdpForwarder.open({
          endpoint: this.endpoint,
          clock: this.clock,
          hostPort: f.hostPort,
          guestPort: f.guestPort,
          guestMac: vif.mac,
          name: vifName,
          ...(vif.ip === undefined ? {} : { guestIp: vif.ip }),
          ...(this.forwardIdleTimeoutNs === undefined ? {} : { idleTimeoutNs: this.forwardIdleTimeoutNs }),
        }));
      }
    } catch (err) {
      await Promise.all(opened.map((f) => f.close()));
      throw err;
    }
    this.forwards.set(vifName, opened);
    return opened;
  }

  forwardsOf(vifName: string): readonly UdpForwarder[] {
    return this.forwards.get(vifName) ?? [];
  }

  /** Close a vif's forwards (the domain was destroyed, saved or migrated away). */
  async closeForwards(vifName: string): Promise<void> {
    const list = this.forwards.get(vifName);
    if (!list) return;
    this.forwards.delete(vifName);
    await Promise.all(list.map((f) => f.close()));
  }

  /** Let time act everywhere: ageing, ARP retries, ping timeouts, idle flows. */
  tick(): void {
    for (const b of this.bridges.values()) b.tick();
    this.endpoint.tick();
    for (const list of this.forwards.values()) for (const f of list) f.tick();
  }

  async close(): Promise<void> {
    await Promise.all([...this.forwards.keys()].map((v) => this.closeForwards(v)));
    this.heartbeats.close();
    this.endpoint.close();
  }
}

/*
 * dom0's backends as one machine holds them, wired once:
 *
 *   MachineBackendHost   grant copies, ring mappings and event channels as
 *                        dom0 (dom0/backend-host.ts), shared by both engines
 *   Blkback, Netback     their poll() runs between guest entries
 *                        (machine.defer is their `schedule` hook)
 *   Dom0Network          `xenbr0` with dom0 at 10.0.0.1, other bridges made
 *                        as vifs name them, heartbeats, host UDP forwards
 *   BackendDriver        the xenbus side, on its own xenstore connection
 *   DeviceAdder          the toolstack side (the builder's attachDevices /
 *                        detachDevices hooks)
 *
 * Time in the network (ARP retries, ping timeouts, ageing, idle forwards)
 * moves when tick() is called: after every netback poll, from a machine
 * timer while a ping is outstanding (so a simulated clock jumps to it),
 * and from the daemon's periodic host timer.
 */
import type { Machine } from '../../xen/machine.js';
import { Timer } from '../../xen/time.js';
import { Blkback, type VbdInfo } from '../../dom0/blkback/blkback.js';
import { Netback, type VifInfo } from '../../dom0/netback/netback.js';
import { machineBackendHost, type MachineBackendHost } from '../../dom0/backend-host.js';
import { Dom0Network } from '../../dom0/net/network.js';
import type { ArpEntry, PingResult } from '../../dom0/net/endpoint.js';
import type { FdbEntry, GratuitousArpEvent } from '../../dom0/net/bridge.js';
import type { HeartbeatSource } from '../../dom0/net/heartbeat.js';
import type { ForwardCounters } from '../../dom0/net/forward.js';
import { XsClient } from '../xenstored/client.js';
import type { LocalPort, Xenstored } from '../xenstored/server.js';
import { BackendDriver, type DeviceStatus } from './driver.js';
import { DeviceAdder, type DeviceSet } from './devices.js';
import { vbdKind, vifKind } from './kinds.js';

/** How often the network's clock is looked at while a ping waits (system time). */
export const NET_TICK_NS = 100_000_000;
/** `xl network-ping` gives up after this long without an answer. */
export const PING_TIMEOUT_NS = 2_000_000_000;

export interface Dom0BackendsOptions {
  readonly machine: Machine;
  readonly xenstored: Xenstored;
  /** The toolstack's xenstore connection, for adding and removing device nodes. */
  readonly xs: XsClient;
}

/** `network-info`: what the demo and the tests look at. JSON as is. */
export interface NetworkInfo {
  readonly dom0: { readonly ip: string; readonly mac: string; readonly bridge: string; readonly arp: readonly ArpEntry[] };
  readonly bridges: readonly { readonly name: string; readonly ports: readonly string[]; readonly fdb: readonly FdbEntry[] }[];
  /** Every gratuitous ARP any bridge forwarded, oldest first. */
  readonly gratuitousArps: readonly (GratuitousArpEvent & { readonly bridge: string })[];
  readonly heartbeats: readonly HeartbeatSource[];
  readonly heartbeatPort: number;
  readonly vifs: readonly VifInfo[];
  readonly vbds: readonly VbdInfo[];
  readonly devices: readonly DeviceStatus[];
  readonly forwards: readonly {
    readonly vif: string; readonly hostPort: number; readonly guestPort: number; readonly guestIp: string | undefined;
    readonly counters: ForwardCounters;
  }[];
}

export class Dom0Backends {
  readonly host: MachineBackendHost;
  readonly blkback: Blkback;
  readonly netback: Netback;
  readonly net: Dom0Network;
  readonly driver: BackendDriver;
  readonly adder: DeviceAdder;
  private readonly m: Machine;
  private readonly port: LocalPort;
  private readonly tickTimer: Timer;
  private pingsWaiting = 0;
  private closed = false;

  constructor(opts: Dom0BackendsOptions) {
    const m = opts.machine;
    this.m = m;
    this.host = machineBackendHost(m);
    this.net = new Dom0Network({ clock: m.clock });
    let driver: BackendDriver | undefined;
    this.blkback = new Blkback({
      host: this.host,
      schedule: () => m.defer(() => this.blkback.poll()),
      onStateChange: (v) => driver?.engineFailed({ kind: 'vbd', frontendDomid: v.frontendDomid, devid: v.devid }),
    });
    this.netback = new Netback({
      host: this.host,
      schedule: () => m.defer(() => {
        this.netback.poll();
        this.net.tick();
      }),
      onStateChange: (v) => driver?.engineFailed({ kind: 'vif', frontendDomid: v.frontendDomid, devid: v.devid }),
    });
    let port: LocalPort | undefined;
    const xs = new XsClient((msg) => port?.send(msg));
    port = opts.xenstored.connectLocal((msg) => xs.receive(msg));
    this.port = port;
    driver = new BackendDriver({
      xs,
      kinds: [vbdKind(this.blkback), vifKind(this.netback, (name) => this.net.bridge(name))],
      report: (line) => m.log.xen(`backend: ${line}`),
    });
    this.driver = driver;
    this.adder = new DeviceAdder({ xs: opts.xs, driver, net: this.net });
    this.tickTimer = new Timer(() => this.timedTick());
  }

  /** Start watching the backend directories. */
  start(): Promise<void> {
    return this.driver.start();
  }

  /** The builder's attachDevices hook; also hotplug (a disk added to a running domain). */
  attachDevices(domid: number, cfg: DeviceSet): Promise<void> {
    return this.adder.add(domid, cfg);
  }

  /** The builder's detachDevices hook. */
  detachDevices(domid: number): Promise<void> {
    return this.adder.remove(domid);
  }

  /** Let time act on the network. */
  tick(): void {
    if (!this.closed) this.net.tick();
  }

  /** ICMP echo from dom0's address; never rejects. */
  async ping(ip: string, timeoutNs: number = PING_TIMEOUT_NS): Promise<PingResult> {
    this.pingsWaiting++;
    this.armTick();
    try {
      return await this.net.endpoint.ping(ip, { timeoutNs });
    } finally {
      this.pingsWaiting--;
    }
  }

  info(): NetworkInfo {
    const net = this.net;
    const bridges = net.bridgeNames().map((name) => net.bridge(name));
    return {
      dom0: { ip: net.endpoint.ip, mac: net.endpoint.mac, bridge: net.defaultBridge.name, arp: net.endpoint.arpCache() },
      bridges: bridges.map((b) => ({ name: b.name, ports: b.portNames(), fdb: b.fdb() })),
      gratuitousArps: bridges.flatMap((b) => b.gratuitousArps().map((e) => ({ ...e, bridge: b.name })))
        .sort((a, b) => a.timeNs - b.timeNs),
      heartbeats: net.heartbeats.all(),
      heartbeatPort: net.heartbeats.port,
      vifs: this.netback.info(),
      vbds: this.blkback.info(),
      devices: this.driver.status(),
      forwards: this.netback.list().flatMap((v) => net.forwardsOf(v.name).map((f) => ({
        vif: v.name, hostPort: f.hostPort, guestPort: f.guestPort, guestIp: f.guestIp(), counters: { ...f.counters() },
      }))),
    };
  }

  /** After every domain is gone: stop the driver, close the network, give the bounce frame back. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.m.timers.cancel(this.tickTimer);
    this.driver.close();
    this.port.close();
    await this.net.close();
    this.host.close();
  }

  private armTick(): void {
    if (this.tickTimer.active || this.closed) return;
    this.m.timers.set(this.tickTimer, this.m.clock.now() + NET_TICK_NS);
    this.m.poke();
  }

  private timedTick(): void {
    this.tick();
    if (this.pingsWaiting > 0) this.armTick();
  }
}

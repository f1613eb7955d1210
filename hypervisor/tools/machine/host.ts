/*
 * The machine host: the hypervisor plus everything dom0 runs around it,
 * wired together once, for the machine daemon and for in-process tests.
 *
 *   Machine           the hypervisor (its clock is driven by the caller)
 *   Xenstored         in-process, optionally on a unix socket; each
 *                     introduced domain's store ring mapped through the
 *                     toolstack (MachineLink) and kicked by its port
 *   Xenconsoled       console pages, console_io output, `<dir>/console/N.log`
 *   DomainController  ctrl_if pages (Xen 2.0's control interface)
 *   Dom0Backends      blkback, netback, the bridges and dom0's address,
 *                     the xenbus backend driver (tools/backend)
 *   the toolstack     builder, the domains it made (by name and id), and
 *                     what happens when one shuts down (VIRQ_DOM_EXC ->
 *                     on_poweroff / on_reboot / on_crash: destroy,
 *                     restart, preserve, rename-restart)
 *
 * Nothing here parses command lines or speaks to sockets other than
 * xenstored's; verbs.ts turns control requests into calls on this class.
 */
import type { KernelImage } from '../../public/cpu.js';
import { VIRQ_DOM_EXC } from '../../public/xen.js';
import { SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_suspend, SHUTDOWN_watchdog } from '../../public/sched.js';
import { domid as toDomId } from '../../public/types.js';
import { errnoName } from '../../public/errno.js';
import { Machine, type MachineOptions } from '../../xen/machine.js';
import { Timer } from '../../xen/time.js';
import { shutdownReasonName } from '../../xen/lifecycle.js';
import { Xenconsoled } from '../../dom0/console/xenconsoled.js';
import { DomainController, type CtrlIfClock } from '../../dom0/ctrlif/controller.js';
import { Xenstored } from '../xenstored/server.js';
import { XsClient, XsError } from '../xenstored/client.js';
import type { LocalPort } from '../xenstored/server.js';
import type { DomainConfig, OnEvent } from '../xl/config.js';
import { buildDomain, teardownDomain, type BuilderServices, type BuiltDomain } from '../builder/build.js';
import { BuildError } from '../builder/errors.js';
import { domainPath } from '../builder/xenstore.js';
import { MachineLink } from './link.js';
import { listenXenstored, type SocketListener } from './xs-socket.js';
import { Dom0Backends } from '../backend/dom0.js';
import type { PingResult } from '../../dom0/net/endpoint.js';

/** A toolstack failure the user should see as one line (unknown domain, name taken, ...). */
export class ToolstackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolstackError';
  }
}

export interface HostOptions {
  readonly machine?: MachineOptions;
  readonly images?: readonly KernelImage[];
  /** Where console logs go (`<consoleDir>/<domid>.log`); omitted: in memory only. */
  readonly consoleDir?: string;
  /** Serve xenstored on this unix socket too. */
  readonly xenstoredSocket?: string;
  /** ns a ctrl_if request may wait for the guest's answer. */
  readonly ctrlIfTimeoutNs?: number;
  /**
   * false: dom0's xenbus backend driver does not run (for a test that runs
   * its own on the same backend directories: two drivers would fight over
   * every device). Creating a domain with disks or vifs then fails.
   */
  readonly backendDriver?: boolean;
}

/** A domain this toolstack built and still looks after. */
export interface DomainRecord {
  readonly built: BuiltDomain;
  /** The name shown by `xl list` (rename-restart changes it). */
  name: string;
  /** A shutdown was seen and is being (or was) acted on. */
  shutdownSeen: boolean;
  /** Preserved after shutdown (on_* = preserve). */
  preserved: boolean;
  /** Called once the domain is destroyed or preserved (`xl shutdown -w`). */
  readonly waiters: (() => void)[];
}

/** One row of `xl list`. */
export interface DomainRow {
  readonly name: string;
  readonly domid: number;
  readonly memMiB: number;
  readonly vcpus: number;
  readonly state: string;
  readonly cpuTimeSec: number;
  readonly uuid?: string;
  readonly kernel?: string;
}

/** CtrlIfClock over the machine's clock and timer queue. */
function machineClock(m: Machine): CtrlIfClock {
  return {
    now: () => m.clock.now(),
    setTimer: (deadline, fire) => {
      const t = new Timer(fire);
      m.timers.set(t, deadline);
      m.poke();
      return { cancel: () => m.timers.cancel(t) };
    },
  };
}

export class MachineHost {
  readonly m: Machine;
  readonly xenstored: Xenstored;
  /** dom0's own xenstore connection (privileged). */
  readonly xs: XsClient;
  readonly consoled: Xenconsoled;
  readonly controller: DomainController;
  readonly backends: Dom0Backends;
  readonly link: MachineLink;
  readonly services: BuilderServices;
  readonly startedAt = Date.now();
  private readonly records = new Map<number, DomainRecord>();
  /** Names of domains being created (so two creates cannot take one name). */
  private readonly creating = new Set<string>();
  /** Settles when the build in progress (if any) is done. */
  private createLock: Promise<void> = Promise.resolve();
  private readonly domExcPort: number;
  private readonly xsPort: LocalPort;
  private closed = false;
  /** Lifecycle actions in flight (restart, destroy after shutdown): close() waits for them. */
  private readonly inflight = new Set<Promise<void>>();

  private xsListener: SocketListener | undefined;

  private constructor(opts: HostOptions) {
    const m = new Machine(opts.machine ?? {});
    this.m = m;
    for (const img of opts.images ?? []) m.registerImage(img);
    this.link = new MachineLink(m);
    this.xenstored = new Xenstored({
      domainExists: (id) => id === 0 || m.domain(id) !== undefined,
      mapRing: (domid, mfn, port) => this.link.storeRing(domid, mfn, port, () => this.xenstored.ringOf(domid)?.kick()),
    });
    let port: LocalPort | undefined;
    this.xs = new XsClient((msg) => port?.send(msg));
    port = this.xenstored.connectLocal((msg) => this.xs.receive(msg));
    this.xsPort = port;
    this.backends = new Dom0Backends({ machine: m, xenstored: this.xenstored, xs: this.xs });
    this.consoled = new Xenconsoled(this.link, opts.consoleDir === undefined ? {} : { consoleDir: opts.consoleDir });
    this.controller = new DomainController(this.link, {
      clock: machineClock(m),
      consoleOutput: (d, data) => this.consoled.appendOutput(d, data),
      ...(opts.ctrlIfTimeoutNs === undefined ? {} : { timeoutNs: opts.ctrlIfTimeoutNs }),
    });
    // console_io output joins the console log at once, inside the hypercall:
    // a kernel may print through console_io and through its ring within one
    // entry (the whole boot is one entry), and appendOutput drains the ring
    // first, so only doing it now keeps the guest's order. It is safe there:
    // the only thing it can do to the guest is an event send from dom0,
    // which just marks the port pending.
    m.log.onConsole = (domid, text) => {
      if (this.consoled.state(toDomId(domid)) !== undefined) this.consoled.appendOutput(toDomId(domid), text);
    };
    this.services = {
      xs: this.xs,
      attachConsole: (d, mfn, p) => this.consoled.add(d, mfn, p),
      attachCtrlIf: (d, mfn, p) => this.controller.add(d, mfn, p),
      detach: (d) => {
        // What the guest left on its pages before it went is taken first:
        // ctrl_if answers (and console data sent that way), then the console ring.
        this.controller.kick(toDomId(d));
        this.consoled.remove(toDomId(d));
        this.controller.remove(toDomId(d));
        this.link.closeStore(d);
      },
      attachDevices: (d, cfg) => {
        if (opts.backendDriver !== false) return this.backends.attachDevices(d, cfg);
        if (cfg.disks.length + cfg.vifs.length === 0) return Promise.resolve();
        return Promise.reject(new BuildError('devices', 'this machine serves no disks or vifs (its backend driver is off)'));
      },
      detachDevices: (d) => this.backends.detachDevices(d),
      domainGone: (d) => this.xenstored.domainGone(toDomId(d)),
      consoleOutput: (d) => {
        const p = this.consoled.logPath(toDomId(d));
        return p === undefined ? 'pty' : `file:${p}`;
      },
    };
    this.domExcPort = m.xc.bindVirq(VIRQ_DOM_EXC);
    if (this.domExcPort < 0) throw new Error(`cannot bind VIRQ_DOM_EXC: ${this.domExcPort}`);
    m.onDom0Event(this.domExcPort, () => this.onDomainException());
  }

  /** A host; with `xenstoredSocket`, xenstored is listening there when this resolves. */
  static async create(opts: HostOptions = {}): Promise<MachineHost> {
    const host = new MachineHost(opts);
    try {
      if (opts.backendDriver !== false) await host.backends.start();
      if (opts.xenstoredSocket !== undefined) host.xsListener = await listenXenstored(host.xenstored, opts.xenstoredSocket);
    } catch (e) {
      await host.close();
      throw e;
    }
    return host;
  }

  // --- domains -----------------------------------------------------------------

  get domainRecords(): DomainRecord[] {
    return [...this.records.values()].sort((a, b) => a.built.domid - b.built.domid);
  }

  record(domid: number): DomainRecord | undefined {
    return this.records.get(domid);
  }

  /** A domain named by name or numeric id (dom0 is 0 or Domain-0). */
  resolve(dom: string): number {
    if (dom === 'Domain-0') return 0;
    if (/^\d+$/.test(dom)) {
      const id = Number(dom);
      if (id === 0 || this.m.domain(id) !== undefined) return id;
      throw new ToolstackError(`domain ${dom} does not exist`);
    }
    for (const r of this.records.values()) if (r.name === dom) return r.built.domid;
    throw new ToolstackError(`domain "${dom}" does not exist`);
  }

  /** `xl create`: build and (unless paused) start a domain; `uuid` for a restart (same VM) or a test. */
  async create(cfg: DomainConfig, paused = false, uuid?: string): Promise<BuiltDomain> {
    if (this.closed) throw new ToolstackError('the machine is stopping');
    if (cfg.name === 'Domain-0' || this.creating.has(cfg.name) || [...this.records.values()].some((r) => r.name === cfg.name)) {
      throw new ToolstackError(`a domain named "${cfg.name}" already exists`);
    }
    this.creating.add(cfg.name);
    // One build at a time, as xl takes its lock around domain creation.
    const turn = this.createLock.then(async () => {
      const built = await buildDomain(this.m, this.services, cfg, { paused, ...(uuid === undefined ? {} : { uuid }) });
      this.records.set(built.domid, { built, name: cfg.name, shutdownSeen: false, preserved: false, waiters: [] });
      return built;
    });
    this.createLock = turn.then(() => undefined, () => undefined);
    try {
      return await turn;
    } finally {
      this.creating.delete(cfg.name);
    }
  }

  /** `xl destroy`: take the domain down now, whatever it is doing. */
  async destroy(domid: number): Promise<void> {
    if (domid === 0) throw new ToolstackError('Domain-0 cannot be destroyed');
    const r = this.records.get(domid);
    if (r === undefined && this.m.domain(domid) === undefined) throw new ToolstackError(`domain ${domid} does not exist`);
    this.records.delete(domid);
    await teardownDomain(this.m, this.services, domid, r?.built.uuid);
    this.m.log.xen(`d${domid} destroyed by the toolstack`);
    if (r !== undefined) for (const w of r.waiters.splice(0)) w();
  }

  pause(domid: number): void {
    if (domid === 0) throw new ToolstackError('Domain-0 cannot be paused');
    const rc = this.m.xc.pauseDomain(domid);
    if (rc < 0) throw new ToolstackError(`cannot pause domain ${domid} (${errnoName(rc)}: it is shutting down or dying)`);
  }

  unpause(domid: number): void {
    if (domid === 0) throw new ToolstackError('Domain-0 is not paused');
    const rc = this.m.xc.unpauseDomain(domid);
    if (rc < 0) throw new ToolstackError(`domain ${domid} is not paused`);
  }

  /**
   * `xl shutdown`: ask the guest to power off, through xenstore
   * (control/shutdown, if it advertised control/feature-poweroff) or
   * through ctrl_if (CMSG_SHUTDOWN). With `wait`, resolve once the domain
   * is gone (or preserved).
   */
  async shutdown(domid: number, via: 'xenstore' | 'ctrl_if', wait: boolean): Promise<void> {
    if (domid === 0) throw new ToolstackError('Domain-0 cannot be shut down from here (use xl machine stop)');
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    const gone = wait ? this.waitGone(r) : Promise.resolve();
    if (via === 'ctrl_if') {
      const res = await this.controller.sendShutdown(toDomId(domid), 'poweroff');
      if (!res.ok) throw new ToolstackError(`ctrl_if shutdown of ${r.name} (${domid}) failed: ${res.error.kind}: ${res.error.detail}`);
    } else {
      const dom = domainPath(domid);
      const feature = await this.xs.read(`${dom}/control/feature-poweroff`).catch(() => '');
      if (feature !== '1') {
        throw new ToolstackError(`domain ${r.name} (${domid}) has not advertised control/feature-poweroff: its kernel does not watch control/shutdown (try --ctrl-if, or xl destroy)`);
      }
      await this.xs.write(`${dom}/control/shutdown`, 'poweroff');
    }
    await gone;
  }

  private waitGone(r: DomainRecord): Promise<void> {
    if (r.preserved || !this.records.has(r.built.domid)) return Promise.resolve();
    return new Promise((resolve) => r.waiters.push(resolve));
  }

  // --- what happens when a domain shuts down -------------------------------------

  /** VIRQ_DOM_EXC: some domain shut down or died; look at each of ours (libxl's domain death watch). */
  private onDomainException(): void {
    for (const r of [...this.records.values()]) {
      const domid = r.built.domid;
      const info = this.m.xc.getDomainInfo(domid);
      if (info === undefined) {
        // Destroyed behind the toolstack's back: tidy up what is left.
        this.track(this.destroy(domid).catch(() => undefined));
        continue;
      }
      if (!info.shutdown || r.shutdownSeen) continue;
      r.shutdownSeen = true;
      this.xenstored.domainShutdown(toDomId(domid));
      const reason = info.shutdownReason ?? SHUTDOWN_crash;
      if (reason === SHUTDOWN_suspend) continue; // save/restore's business
      this.track(this.onShutdown(r, reason));
    }
  }

  /**
   * The domain was resumed in place after a suspend (`xl save -c`, a failed
   * migration): its next shutdown is a new one to act on.
   */
  domainResumed(domid: number): void {
    const r = this.records.get(domid);
    if (r !== undefined) r.shutdownSeen = false;
  }

  /** Resolves once every lifecycle action started so far (destroy, restart) has finished. */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private actionFor(r: DomainRecord, reason: number): OnEvent {
    const c = r.built.config;
    if (reason === SHUTDOWN_poweroff) return c.onPoweroff;
    if (reason === SHUTDOWN_reboot) return c.onReboot;
    if (reason === SHUTDOWN_crash) return c.onCrash;
    if (reason === SHUTDOWN_watchdog) return 'destroy';
    return c.onReboot; // soft_reset: start over, as a reboot
  }

  private async onShutdown(r: DomainRecord, reason: number): Promise<void> {
    const domid = r.built.domid;
    const action = this.actionFor(r, reason);
    this.m.log.xen(`d${domid} (${r.name}) ${shutdownReasonName(reason)}: ${action}`);
    switch (action) {
      case 'preserve':
        r.preserved = true;
        for (const w of r.waiters.splice(0)) w();
        return;
      case 'destroy':
      case 'coredump-destroy':
        return this.destroy(domid);
      case 'rename-restart': {
        r.preserved = true;
        r.name = `${r.name}-${domid}`;
        await this.xs.write(`${domainPath(domid)}/name`, r.name).catch(() => undefined);
        for (const w of r.waiters.splice(0)) w();
        return this.restart(r.built.config, r.built.uuid, domid);
      }
      case 'restart':
      case 'coredump-restart':
      case 'soft-reset':
        await this.destroy(domid);
        return this.restart(r.built.config, r.built.uuid, domid);
    }
  }

  private async restart(cfg: DomainConfig, uuid: string, oldDomid: number): Promise<void> {
    if (this.closed) return;
    try {
      const b = await this.create(cfg, false, uuid);
      this.m.log.xen(`d${oldDomid} (${cfg.name}) restarted as d${b.domid}`);
    } catch (e) {
      this.m.log.xen(`restarting ${cfg.name} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  // --- reports ------------------------------------------------------------------------

  /** `xl list`: dom0 and every domain, with xl's state letters. */
  list(): DomainRow[] {
    const infos = this.m.xc.listDomains();
    if (typeof infos === 'number') throw new ToolstackError(`getdomaininfolist failed (errno ${-infos})`);
    return infos.map((i) => {
      const r = this.records.get(i.domid);
      const crashed = i.shutdown && i.shutdownReason === SHUTDOWN_crash;
      const state = i.domid === 0
        ? 'r-----'
        : `${i.running ? 'r' : '-'}${i.blocked ? 'b' : '-'}${i.paused ? 'p' : '-'}${i.shutdown ? 's' : '-'}${crashed ? 'c' : '-'}${i.dying ? 'd' : '-'}`;
      const row: DomainRow = {
        name: i.domid === 0 ? 'Domain-0' : r?.name ?? '(null)',
        domid: i.domid,
        memMiB: Math.floor((i.totPages * 4096) / 2 ** 20),
        // dom0 is host code: its vCPU is never brought up, but it has one.
        vcpus: i.domid === 0 ? i.maxVcpuId + 1 : i.nrOnlineVcpus,
        state,
        cpuTimeSec: i.cpuTimeNs / 1e9,
      };
      return r === undefined ? row : { ...row, uuid: r.built.uuid, kernel: r.built.image.name };
    });
  }

  /** Pages of machine memory: total and free. */
  memory(): { totalPages: number; freePages: number } {
    const p = this.m.xc.physinfo();
    if (typeof p === 'number') throw new ToolstackError(`physinfo failed (errno ${-p})`);
    return { totalPages: p.totalPages, freePages: p.freePages };
  }

  /** Read a xenstore node as dom0 ('' when absent). */
  async readNode(path: string): Promise<string> {
    try {
      return await this.xs.read(path);
    } catch (e) {
      if (e instanceof XsError) return '';
      throw e;
    }
  }

  // --- network -------------------------------------------------------------------------

  /**
   * The address dom0 reaches a domain at: its first vif's `ip=`, else what
   * that vif's MAC last announced over ARP.
   */
  guestIp(domid: number): string {
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    const vifs = r.built.config.vifs;
    if (vifs.length === 0) throw new ToolstackError(`domain ${r.name} (${domid}) has no vif`);
    const withIp = vifs.find((v) => v.ip !== undefined)?.ip;
    if (withIp !== undefined) return withIp;
    for (const v of vifs) {
      const learned = this.backends.net.endpoint.ipOf(v.mac);
      if (learned !== undefined) return learned;
    }
    throw new ToolstackError(`domain ${r.name} (${domid}): no address known (its vif has no ip= and it has not announced one over ARP)`);
  }

  /** `xl network-ping`: ICMP echo from dom0 (10.0.0.1) to the domain. */
  async ping(domid: number, timeoutNs?: number): Promise<{ readonly ip: string; readonly result: PingResult }> {
    const ip = this.guestIp(domid);
    return { ip, result: await this.backends.ping(ip, timeoutNs) };
  }

  /** Destroy every domain, stop serving, close xenstored (and its socket). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.createLock;
    await this.settle();
    for (const r of this.domainRecords) await this.destroy(r.built.domid).catch(() => undefined);
    this.m.offDom0Event(this.domExcPort);
    this.m.log.onConsole = null;
    this.consoled.close();
    this.controller.close();
    await this.backends.close();
    this.xsPort.close();
    await this.m.stop();
    await this.xsListener?.close();
    this.xenstored.close();
  }
}

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
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { mfn as toMfn, evtchnPort } from '../../public/types.js';
import { formatConfig, parseConfig } from '../xl/config.js';
import { planLayout } from '../builder/layout.js';
import { introduceDomain, writeDomainNodes } from '../builder/xenstore.js';
import {
  saveDomain, restoreDomain, waitForSuspend, p2mOf, formatP2m, fastResume, WaitError, SaveError, RestoreError,
  type DomExcSource, type RestoredDomain, type RestoreSource, type SaveMachine, type SaveOptions, type SaveResult,
} from '../save/index.js';
import { StreamError, type StreamSink } from '../stream/index.js';
import { xenstoredTraceTap } from './trace-file.js';

/** How `xl save` asks the guest to suspend. */
export type SuspendVia = 'evtchn' | 'xenstore' | 'ctrl_if';

export interface SaveRequest {
  /** `-c`: resume the domain afterwards instead of destroying it. */
  readonly checkpoint?: boolean;
  /** `-p`: leave it paused after the save (implies not destroying it). */
  readonly paused?: boolean;
  /** Default: the suspend event channel if the guest advertised one, else xenstore. */
  readonly via?: SuspendVia;
  /** ms of machine time the guest has to suspend (default 10 s). */
  readonly timeoutMs?: number;
  /** Called as the pages are written: pfns done of the total (every 1024 pfns and at the end). */
  readonly progress?: (done: number, total: number) => void;
}

export interface SaveReport {
  readonly domid: number;
  readonly via: SuspendVia;
  readonly bytes: number;
  readonly pages: number;
  readonly outcome: 'destroyed' | 'resumed' | 'paused';
  /** ms from the request to the guest's suspend, and of writing the image. */
  readonly suspendMs: number;
  readonly writeMs: number;
}

/** How a restored domain is taken in (MachineHost.adoptRestored). */
export interface AdoptOptions {
  /** Start of the error message: `restore of FILE`. */
  readonly what: string;
  /** Where the image came from, to name it in a config error. */
  readonly source: string;
  readonly paused: boolean;
  /** The name to give it, from the saved one (default: the saved one). */
  readonly name?: (saved: string) => string;
  /** `xl restore CONFIG FILE`: restore with this config instead of the one the image carries. */
  readonly config?: DomainConfig;
  /** false: no XS_INTRODUCE (tests of a toolstack that leaves it out; the caller may introduce the domain later). */
  readonly introduce?: boolean;
}

/** How an image held in memory is restored (MachineHost.restoreBytes). */
export interface RestoreBytesOptions {
  /** Names the image in errors and in the log (default: `an image in memory`). */
  readonly source?: string;
  /** `xl restore -p`: leave the domain paused. */
  readonly paused?: boolean;
  /** The name to give the domain instead of the saved one. */
  readonly name?: string;
  /** `xl restore CONFIG FILE`: this config instead of the image's. */
  readonly config?: DomainConfig;
}

/** What MachineHost.writeImage writes besides the pages. */
export interface WriteImageOptions {
  /** `xl save DOM FILE CONFIG`: write this config instead of the domain's own. */
  readonly config?: DomainConfig;
  /** Called as the pages are written: pfns done of the total (every 1024 pfns and at the end). */
  readonly progress?: (done: number, total: number) => void;
}

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
  /** Domains being saved or migrated away, and by what: two of those at once would fight over the suspend and log-dirty mode. */
  private readonly leaving = new Map<number, string>();
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
  private readonly domExcListeners = new Set<() => void>();
  /** VIRQ_DOM_EXC as this host receives it, for waitForSuspend (the host holds the VIRQ). */
  readonly domExc: DomExcSource = {
    subscribe: (l) => {
      this.domExcListeners.add(l);
      return () => this.domExcListeners.delete(l);
    },
  };

  private constructor(opts: HostOptions) {
    const m = new Machine(opts.machine ?? {});
    this.m = m;
    for (const img of opts.images ?? []) m.registerImage(img);
    this.link = new MachineLink(m);
    this.xenstored = new Xenstored({
      domainExists: (id) => id === 0 || m.domain(id) !== undefined,
      mapRing: (domid, mfn, port) => this.link.storeRing(domid, mfn, port, () => this.xenstored.ringOf(domid)?.kick()),
      onRequest: xenstoredTraceTap(m.trace),
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
    m.onDom0Event(this.domExcPort, () => {
      this.onDomainException();
      for (const l of [...this.domExcListeners]) l();
    });
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

  // --- save, restore, p2m ------------------------------------------------------------

  /** Poll `probe` every 20 ms (real time) until true or `ms` pass. */
  private async pollFor(ms: number, probe: () => Promise<boolean>): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (await probe()) return true;
      if (Date.now() > deadline) return false;
      if (this.m.clock.kind === 'simulated') this.m.runUntil(() => false, 2000);
      await new Promise((r) => setTimeout(r, this.m.clock.kind === 'simulated' ? 0 : 20));
    }
  }

  /** Ask the guest to suspend by `via`; resolves once it was asked (and, for xenstore, acked). */
  private async askSuspend(domid: number, name: string, via: SuspendVia, timeoutMs: number): Promise<void> {
    const dom = domainPath(domid);
    if (via === 'evtchn') {
      const remote = Number(await this.readNode(`${dom}/device/suspend/event-channel`));
      if (!Number.isInteger(remote) || remote <= 0) {
        throw new ToolstackError(`domain ${name} (${domid}) has not advertised device/suspend/event-channel (try --suspend=xenstore)`);
      }
      const local = this.m.xc.bindInterdomain(domid, remote);
      if (local < 0) throw new ToolstackError(`cannot bind the suspend event channel ${remote} of domain ${domid} (${errnoName(local)})`);
      try {
        const rc = this.m.xc.notify(local);
        if (rc < 0) throw new ToolstackError(`cannot signal the suspend event channel of domain ${domid} (${errnoName(rc)})`);
        this.m.poke();
      } finally {
        this.m.xc.closePort(local);
      }
      return;
    }
    if (via === 'ctrl_if') {
      const res = await this.controller.sendShutdown(toDomId(domid), 'suspend');
      if (!res.ok) throw new ToolstackError(`ctrl_if suspend of ${name} (${domid}) failed: ${res.error.kind}: ${res.error.detail}`);
      return;
    }
    const node = `${dom}/control/shutdown`;
    await this.xs.write(node, 'suspend');
    this.m.poke();
    const acked = await this.pollFor(timeoutMs, async () => (await this.readNode(node)) === '' || this.isSuspended(domid));
    if (!acked) {
      await this.xs.write(node, '').catch(() => undefined);
      throw new ToolstackError(`domain ${name} (${domid}) did not acknowledge control/shutdown=suspend within ${timeoutMs} ms (the request was withdrawn; the domain keeps running)`);
    }
  }

  /** Shut down with SHUTDOWN_suspend (and not resumed yet). */
  isSuspended(domid: number): boolean {
    const i = this.m.xc.getDomainInfo(domid);
    return i !== undefined && i.shutdown && i.shutdownReason === SHUTDOWN_suspend;
  }

  /** Resume a suspended domain in place (rax = 1), XS_RESUME, and watch it again. */
  async resumeInPlace(domid: number): Promise<void> {
    if (this.isSuspended(domid)) fastResume(this.m, domid);
    await this.xs.resume(domid).catch(() => undefined);
    this.domainResumed(domid);
    this.m.poke();
  }

  /** How `xl save` asks by default: the suspend event channel if the guest advertised one, else xenstore. */
  async defaultSuspendVia(domid: number): Promise<SuspendVia> {
    const ev = await this.readNode(`${domainPath(domid)}/device/suspend/event-channel`);
    return /^\d+$/.test(ev) && Number(ev) > 0 ? 'evtchn' : 'xenstore';
  }

  /**
   * Ask the guest to suspend by `via` and wait until it has (at most
   * `timeoutMs` of machine time); then log what it printed before it went.
   * A guest that does not suspend in time is resumed in place (in case it
   * does later) and the failure is a ToolstackError starting with `what`.
   */
  async suspendGuest(domid: number, via: SuspendVia, timeoutMs: number, what: string): Promise<void> {
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    this.m.trace.record(domid, 'toolstack', 'suspend requested', `via ${via}`);
    await this.askSuspend(domid, r.name, via, timeoutMs);
    try {
      await waitForSuspend(this.m, domid, timeoutMs * 1e6, { domExc: this.domExc, onStep: this.m.trace.steps(domid) });
    } catch (e) {
      if (e instanceof WaitError) {
        if (e.code === 'timeout') await this.resumeInPlace(domid).catch(() => undefined);
        throw new ToolstackError(`${what}: ${e.message}`);
      }
      throw e;
    }
    // What the guest printed before it went is logged now, once.
    this.controller.kick(toDomId(domid));
    this.consoled.kick(toDomId(domid));
  }

  /**
   * The machine as the savers see it, except that destroying a domain does
   * nothing: saveDomain and liveSaveDomain destroy the domain themselves
   * after the image, and this host destroys it the normal way instead
   * (devices, nodes, forwards), only once it knows the outcome.
   */
  savingMachine(): SaveMachine {
    const xc = this.m.xc;
    const xcNoDestroy = new Proxy(xc, {
      get: (t, k) => {
        if (k === 'destroyDomain') return () => 0;
        const v: unknown = Reflect.get(t, k, t);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    return { xc: xcNoDestroy, frames: this.m.frames, domain: (id) => this.m.domain(id) };
  }

  /**
   * `xl save [-c] [-p] DOM FILE`: ask the guest to suspend, wait, drain its
   * console, write the image to a temporary name beside FILE and rename it
   * when complete; then destroy the domain as `xl destroy` does, or (-c, -p)
   * resume it in place.
   */
  async save(domid: number, file: string, req: SaveRequest = {}): Promise<SaveReport> {
    if (domid === 0) throw new ToolstackError('Domain-0 cannot be saved');
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    if (this.isSuspended(domid)) throw new ToolstackError(`domain ${r.name} (${domid}) is already suspended`);
    const release = this.claimLeaving(domid, 'save');
    try {
      return await this.saveClaimed(domid, r, file, req);
    } finally {
      release();
    }
  }

  /**
   * Mark `domid` as being saved or migrated away (`how`) until the returned
   * function is called; refused while another save or migration has it.
   */
  claimLeaving(domid: number, how: 'save' | 'migration' | 'checkpointing'): () => void {
    const busy = this.leaving.get(domid);
    if (busy !== undefined) {
      const name = this.records.get(domid)?.name ?? String(domid);
      throw new ToolstackError(`domain ${name} (${domid}) is in the middle of a ${busy}; try again when it is over`);
    }
    this.leaving.set(domid, how);
    return () => {
      if (this.leaving.get(domid) === how) this.leaving.delete(domid);
    };
  }

  private async saveClaimed(domid: number, r: DomainRecord, file: string, req: SaveRequest): Promise<SaveReport> {
    const target = path.resolve(file);
    const dirOf = path.dirname(target);
    if (!fs.existsSync(dirOf)) throw new ToolstackError(`cannot write ${target}: no directory ${dirOf}`);
    const keep = req.checkpoint === true || req.paused === true;
    const timeoutMs = req.timeoutMs ?? 10_000;
    const via = req.via ?? await this.defaultSuspendVia(domid);
    const t0 = Date.now();
    await this.suspendGuest(domid, via, timeoutMs, `save of ${r.name} (${domid})`);
    const suspendMs = Date.now() - t0;
    const tmp = path.join(dirOf, `.${path.basename(target)}.partial-${process.pid}`);
    const fd = fs.openSync(tmp, 'w');
    const t1 = Date.now();
    let res;
    try {
      res = await this.writeImage(domid, (c: Uint8Array) => {
        fs.writeSync(fd, c);
      }, req.progress === undefined ? {} : { progress: req.progress });
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, target);
    } catch (e) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
      fs.rmSync(tmp, { force: true });
      await this.resumeInPlace(domid).catch(() => undefined);
      const msg = e instanceof Error ? e.message : String(e);
      throw new ToolstackError(`save of ${r.name} (${domid}) failed, the domain was resumed: ${msg}`);
    }
    const writeMs = Date.now() - t1;
    let outcome: SaveReport['outcome'];
    if (keep) {
      await this.resumeInPlace(domid);
      if (req.paused === true) this.m.xc.pauseDomain(domid);
      outcome = req.paused === true ? 'paused' : 'resumed';
    } else {
      await this.destroy(domid);
      outcome = 'destroyed';
    }
    this.m.log.xen(`d${domid} (${r.name}) saved to ${target} (${res.bytes} bytes, via ${via}): ${outcome}`);
    return { domid, via, bytes: res.bytes, pages: res.pages, outcome, suspendMs, writeMs };
  }

  /**
   * The image of suspended domain `domid` into `sink`, as `xl save` writes
   * it: the domain's xl.cfg (or `opts.config`), its name and uuid, the
   * machine's trace told of each step. The domain is left suspended, on
   * failure too: the caller destroys or resumes it.
   */
  async writeImage(domid: number, sink: StreamSink, opts: WriteImageOptions = {}): Promise<SaveResult> {
    return saveDomain(this.savingMachine(), domid, sink, {
      ...this.imageOptions(domid, 'xl save', opts.config),
      ...(opts.progress === undefined ? {} : { progress: opts.progress }),
    });
  }

  /**
   * What every image of `domid` carries and how it is written, by `xl
   * save` and `xl migrate` alike: the xl.cfg (the domain's, or `config`),
   * its name and uuid and who wrote it, the domain left as it is on
   * failure (the caller resumes it), each step told to the trace.
   */
  imageOptions(domid: number, by: string, config?: DomainConfig): Pick<SaveOptions, 'config' | 'extra' | 'onFailure' | 'onStep'> {
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    return {
      config: formatConfig(config ?? r.built.config),
      extra: { uuid: r.built.uuid, name: r.name, savedBy: `xenport machine pid ${process.pid} (${by})` },
      onFailure: 'leave',
      onStep: this.m.trace.steps(domid),
    };
  }

  /**
   * `xl restore [-p] FILE`: a new paused domain from the image, its
   * xenstore nodes, XS_INTRODUCE, console, ctrl_if, devices from the saved
   * config, unpaused unless `paused`. Nothing is left behind on failure.
   */
  async restore(file: string, paused = false): Promise<{ domid: number; name: string }> {
    if (this.closed) throw new ToolstackError('the machine is stopping');
    const src = path.resolve(file);
    let st: fs.Stats;
    try {
      st = fs.statSync(src);
    } catch (e) {
      throw new ToolstackError(`cannot read ${src}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (!st.isFile()) throw new ToolstackError(`${src} is not a file`);
    return this.withBuildLock(() => this.restoreLocked(fs.createReadStream(src), src, { paused }));
  }

  /** `xl restore` of an image held in memory (tests, benches): as restore(), without the file. */
  restoreBytes(bytes: Uint8Array, opts: RestoreBytesOptions = {}): Promise<{ domid: number; name: string }> {
    const { source = 'an image in memory', name, ...rest } = opts;
    return this.withBuildLock(() => this.restoreLocked(bytes, source, { ...rest, ...(name === undefined ? {} : { name: () => name }) }));
  }

  private async restoreLocked(
    from: RestoreSource, src: string, opts: Omit<AdoptOptions, 'what' | 'source' | 'paused'> & { readonly paused?: boolean },
  ): Promise<{ domid: number; name: string }> {
    let rd;
    try {
      rd = await restoreDomain(this.m, from, { onStep: this.m.trace.steps() });
    } catch (e) {
      if (e instanceof StreamError || e instanceof RestoreError) throw new ToolstackError(`restore of ${src}: ${e.message}`);
      throw e;
    }
    const { domid, name } = await this.adoptRestored(rd, { ...opts, what: `restore of ${src}`, source: src, paused: opts.paused ?? false });
    this.m.log.xen(`d${domid} (${name}) restored from ${src}: ${rd.pages} pages`);
    return { domid, name };
  }

  /** Run `fn` when no other domain is being built or restored (one at a time, as xl locks creation). */
  withBuildLock<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ToolstackError('the machine is stopping'));
    const turn = this.createLock.then(fn);
    this.createLock = turn.then(() => undefined, () => undefined);
    return turn;
  }

  /**
   * What `xl restore` does after the image is in: the domain's xenstore
   * nodes, XS_INTRODUCE, console, ctrl_if, devices from the config the
   * image carries (or `config`); then unpaused unless `paused`. `name`
   * overrides the saved name (a migration comes in as NAME--incoming). The
   * domain is this host's from then on (xl list, save, destroy, on_*). On
   * failure the domain is torn down and the ToolstackError starts with `what`.
   */
  async adoptRestored(rd: RestoredDomain, opts: AdoptOptions): Promise<{ domid: number; name: string }> {
    const { what } = opts;
    const domid = rd.domid;
    let uuid: string | undefined;
    try {
      let cfg = opts.config;
      if (cfg === undefined) {
        if (rd.config === undefined || rd.config.format !== 'xl.cfg') throw new ToolstackError('the image carries no xl.cfg config');
        cfg = parseConfig(rd.config.text, `config in ${opts.source}`);
      }
      const extra = rd.xenportMeta?.extra ?? {};
      const saved = typeof extra['name'] === 'string' ? extra['name'] : cfg.name;
      const name = opts.name?.(saved) ?? saved;
      if (name === 'Domain-0' || this.creating.has(name) || [...this.records.values()].some((x) => x.name === name)) {
        throw new ToolstackError(`a domain named "${name}" already exists`);
      }
      const image = this.m.image(cfg.kernel);
      if (image === undefined) throw new ToolstackError(`no kernel image "${cfg.kernel}" on this machine`);
      uuid = typeof extra['uuid'] === 'string' ? extra['uuid'] : randomUUID();
      await writeDomainNodes(this.xs, {
        domid, name, uuid, kernel: image.name, vcpus: cfg.vcpus,
        targetKb: cfg.memory * 1024, maxMemKb: cfg.memory * 1024 + 1024,
        storeMfn: rd.storeMfn, storePort: rd.storePort, consoleMfn: rd.consoleMfn, consolePort: rd.consolePort,
        consoleOutput: this.services.consoleOutput?.(domid) ?? 'pty',
        startTime: Math.floor(Date.now() / 1000),
      });
      this.m.trace.record(domid, 'toolstack', 'xenstore nodes written', `/local/domain/${domid}, name ${name}`);
      if (opts.introduce !== false) await introduceDomain(this.xs, domid, rd.storeMfn, rd.storePort);
      const c = this.consoled.add(toDomId(domid), toMfn(rd.consoleMfn), evtchnPort(rd.consolePort));
      if (!c.ok) throw new ToolstackError(`console: ${c.error}`);
      this.m.trace.record(domid, 'toolstack', 'console attached', `mfn 0x${rd.consoleMfn.toString(16)}, port ${rd.consolePort}`);
      if (rd.ctrlIf !== undefined) {
        const ci = this.controller.add(toDomId(domid), toMfn(rd.ctrlIf.mfn), evtchnPort(rd.ctrlIf.port));
        if (!ci.ok) throw new ToolstackError(`ctrl_if: ${ci.error}`);
      }
      await this.services.attachDevices?.(domid, cfg);
      this.m.trace.record(domid, 'toolstack', 'devices attached', `${cfg.disks.length} disk(s), ${cfg.vifs.length} vif(s): backends set up`);
      const built: BuiltDomain = {
        domid, name, uuid, config: cfg, image, layout: planLayout(image, cfg.memory * 256), p2m: [],
        sharedInfoMfn: rd.sharedInfoMfn, startInfoMfn: rd.startInfoMfn, storeMfn: rd.storeMfn, storePort: rd.storePort,
        consoleMfn: rd.consoleMfn, consolePort: rd.consolePort, ctrlIfMfn: rd.ctrlIf?.mfn ?? -1, ctrlIfPort: rd.ctrlIf?.port ?? -1,
        l4Mfn: -1, cmdLine: cfg.extra,
      };
      this.records.set(domid, { built, name, shutdownSeen: false, preserved: false, waiters: [] });
      if (!opts.paused) {
        const rc = this.m.xc.unpauseDomain(domid);
        if (rc < 0) throw new ToolstackError(`unpause failed (${errnoName(rc)})`);
      }
      this.m.poke();
      return { domid, name };
    } catch (e) {
      this.records.delete(domid);
      await teardownDomain(this.m, this.services, domid, uuid);
      const msg = e instanceof Error ? e.message : String(e);
      throw new ToolstackError(`${what}: ${msg}`);
    }
  }

  /**
   * Give a domain another name (`xl rename`): what `xl list` shows and its
   * `name` nodes. A migration renames the domain it sends away while the
   * receiver takes the name over.
   */
  async rename(domid: number, name: string): Promise<void> {
    const r = this.records.get(domid);
    if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
    if (r.name === name) return;
    if (name === 'Domain-0' || this.creating.has(name) || [...this.records.values()].some((x) => x !== r && x.name === name)) {
      throw new ToolstackError(`a domain named "${name}" already exists`);
    }
    r.name = name;
    await this.xs.write(`${domainPath(domid)}/name`, name);
    await this.xs.write(`/vm/${r.built.uuid}/name`, name).catch(() => undefined);
  }

  /** `xl p2m DOM`: `pfn mfn` lines from the guest's own P2M, checked with the M2P. */
  p2m(domid: number): string {
    if (domid === 0) throw new ToolstackError('Domain-0 has no P2M here');
    try {
      return formatP2m(p2mOf(this.m, domid));
    } catch (e) {
      if (e instanceof SaveError) throw new ToolstackError(`p2m of domain ${domid}: ${e.message}`);
      throw e;
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

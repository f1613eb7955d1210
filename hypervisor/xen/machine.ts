/*
 * The emulated machine: machine memory and its frame table, the MMU, event
 * channels and grant tables, the clock and timers, the scheduler, the
 * domains (dom0 is domain 0, host code), the kernel images it may boot,
 * and the run loop.
 *
 * Simulated time (tests, demos): `step()` runs one vCPU entry; when every
 * vCPU is blocked, time jumps to the next timer. Each entry also costs a
 * fixed quantum of simulated time, so a busy guest sees its clock move.
 * Everything is deterministic: same inputs, same run.
 *
 * Realtime (the machine daemon): `start()` runs the loop asynchronously,
 * sleeping until the next timer or until host code pokes it.
 *
 * Host work triggered from inside a guest entry (dom0 event handlers,
 * on_crash hooks) is deferred to between entries, so host code never runs
 * re-entrantly inside a hypercall.
 */
import type { KernelImage } from '../public/cpu.js';
import { vcpu_info, VIRQ_TIMER } from '../public/xen.js';
import { EFAULT } from '../public/errno.js';
import { MachineMemory } from './physmem.js';
import { FrameTable } from './frametable.js';
import { createMmEnv, type DomainMemory, type MmEnv } from './mm.js';
import { EventChannels, type EvtchnEnv } from './evtchn.js';
import { GrantTables } from './gnttab.js';
import { Clock, TimerQueue, writeTimeInfo, type ClockKind } from './time.js';
import { Scheduler } from './sched.js';
import { MachineLog, dbg } from './log.js';
import { HypercallTable, hypercallName } from './dispatch.js';
import { enterVcpu, VcpuCpu, type EntryHost } from './entry.js';
import type { CrashInfo, Domain, DomainConfig } from './domain.js';
import type { Vcpu } from './vcpu.js';
import * as life from './lifecycle.js';
import { installHypercalls } from './hypercalls.js';
import { gnttabEnvFor } from './grant-glue.js';
import { Xc } from './toolstack.js';
import { Trace } from './trace.js';
import { traceHypercalls } from './trace-hypercalls.js';

export interface MachineOptions {
  /** Machine memory in bytes (default 512 MiB). */
  readonly memoryBytes?: number;
  /** TSC frequency in kHz (default 2 GHz). */
  readonly tscKhz?: number;
  /** 'simulated' (default) or 'realtime'. */
  readonly clock?: ClockKind;
  /** Seed of the frame allocator's permutation (`--scramble SEED`). */
  readonly scrambleSeed?: number;
  /** Simulated ns each guest entry costs (default 10 us). */
  readonly quantumNs?: number;
  /** Unix time in ns at system time 0 (default: fixed for simulated clocks). */
  readonly bootWallNs?: bigint;
  /** Record the protocol trace from the start (default off; `machine.trace.enabled` switches it). */
  readonly trace?: boolean;
  /** Records the trace keeps (default DEFAULT_TRACE_CAPACITY). */
  readonly traceCapacity?: number;
}

export const DEFAULT_MEMORY_BYTES = 512 * 1024 * 1024;
export const DEFAULT_TSC_KHZ = 2_000_000;
export const DEFAULT_QUANTUM_NS = 10_000;

/** Why runUntil stopped: the condition held, nothing can happen any more, or the step budget ran out. */
export type RunResult = 'done' | 'idle' | 'budget';

const TIME_OFF = vcpu_info.offsetOf('time');

export class Machine implements EntryHost {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  readonly mmEnv: MmEnv;
  readonly clock: Clock;
  readonly timers = new TimerQueue();
  readonly sched: Scheduler;
  readonly log = new MachineLog();
  readonly hypercalls = new HypercallTable();
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTables;
  readonly quantumNs: number;
  readonly dom0: Domain;
  /** The toolstack's handle (libxc-like), issuing real hypercalls as dom0. */
  readonly xc: Xc;
  /** The protocol trace (trace.ts): off unless asked for. */
  readonly trace: Trace;

  /** @internal lifecycle.ts keeps these. */
  readonly domainTable = new Map<number, Domain>();
  /** @internal */
  readonly cpus = new Map<Vcpu, VcpuCpu>();
  /** @internal next domid to try (Xen's rover). */
  domidRover = 0;

  private readonly images = new Map<string, KernelImage>();
  private readonly deferred: (() => void)[] = [];
  private readonly dom0Handlers = new Map<number, (port: number) => void>();
  private dom0UpcallPending = false;
  private running = false;
  private wakeTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped: (() => void) | null = null;

  constructor(opts: MachineOptions = {}) {
    this.memory = new MachineMemory(opts.memoryBytes ?? DEFAULT_MEMORY_BYTES);
    this.frames = new FrameTable(this.memory, opts.scrambleSeed ?? 1);
    this.mmEnv = createMmEnv(this.memory, this.frames);
    this.clock = new Clock({
      kind: opts.clock ?? 'simulated',
      tscKhz: opts.tscKhz ?? DEFAULT_TSC_KHZ,
      ...(opts.bootWallNs === undefined ? {} : { bootWallNs: opts.bootWallNs }),
    });
    this.quantumNs = opts.quantumNs ?? DEFAULT_QUANTUM_NS;
    this.sched = new Scheduler((id) => this.domainTable.get(id));
    this.evtchn = new EventChannels(this.evtchnEnv(), 0);
    this.gnttab = new GrantTables(this.frames, gnttabEnvFor(this));
    this.mmEnv.isForeignMappable = (owner, mfn, writable) => this.gnttab.isForeignMappable(owner, mfn, writable);
    installHypercalls(this);
    this.dom0 = life.createDom0(this);
    this.xc = new Xc(this);
    this.trace = new Trace(() => this.clock.now(), opts.traceCapacity, (on) => {
      this.hypercalls.observer = on ? traceHypercalls(this, this.trace) : null;
    });
    this.trace.enabled = opts.trace === true;
    this.log.xen(`machine up: ${this.memory.nrFrames} frames, tsc ${this.clock.tscKhz} kHz, ${this.clock.kind} clock`);
  }

  // --- kernel images -------------------------------------------------------

  /** Make an image bootable by name (the machine never imports guest code). */
  registerImage(img: KernelImage): void {
    const prev = this.images.get(img.name);
    if (prev !== undefined && prev !== img) throw new Error(`a different kernel image is already registered as ${img.name}`);
    this.images.set(img.name, img);
  }

  image(name: string): KernelImage | undefined {
    return this.images.get(name);
  }

  get imageNames(): string[] {
    return [...this.images.keys()];
  }

  // --- domains -----------------------------------------------------------------

  domain(domid: number): Domain | undefined {
    return this.domainTable.get(domid);
  }

  /** Every domain, dom0 first, in domid order. */
  get domains(): Domain[] {
    return [...this.domainTable.values()].sort((a, b) => a.id - b.id);
  }

  /** mm's DomainLookup. */
  readonly domainMemory = (domid: number): DomainMemory | undefined => this.domainTable.get(domid)?.mem;

  /** Create a domain directly (domctl createdomain goes through here). A Domain or -errno. */
  createDomain(cfg: DomainConfig = {}, domid = 0): Domain | number {
    return life.createDomain(this, domid, cfg);
  }

  destroyDomain(d: Domain): number {
    return life.destroyDomain(this, d);
  }

  pauseDomain(d: Domain): number {
    return life.pauseDomain(this, d);
  }

  unpauseDomain(d: Domain): number {
    return life.unpauseDomain(this, d);
  }

  shutdownDomain(d: Domain, reason: number): void {
    life.shutdownDomain(this, d, reason);
  }

  crashDomain(d: Domain, info: CrashInfo): void {
    life.crashDomain(this, d, info);
  }

  resumeDomain(d: Domain): number {
    return life.resumeDomain(this, d);
  }

  /**
   * Set the value a vCPU finds in rax when it next runs (the result of the
   * hypercall it descheduled in): 1 for a cancelled suspend. Host-side
   * shortcut for what xc_domain_resume does with get/setvcpucontext.
   */
  setHypercallResult(domid: number, vcpu: number, value: number): boolean {
    const v = this.domainTable.get(domid)?.vcpus[vcpu];
    if (v === undefined) return false;
    v.regs.setNum('rax', value);
    return true;
  }

  // --- what the subsystems ask of the core ------------------------------------

  private evtchnEnv(): EvtchnEnv {
    return {
      vcpuCount: (domid) => this.domainTable.get(domid)?.vcpus.length ?? 0,
      sharedInfo: (domid) => this.domainTable.get(domid)?.sharedInfo,
      vcpuInfo: (domid, vcpu) => this.domainTable.get(domid)?.vcpus[vcpu]?.info ?? undefined,
      kick: (domid, vcpu) => this.kick(domid, vcpu),
      wakePoller: (domid, vcpu) => this.wakePoller(domid, vcpu),
    };
  }

  /** evtchn_upcall_pending went up for a vCPU: wake it (any kind of block). */
  private kick(domid: number, vcpu: number): void {
    const d = this.domainTable.get(domid);
    if (d === undefined) return;
    if (d.isHost) {
      this.dom0UpcallPending = true;
      this.poke();
      return;
    }
    const v = d.vcpus[vcpu];
    if (v === undefined || v.blocked === 'none') return;
    if (v.blocked === 'poll') {
      this.evtchn.pollCancel(domid, vcpu);
      this.timers.cancel(v.pollTimer);
    }
    this.sched.unblock(v);
    this.poke();
  }

  private wakePoller(domid: number, vcpu: number): void {
    const v = this.domainTable.get(domid)?.vcpus[vcpu];
    if (v === undefined || v.blocked !== 'poll') return;
    this.timers.cancel(v.pollTimer);
    this.sched.unblock(v);
    this.poke();
  }

  /** @internal a vCPU timer fired. */
  onVcpuTimer(v: Vcpu, which: 'singleshot' | 'periodic' | 'poll'): void {
    const d = this.domainTable.get(v.domid);
    if (d === undefined || d.dying) return;
    switch (which) {
      case 'singleshot':
        this.evtchn.sendVirq(d.id, VIRQ_TIMER, v.id);
        break;
      case 'periodic':
        this.evtchn.sendVirq(d.id, VIRQ_TIMER, v.id);
        if (v.periodNs > 0) this.timers.set(v.periodic, Math.max(v.periodic.deadline + v.periodNs, this.clock.now() + 1));
        break;
      case 'poll':
        // Timed out: SCHEDOP_poll returns 0 and the guest finds nothing pending.
        if (v.blocked !== 'poll') return;
        this.evtchn.pollCancel(d.id, v.id);
        this.sched.unblock(v);
        break;
    }
  }

  /** Xen's update_vcpu_system_time, at every entry. */
  updateVcpuTime(_d: Domain, v: Vcpu): void {
    const info = v.info;
    if (info === null) return;
    const { tsc, systemTime } = this.clock.sample();
    writeTimeInfo(info.mem, info.base + TIME_OFF, tsc, systemTime, this.clock.scale);
  }

  hypercallBug(d: Domain, v: Vcpu, e: unknown, nr: number): number {
    const err = e instanceof Error ? e : new Error(String(e));
    this.log.bug(`hypercall ${hypercallName(nr)} from d${d.id} v${v.id} threw: ${err.stack ?? err.message}`);
    this.crashDomain(d, { reason: `hypervisor error in ${hypercallName(nr)}`, ...(err.stack === undefined ? {} : { stack: err.stack }) });
    return -EFAULT;
  }

  /** Host work to run between entries (never inside a hypercall). */
  defer(fn: () => void): void {
    this.deferred.push(fn);
    this.poke();
  }

  // --- dom0 events (host code) ---------------------------------------------------

  /**
   * Run `handler` (between guest entries) whenever dom0's `port` fires.
   * Ports with no handler are consumed and ignored.
   */
  onDom0Event(port: number, handler: (port: number) => void): void {
    this.dom0Handlers.set(port, handler);
  }

  offDom0Event(port: number): void {
    this.dom0Handlers.delete(port);
  }

  private runDom0Upcall(): void {
    if (!this.dom0UpcallPending) return;
    this.dom0UpcallPending = false;
    for (const port of this.evtchn.drainPending(0, 0)) {
      const h = this.dom0Handlers.get(port);
      if (h === undefined) {
        dbg.evtchn('d0: event on port %d with no host handler', port);
        continue;
      }
      h(port);
    }
  }

  private runDeferred(): void {
    for (let guard = 0; guard < 1000 && (this.deferred.length > 0 || this.dom0UpcallPending); guard++) {
      const fn = this.deferred.shift();
      if (fn !== undefined) fn();
      this.runDom0Upcall();
    }
  }

  // --- the run loop ------------------------------------------------------------

  /**
   * One unit of progress: due timers, host work, then one vCPU entry; or,
   * with nothing runnable on a simulated clock, a jump to the next timer
   * (never past `limitNs`). False when nothing happened.
   */
  step(limitNs?: number): boolean {
    this.runDeferred();
    this.timers.runDue(this.clock.now());
    this.runDeferred();
    const v = this.sched.next();
    if (v !== undefined) {
      const d = this.domainTable.get(v.domid)!;
      this.sched.entries++;
      enterVcpu(this, d, v, this.cpus.get(v)!);
      this.sched.wake(v);
      this.runDeferred();
      return true;
    }
    if (this.clock.kind !== 'simulated') return false;
    const next = this.timers.next();
    if (limitNs !== undefined && (next === undefined || next > limitNs)) {
      this.clock.advanceTo(limitNs);
      return false;
    }
    if (next === undefined) return false;
    this.clock.advanceTo(next);
    this.timers.runDue(this.clock.now());
    this.runDeferred();
    return true;
  }

  /**
   * Run until `until` holds (a predicate, or a system time in ns), nothing
   * can happen any more ('idle'), or `budget` steps were taken.
   */
  runUntil(until: (() => boolean) | number, budget = 10_000_000): RunResult {
    const limit = typeof until === 'number' ? until : undefined;
    const done = typeof until === 'number' ? () => this.clock.now() >= until : until;
    for (let i = 0; i < budget; i++) {
      if (done()) return 'done';
      if (!this.step(limit)) return done() ? 'done' : 'idle';
    }
    return done() ? 'done' : 'budget';
  }

  /** Run until no vCPU is runnable and no timer is armed (or the budget runs out). */
  runToIdle(budget = 10_000_000): RunResult {
    return this.runUntil(() => false, budget);
  }

  /** Realtime driver: run the loop in the background until stop(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(this.tick);
  }

  /** Stop the realtime driver; resolves once the loop has stopped. */
  stop(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.running = false;
    if (this.wakeTimer !== null) {
      clearTimeout(this.wakeTimer);
      this.wakeTimer = null;
    }
    return new Promise((resolve) => {
      this.stopped = resolve;
      setImmediate(() => this.finishStop());
    });
  }

  /** Host activity that may have made work (a socket read, an event): run soon. */
  poke(): void {
    if (!this.running || this.wakeTimer === null) return;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    setImmediate(this.tick);
  }

  private finishStop(): void {
    const s = this.stopped;
    this.stopped = null;
    s?.();
  }

  private readonly tick = (): void => {
    if (!this.running) {
      this.finishStop();
      return;
    }
    const until = Date.now() + 10;
    let busy = true;
    while (busy && Date.now() < until) busy = this.step();
    if (busy || this.deferred.length > 0 || !this.sched.idle) {
      setImmediate(this.tick);
      return;
    }
    const next = this.timers.next();
    const delayMs = next === undefined ? 50 : Math.min(50, Math.max(0, (next - this.clock.now()) / 1e6));
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.tick();
    }, delayMs);
  };
}


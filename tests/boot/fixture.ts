/*
 * Boot fixture: a Machine on a simulated clock, the in-test builder, and a
 * small console backend written straight against io/console.h's layout
 * (dom0 binds the guest's console port, drains `out` on each event,
 * feeds `in`, signals back). Output that arrives through console_io
 * (before xencons attaches, panics) and through the ring ends up in one
 * per-domain transcript, in order: the ring is drained before console_io
 * text is appended, as xenconsoled does.
 */
import { Machine, type MachineOptions } from '../../hypervisor/xen/machine.js';
import { xencons_interface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE, MASK_XENCONS_IDX } from '../../hypervisor/public/io/console.js';
import type { KernelImage } from '../../hypervisor/public/cpu.js';
import { buildPvDomain, type PvDomain, type PvBuildOptions } from './builder.js';
import { BOOT_COMPLETE } from '../../arch/xen/x86/machdep.js';

const OUT = xencons_interface.offsetOf('out');
const IN = xencons_interface.offsetOf('in');
const OUT_CONS = xencons_interface.offsetOf('out_cons');
const OUT_PROD = xencons_interface.offsetOf('out_prod');
const IN_CONS = xencons_interface.offsetOf('in_cons');
const IN_PROD = xencons_interface.offsetOf('in_prod');

interface Cons {
  readonly domid: number;
  readonly mfn: number;
  readonly local: number;
  text: string;
  input: string;
  notifies: number;
}

export class TestConsoles {
  private readonly cons = new Map<number, Cons>();
  private readonly early = new Map<number, string>();

  constructor(private readonly m: Machine) {
    m.log.onConsole = (domid, text) => {
      const c = this.cons.get(domid);
      if (c === undefined) {
        this.early.set(domid, (this.early.get(domid) ?? '') + text);
        return;
      }
      this.drain(c);
      c.text += text;
    };
  }

  /** Serve the console of a built domain. */
  attach(pv: PvDomain): void {
    const local = this.m.xc.bindInterdomain(pv.domid, pv.consolePort);
    if (local < 0) throw new Error(`console: bind d${pv.domid} port ${pv.consolePort}: ${local}`);
    const c: Cons = { domid: pv.domid, mfn: pv.p2m[pv.consolePfn]!, local, text: this.early.get(pv.domid) ?? '', input: '', notifies: 0 };
    this.early.delete(pv.domid);
    this.cons.set(pv.domid, c);
    this.m.onDom0Event(local, () => this.service(c));
  }

  private frame(c: Cons) {
    const f = this.m.xc.foreignFrame(c.domid, c.mfn, true);
    return typeof f === 'number' ? undefined : f;
  }

  /** Take everything in `out`; true if anything was taken. */
  private drain(c: Cons): boolean {
    const f = this.frame(c);
    if (f === undefined) return false;
    const cons = f.mem.getUint32(OUT_CONS, true);
    const prod = f.mem.getUint32(OUT_PROD, true);
    const n = (prod - cons) >>> 0;
    if (n === 0 || n > XENCONS_OUT_SIZE) return false;
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(f.mem.getUint8(OUT + MASK_XENCONS_IDX(cons + i, XENCONS_OUT_SIZE)));
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, prod, true);
    f.write(OUT_CONS, b);
    c.text += s;
    return true;
  }

  /** Move queued input into `in`; true if anything moved. */
  private feed(c: Cons): boolean {
    const f = this.frame(c);
    if (f === undefined || c.input === '') return false;
    const cons = f.mem.getUint32(IN_CONS, true);
    let prod = f.mem.getUint32(IN_PROD, true);
    let moved = 0;
    while (c.input.length > moved && ((prod - cons) >>> 0) < XENCONS_IN_SIZE) {
      f.write(IN + MASK_XENCONS_IDX(prod, XENCONS_IN_SIZE), Uint8Array.of(c.input.charCodeAt(moved) & 0xff));
      prod = (prod + 1) >>> 0;
      moved++;
    }
    if (moved === 0) return false;
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, prod, true);
    f.write(IN_PROD, b);
    c.input = c.input.slice(moved);
    return true;
  }

  private service(c: Cons): void {
    const took = this.drain(c);
    const fed = this.feed(c);
    if (took || fed) {
      c.notifies++;
      this.m.xc.notify(c.local);
    }
  }

  /** Everything domain `domid` printed so far. */
  output(domid: number): string {
    const c = this.cons.get(domid);
    if (c === undefined) return this.early.get(domid) ?? this.m.log.console(domid);
    this.drain(c);
    return c.text;
  }

  /** Type `text` on the domain's console. */
  type(domid: number, text: string): void {
    const c = this.cons.get(domid);
    if (c === undefined) throw new Error(`no console for d${domid}`);
    c.input += text;
    this.service(c);
  }

  notifies(domid: number): number {
    return this.cons.get(domid)?.notifies ?? 0;
  }
}

export interface BootRig {
  readonly m: Machine;
  readonly consoles: TestConsoles;
  /** Build a domain, serve its console. */
  create(o: PvBuildOptions): PvDomain;
  /** Run until `domid`'s console matches, or fail after `limitNs` of simulated time. */
  runUntilOutput(domid: number, want: string | RegExp, limitNs?: number): string;
  /** Run `ns` of simulated time. */
  runFor(ns: number): void;
}

export function bootRig(opts: MachineOptions = {}): BootRig {
  const m = new Machine({ memoryBytes: 256 * 1024 * 1024, ...opts });
  const consoles = new TestConsoles(m);
  const matches = (domid: number, want: string | RegExp): boolean => {
    const out = consoles.output(domid);
    return typeof want === 'string' ? out.includes(want) : want.test(out);
  };
  return {
    m,
    consoles,
    create(o) {
      const pv = buildPvDomain(m, { ...o, paused: true });
      consoles.attach(pv);
      if (o.paused !== true) {
        const rc = m.xc.unpauseDomain(pv.domid);
        if (rc < 0) throw new Error(`unpause d${pv.domid}: ${rc}`);
      }
      return pv;
    },
    runUntilOutput(domid, want, limitNs = 5_000_000_000) {
      const deadline = m.clock.now() + limitNs;
      // Checking the transcript costs a ring read: look every few steps.
      for (let n = 0; ; n++) {
        if (n % 8 === 0 && matches(domid, want)) break;
        if (m.clock.now() >= deadline || !m.step(deadline)) {
          if (matches(domid, want)) break;
          const d = m.domain(domid);
          throw new Error(`d${domid} did not print ${String(want)} within ${limitNs} ns (state ${d?.state}, crash ${d?.crash?.reason ?? 'none'}):\n${consoles.output(domid)}\n${m.log.ring()}`);
        }
      }
      return consoles.output(domid);
    },
    runFor(ns) {
      m.runUntil(m.clock.now() + ns);
    },
  };
}

/** Boot one guest to its boot-complete line. */
export function bootOne(rig: BootRig, image: KernelImage, o: Partial<PvBuildOptions> = {}): PvDomain {
  const pv = rig.create({ image, ...o });
  rig.runUntilOutput(pv.domid, BOOT_COMPLETE);
  return pv;
}

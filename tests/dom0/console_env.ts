/*
 * Test doubles for the dom0 services: the machine side (GuestLinkEnv over
 * plain page buffers, with event channels as callbacks), a fake clock, and
 * a tiny console front written straight against the public layout (not
 * against the daemon's own ring code, so a shared mistake cannot hide).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { bytesMem, type ByteMem } from '../../hypervisor/public/layout.js';
import { PAGE_SIZE, type DomId, type EvtchnPort, type Mfn } from '../../hypervisor/public/types.js';
import { MASK_XENCONS_IDX, XENCONS_IN_SIZE, XENCONS_OUT_SIZE, xencons_interface } from '../../hypervisor/public/io/console.js';
import type { EventBinding, GuestLinkEnv, Outcome } from '../../hypervisor/dom0/console/env.js';
import type { CtrlIfClock } from '../../hypervisor/dom0/ctrlif/controller.js';

interface FakeBinding extends EventBinding {
  readonly domid: number;
  readonly remotePort: number;
  readonly onEvent: () => void;
  open: boolean;
  notifies: number;
}

export class FakeLinkEnv implements GuestLinkEnv {
  readonly pages = new Map<string, { bytes: Uint8Array; mem: ByteMem }>();
  readonly bindings: FakeBinding[] = [];
  readonly reports: string[] = [];

  /** A zeroed page owned by `domid`. */
  addPage(domid: DomId, mfn: Mfn): { bytes: Uint8Array; mem: ByteMem } {
    const bytes = new Uint8Array(PAGE_SIZE);
    const page = { bytes, mem: bytesMem(bytes) };
    this.pages.set(`${domid}:${mfn}`, page);
    return page;
  }

  mapGuestFrame(domid: DomId, mfn: Mfn): Outcome<ByteMem> {
    const page = this.pages.get(`${domid}:${mfn}`);
    return page === undefined ? { ok: false, error: `frame ${mfn} is not d${domid}'s` } : { ok: true, value: page.mem };
  }

  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<EventBinding> {
    if (this.open(domid, remotePort) !== undefined) return { ok: false, error: `port ${remotePort} of d${domid} is not unbound (EBUSY)` };
    const b: FakeBinding = {
      domid, remotePort, onEvent, open: true, notifies: 0,
      notify() {
        if (b.open) b.notifies++;
      },
      close() {
        b.open = false;
      },
    };
    this.bindings.push(b);
    return { ok: true, value: b };
  }

  report(line: string): void {
    this.reports.push(line);
  }

  /** The open binding to a guest port. */
  open(domid: number, remotePort: number): FakeBinding | undefined {
    return this.bindings.find((b) => b.open && b.domid === domid && b.remotePort === remotePort);
  }

  /** The guest signals its port (EVTCHNOP_send): the host handler runs. */
  signal(domid: number, remotePort: number): void {
    this.open(domid, remotePort)?.onEvent();
  }

  /** Notifications dom0 sent on every binding (open or closed) to this guest port. */
  notifies(domid: number, remotePort: number): number {
    return this.bindings.filter((b) => b.domid === domid && b.remotePort === remotePort).reduce((n, b) => n + b.notifies, 0);
  }
}

/** Timers on a hand-driven clock. */
export class FakeClock implements CtrlIfClock {
  private t = 0;
  private seq = 0;
  private readonly timers: { deadline: number; seq: number; fire: () => void; live: boolean }[] = [];

  now(): number {
    return this.t;
  }

  setTimer(deadlineNs: number, fire: () => void): { cancel(): void } {
    const timer = { deadline: deadlineNs, seq: this.seq++, fire, live: true };
    this.timers.push(timer);
    return { cancel: () => { timer.live = false; } };
  }

  get armed(): number {
    return this.timers.filter((x) => x.live).length;
  }

  /** Move time forward, firing due timers in deadline order. */
  advance(ns: number): void {
    this.t += ns;
    for (;;) {
      const due = this.timers.filter((x) => x.live && x.deadline <= this.t).sort((a, b) => a.deadline - b.deadline || a.seq - b.seq)[0];
      if (due === undefined) return;
      due.live = false;
      due.fire();
    }
  }
}

/** The guest's console driver, reduced to index arithmetic on the page. */
export class ConsoleFront {
  constructor(readonly mem: ByteMem) {}

  view() {
    return xencons_interface.view(this.mem, 0);
  }

  /** Start all four indices at `idx` (to test wrap-around). */
  setIndices(idx: number): void {
    const v = this.view();
    for (const f of ['in_cons', 'in_prod', 'out_cons', 'out_prod'] as const) v.set(f, idx >>> 0);
  }

  /** Write as much as fits into `out`; the count written. */
  write(data: Uint8Array | string): number {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const v = this.view();
    const cons = v.get('out_cons');
    let prod = v.get('out_prod');
    const outAt = v.addr('out');
    let n = 0;
    while (n < bytes.length && ((prod - cons) >>> 0) < XENCONS_OUT_SIZE) {
      this.mem.setUint8(outAt + MASK_XENCONS_IDX(prod, XENCONS_OUT_SIZE), bytes[n]!);
      prod = (prod + 1) >>> 0;
      n++;
    }
    v.set('out_prod', prod);
    return n;
  }

  /** Take up to `max` bytes of input from `in`. */
  read(max = Infinity): Uint8Array {
    const v = this.view();
    let cons = v.get('in_cons');
    const prod = v.get('in_prod');
    const inAt = v.addr('in');
    const out: number[] = [];
    while (cons !== prod && out.length < max) {
      out.push(this.mem.getUint8(inAt + MASK_XENCONS_IDX(cons, XENCONS_IN_SIZE)));
      cons = (cons + 1) >>> 0;
    }
    v.set('in_cons', cons);
    return Uint8Array.from(out);
  }
}

/** A fresh temporary directory, removed when the test ends. */
export function tempDir(t: ExecutionContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

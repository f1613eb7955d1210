/*
 * dom0's links to guests' shared pages, over the machine: what xenstored
 * (the store ring), xenconsoled and the ctrl_if domain controller need to
 * reach a guest's page and event channel (dom0/console/env.ts's
 * GuestLinkEnv), implemented once with the toolstack API.
 *
 *  - Mapping a frame: the toolstack's foreign-frame check (the frame must
 *    be the domain's and not a page table), then a ByteMem over it whose
 *    every access rechecks that the domain still owns the frame. On Xen a
 *    foreign mapping holds a reference, so the frame outlives the domain
 *    until dom0 unmaps it; here nothing holds the frame, so an access after
 *    the domain is gone reads zeros and writes nowhere instead of touching
 *    a frame that may already belong to someone else.
 *  - Binding a port: EVTCHNOP_bind_interdomain as dom0 to the guest's
 *    unbound port; the guest's signals run the handler between guest
 *    entries (Machine.onDom0Event); notify is EVTCHNOP_send on dom0's port.
 */
import type { ByteMem } from '../../public/layout.js';
import type { DomId, EvtchnPort, Mfn } from '../../public/types.js';
import type { Machine } from '../../xen/machine.js';
import { errnoName } from '../../public/errno.js';
import type { EventBinding, GuestLinkEnv, Outcome } from '../../dom0/console/env.js';
import type { RingAttachment } from '../xenstored/server.js';

/** A frame of `domid` that goes dead (zeros, writes dropped) once the domain no longer owns it. */
export function ownedFrameMem(m: Machine, domid: number, mfn: number): ByteMem {
  const frame = m.memory.frameMem(mfn);
  const owner = m.frames.owner;
  // The domain record itself, not just its id: a new domain may reuse the id.
  const dom = m.domain(domid);
  const live = (): boolean => owner[mfn] === domid && dom !== undefined && m.domain(domid) === dom;
  const rd = <T>(f: () => T, dead: T): T => (live() ? f() : dead);
  const wr = (f: () => void): void => {
    if (live()) f();
  };
  return {
    getUint8: (o) => rd(() => frame.getUint8(o), 0),
    getInt8: (o) => rd(() => frame.getInt8(o), 0),
    getUint16: (o, le) => rd(() => frame.getUint16(o, le), 0),
    getInt16: (o, le) => rd(() => frame.getInt16(o, le), 0),
    getUint32: (o, le) => rd(() => frame.getUint32(o, le), 0),
    getInt32: (o, le) => rd(() => frame.getInt32(o, le), 0),
    getBigUint64: (o, le) => rd(() => frame.getBigUint64(o, le), 0n),
    getBigInt64: (o, le) => rd(() => frame.getBigInt64(o, le), 0n),
    readBytes: (o, len) => rd(() => frame.readBytes(o, len), new Uint8Array(len)),
    setUint8: (o, v) => wr(() => frame.setUint8(o, v)),
    setInt8: (o, v) => wr(() => frame.setInt8(o, v)),
    setUint16: (o, v, le) => wr(() => frame.setUint16(o, v, le)),
    setInt16: (o, v, le) => wr(() => frame.setInt16(o, v, le)),
    setUint32: (o, v, le) => wr(() => frame.setUint32(o, v, le)),
    setInt32: (o, v, le) => wr(() => frame.setInt32(o, v, le)),
    setBigUint64: (o, v, le) => wr(() => frame.setBigUint64(o, v, le)),
    setBigInt64: (o, v, le) => wr(() => frame.setBigInt64(o, v, le)),
    writeBytes: (o, data) => wr(() => frame.writeBytes(o, data)),
  };
}

export class MachineLink implements GuestLinkEnv {
  /** dom0's bindings to each domain's store port (made when xenstored attaches the ring). */
  private readonly storeBindings = new Map<number, EventBinding>();

  constructor(
    private readonly m: Machine,
    private readonly reportLine: (line: string) => void = () => undefined,
  ) {}

  mapGuestFrame(domid: DomId, mfn: Mfn): Outcome<ByteMem> {
    const f = this.m.xc.foreignFrame(domid, mfn, true);
    if (typeof f === 'number') return { ok: false, error: `frame ${mfn} is not a data frame of d${domid} (${errnoName(f)})` };
    return { ok: true, value: ownedFrameMem(this.m, domid, mfn) };
  }

  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<EventBinding> {
    const b = this.bind(domid, remotePort, onEvent);
    return typeof b === 'number' ? { ok: false, error: `cannot bind d${domid}'s port ${remotePort} (${errnoName(b)})` } : { ok: true, value: b };
  }

  /** EVTCHNOP_bind_interdomain as dom0, routed to `onEvent`: the binding, or -errno. */
  private bind(domid: number, remotePort: number, onEvent: () => void): (EventBinding & { readonly localPort: number }) | number {
    const m = this.m;
    const local = m.xc.bindInterdomain(domid, remotePort);
    if (local < 0) return local;
    let open = true;
    m.onDom0Event(local, () => {
      if (open) onEvent();
    });
    return {
      localPort: local,
      notify: () => {
        if (open) m.xc.notify(local);
      },
      close: () => {
        if (!open) return;
        open = false;
        m.offDom0Event(local);
        m.xc.closePort(local);
      },
    };
  }

  report(line: string): void {
    this.m.log.xen(line);
    this.reportLine(line);
  }

  /**
   * xenstored's mapRing hook: map the store page named in XS_INTRODUCE and
   * bind dom0 to its port; `kick` runs when the guest signals.
   */
  storeRing(domid: DomId, mfnText: string, port: EvtchnPort, kick: () => void): RingAttachment | undefined {
    const mfn = Number(mfnText);
    if (!Number.isSafeInteger(mfn) || mfn < 0) return undefined;
    const mem = this.mapGuestFrame(domid, mfn as Mfn);
    if (!mem.ok) {
      this.report(`xenstored: cannot map d${domid}'s store page: ${mem.error}`);
      return undefined;
    }
    this.closeStore(domid);
    const b = this.bind(domid, port, kick);
    if (typeof b === 'number') {
      this.report(`xenstored: cannot bind d${domid}'s store port ${port} (${errnoName(b)})`);
      return undefined;
    }
    this.storeBindings.set(domid, b);
    return { mem: mem.value, base: 0, notify: () => b.notify() };
  }

  /** Close dom0's end of a domain's store port (the domain is going). */
  closeStore(domid: number): void {
    this.storeBindings.get(domid)?.close();
    this.storeBindings.delete(domid);
  }
}

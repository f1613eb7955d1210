/*
 * The domain controller: dom0's end of every guest's ctrl_if (Xen 2.0's
 * control interface, ARCHITECTURE §5; one of the three ways to ask a guest
 * to suspend, §6).
 *
 * dom0 -> guest: `send` / `sendShutdown` put a request on rx_ring when a
 * slot is free (fewer than 8 unanswered), else queue it; queued requests
 * go out as the guest's answers free slots. The guest answers in the same
 * slot, echoing type, subtype and id; the answer settles the promise. A
 * request not answered within `timeoutNs` of the injected clock settles
 * with a timeout error (the id stays reserved until an answer turns up, so
 * a late answer is recognised and dropped).
 *
 * guest -> dom0: every request on tx_ring is answered in its slot at once:
 * CMSG_CONSOLE data goes to the console log (xenconsoled), types with a
 * registered handler get that handler's payload, anything else is answered
 * with length 0, Xen's "not handled" answer.
 *
 * Peer input never throws. Indices no correct guest could produce (a jump
 * of more than 8 requests, more answers than questions) make the
 * controller stop serving that domain, with one line in the machine log;
 * its waiting requests settle with an error. Other domains carry on.
 * `reconnect` after a restore takes the new page and port and starts over
 * from the indices found in the page.
 */
import createDebug from 'debug';
import type { DomId, EvtchnPort, Mfn } from '../../public/types.js';
import { CMSG_CONSOLE, CMSG_CONSOLE_DATA, CMSG_SHUTDOWN, CONTROL_MSG_PAYLOAD } from '../../public/domain_controller.js';
import { dom0Error, dom0Ok, type Dom0Result, type EventBinding, type GuestLinkEnv } from '../console/env.js';
import { CtrlIfChannel } from './channel.js';
import { CTRL_ID_NONE, CtrlIfPage, SHUTDOWN_SUBTYPE, msgName, type CtrlMsg, type ShutdownKind, type SlotRead } from './wire.js';

const log = createDebug('dom0:ctrlif');

/** The time source for request timeouts (the machine's clock and timer queue; a fake in tests). */
export interface CtrlIfClock {
  /** System time in ns. */
  now(): number;
  /** Call `fire` once when system time reaches `deadlineNs`. */
  setTimer(deadlineNs: number, fire: () => void): { cancel(): void };
}

export type CtrlIfErrorKind =
  | 'no-such-domain' // never added, or removed before the request was made
  | 'broken' // the domain broke the protocol; dom0 no longer serves it
  | 'removed' // the domain was removed while the request waited
  | 'closed' // the controller was closed
  | 'queue-full' // too many requests already waiting for ring space
  | 'timeout' // no answer in time
  | 'bad-response'; // the answer did not echo the request, or was malformed

export interface CtrlIfError {
  readonly kind: CtrlIfErrorKind;
  readonly domid: DomId;
  /** The request that failed, e.g. `CMSG_SHUTDOWN/2`. */
  readonly request: string;
  readonly detail: string;
}

export type CtrlIfResult = { readonly ok: true; readonly response: CtrlMsg } | { readonly ok: false; readonly error: CtrlIfError };

/** Answers a guest-originated request: the response payload (undefined: length 0). */
export type GuestRequestHandler = (domid: DomId, req: CtrlMsg) => Uint8Array | undefined;

export interface DomainControllerOptions {
  readonly clock: CtrlIfClock;
  /** How long a dom0 request may wait for its answer (ns; queue time included). */
  readonly timeoutNs?: number;
  /** Where CMSG_CONSOLE data from a guest goes (xenconsoled's appendOutput). */
  readonly consoleOutput?: (domid: DomId, data: Uint8Array) => void;
  /** dom0 requests that may wait per domain for a free slot. */
  readonly maxQueued?: number;
}

export const DEFAULT_CTRLIF_TIMEOUT_NS = 10_000_000_000;
export const DEFAULT_CTRLIF_MAX_QUEUED = 64;

export type CtrlIfState =
  | { readonly state: 'connected'; readonly mfn: Mfn; readonly port: EvtchnPort; readonly outstanding: number; readonly queued: number }
  | { readonly state: 'unconnected'; readonly queued: number }
  | { readonly state: 'broken'; readonly reason: string };

/** A request dom0 sends (id is assigned when it enters the ring). */
export interface CtrlRequest {
  readonly type: number;
  readonly subtype: number;
  readonly payload?: Uint8Array;
}

interface Outgoing {
  readonly type: number;
  readonly subtype: number;
  readonly payload: Uint8Array;
  readonly name: string;
  /** Set when the request enters the ring. */
  id: number | undefined;
  settled: boolean;
  timer: { cancel(): void } | undefined;
  readonly resolve: (r: CtrlIfResult) => void;
}

interface Conn {
  readonly mfn: Mfn;
  readonly port: EvtchnPort;
  readonly channel: CtrlIfChannel;
  readonly binding: EventBinding;
}

interface CtrlDomain {
  readonly domid: DomId;
  conn: Conn | undefined;
  broken: string | undefined;
  generation: number;
  readonly queue: Outgoing[];
  /** Requests in the ring by id, including timed-out ones still unanswered. */
  readonly inflight: Map<number, Outgoing>;
  nextId: number;
  busy: boolean;
  again: boolean;
}

const EMPTY = new Uint8Array(0);
/** Ids dom0 hands out: 0..254 (0xFF is the guest's "no callback" id). */
const ID_SPACE = CTRL_ID_NONE;

export class DomainController {
  private readonly domains = new Map<number, CtrlDomain>();
  private readonly handlers = new Map<number, GuestRequestHandler>();
  private readonly timeoutNs: number;
  private readonly maxQueued: number;
  private closed = false;

  constructor(
    private readonly env: GuestLinkEnv,
    private readonly opts: DomainControllerOptions,
  ) {
    this.timeoutNs = opts.timeoutNs ?? DEFAULT_CTRLIF_TIMEOUT_NS;
    this.maxQueued = opts.maxQueued ?? DEFAULT_CTRLIF_MAX_QUEUED;
    this.handlers.set(CMSG_CONSOLE, (domid, req) => {
      if (req.subtype === CMSG_CONSOLE_DATA) this.opts.consoleOutput?.(domid, req.payload);
      return undefined;
    });
  }

  /** Answer guest requests of `type` with `handler` (replaces any earlier one, CMSG_CONSOLE's included). */
  onGuestRequest(type: number, handler: GuestRequestHandler): void {
    this.handlers.set(type & 0xff, handler);
  }

  /** Serve a new guest's control interface: map its page, bind its port, serve what is waiting. */
  add(domid: DomId, mfn: Mfn, port: EvtchnPort): Dom0Result {
    if (this.closed) return dom0Error('domain controller is closed');
    if (this.domains.has(domid)) return dom0Error(`ctrl_if d${domid} is already served`);
    const d: CtrlDomain = {
      domid, conn: undefined, broken: undefined, generation: 0, queue: [], inflight: new Map(), nextId: 0, busy: false, again: false,
    };
    this.domains.set(domid, d);
    const r = this.connect(d, mfn, port);
    if (!r.ok) this.domains.delete(domid);
    return r;
  }

  /**
   * After a restore: a new page and port. Requests still waiting carry
   * over (the guest re-reads unanswered requests from its restored page);
   * the indices are taken from the new page. Clears a broken state.
   */
  reconnect(domid: DomId, newMfn: Mfn, newPort: EvtchnPort): Dom0Result {
    if (this.closed) return dom0Error('domain controller is closed');
    const d = this.domains.get(domid);
    if (d === undefined) return dom0Error(`ctrl_if d${domid} is not served`);
    this.disconnect(d);
    d.broken = undefined;
    // Timed-out requests whose answers may never come: free their ids.
    for (const [id, o] of d.inflight) if (o.settled) d.inflight.delete(id);
    return this.connect(d, newMfn, newPort);
  }

  /** Stop serving a domain; its waiting requests settle with `removed`. */
  remove(domid: DomId): void {
    const d = this.domains.get(domid);
    if (d === undefined) return;
    this.disconnect(d);
    this.domains.delete(domid);
    this.failAll(d, 'removed', 'the domain was removed');
    log('d%d: removed', domid);
  }

  /** The guest signalled (what the event binding calls; tests may call it directly). */
  kick(domid: DomId): void {
    const d = this.domains.get(domid);
    if (d !== undefined) this.service(d);
  }

  /** Send a request to the guest; settles with its answer or an error, never rejects. */
  send(domid: DomId, req: CtrlRequest): Promise<CtrlIfResult> {
    const payload = req.payload ?? EMPTY;
    if (payload.length > CONTROL_MSG_PAYLOAD) throw new RangeError(`ctrl_if payload of ${payload.length} bytes (max ${CONTROL_MSG_PAYLOAD})`);
    const name = msgName(req);
    const d = this.domains.get(domid);
    const refuse = (kind: CtrlIfErrorKind, detail: string): Promise<CtrlIfResult> =>
      Promise.resolve({ ok: false, error: { kind, domid, request: name, detail } });
    if (this.closed) return refuse('closed', 'the domain controller is closed');
    if (d === undefined) return refuse('no-such-domain', `d${domid} has no control interface`);
    if (d.broken !== undefined) return refuse('broken', d.broken);
    if (d.queue.length >= this.maxQueued) return refuse('queue-full', `${d.queue.length} requests already wait for ring space`);
    return new Promise<CtrlIfResult>((resolve) => {
      const o: Outgoing = {
        type: req.type & 0xff, subtype: req.subtype & 0xff, payload, name, id: undefined, settled: false, timer: undefined, resolve,
      };
      const deadline = this.opts.clock.now() + this.timeoutNs;
      o.timer = this.opts.clock.setTimer(deadline, () => this.expire(d, o));
      d.queue.push(o);
      log('d%d: %s queued', domid, name);
      this.service(d);
    });
  }

  /** CMSG_SHUTDOWN: ask the guest to power off, reboot, suspend, or handle a SysRq key. */
  sendShutdown(domid: DomId, kind: ShutdownKind, sysrqKey?: string): Promise<CtrlIfResult> {
    let payload = EMPTY;
    if (kind === 'sysrq') {
      if (sysrqKey === undefined || sysrqKey.length !== 1) throw new RangeError('sysrq needs a one-character key');
      payload = Uint8Array.of(sysrqKey.charCodeAt(0) & 0xff);
    }
    return this.send(domid, { type: CMSG_SHUTDOWN, subtype: SHUTDOWN_SUBTYPE[kind], payload });
  }

  state(domid: DomId): CtrlIfState | undefined {
    const d = this.domains.get(domid);
    if (d === undefined) return undefined;
    if (d.broken !== undefined) return { state: 'broken', reason: d.broken };
    if (d.conn === undefined) return { state: 'unconnected', queued: d.queue.length };
    return { state: 'connected', mfn: d.conn.mfn, port: d.conn.port, outstanding: d.conn.channel.outstanding, queued: d.queue.length };
  }

  /** Stop serving every domain (the machine is stopping). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of [...this.domains.values()]) {
      this.disconnect(d);
      this.failAll(d, 'closed', 'the domain controller was closed');
    }
    this.domains.clear();
  }

  // --- internals ---------------------------------------------------------------

  private connect(d: CtrlDomain, mfn: Mfn, port: EvtchnPort): Dom0Result {
    const mapped = this.env.mapGuestFrame(d.domid, mfn);
    if (!mapped.ok) return dom0Error(`ctrl_if d${d.domid}: cannot map frame ${mfn}: ${mapped.error}`);
    const attached = CtrlIfChannel.attach(new CtrlIfPage(mapped.value, 0));
    if (!attached.ok) {
      this.breakDomain(d, attached.error);
      return dom0Error(`ctrl_if d${d.domid}: ${attached.error}`);
    }
    const generation = d.generation + 1;
    const bound = this.env.bindEventChannel(d.domid, port, () => this.onEvent(d, generation));
    if (!bound.ok) return dom0Error(`ctrl_if d${d.domid}: cannot bind port ${port}: ${bound.error}`);
    const binding = bound.value;
    d.generation = generation;
    d.conn = { mfn, port, channel: attached.value, binding };
    log('d%d: connected page %d port %d', d.domid, mfn, port);
    this.service(d);
    return dom0Ok;
  }

  private disconnect(d: CtrlDomain): void {
    if (d.conn === undefined) return;
    d.conn.binding.close();
    d.conn = undefined;
    d.generation++;
  }

  private onEvent(d: CtrlDomain, generation: number): void {
    if (generation !== d.generation || this.domains.get(d.domid) !== d) return;
    this.service(d);
  }

  /** Take answers, serve guest requests, send what fits; signal the guest if the page moved. */
  private service(d: CtrlDomain): void {
    if (d.busy) {
      d.again = true;
      return;
    }
    d.busy = true;
    try {
      do {
        d.again = false;
        const conn = d.conn;
        if (conn === undefined || d.broken !== undefined) return;
        const ch = conn.channel;

        const answers = ch.takeResponses();
        if (!answers.ok) return this.breakDomain(d, answers.error);
        for (const a of answers.value) this.settleAnswer(d, a);

        const served = ch.serveRequests((req) => this.answerGuest(d.domid, req));
        if (!served.ok) return this.breakDomain(d, served.error);

        let sent = 0;
        while (d.queue.length > 0 && ch.space > 0 && d.conn === conn) {
          const o = d.queue[0]!;
          const id = this.allocId(d);
          if (id === undefined) return this.breakDomain(d, `all ${ID_SPACE} message ids are held by requests the guest never answered`);
          d.queue.shift();
          o.id = id;
          d.inflight.set(id, o);
          ch.send({ type: o.type, subtype: o.subtype, id, payload: o.payload });
          log('d%d: %s sent as id %d', d.domid, o.name, id);
          sent++;
        }

        if (served.value > 0 || sent > 0) conn.binding.notify();
      } while (d.again);
    } finally {
      d.busy = false;
    }
  }

  private answerGuest(domid: DomId, read: SlotRead): CtrlMsg {
    if (!read.ok) {
      log('d%d: malformed %s request (%s): answered with length 0', domid, msgName(read.header), read.error);
      return { ...read.header, payload: EMPTY };
    }
    const req = read.msg;
    const handler = this.handlers.get(req.type);
    if (handler === undefined) {
      log('d%d: %s id %d not handled: answered with length 0', domid, msgName(req), req.id);
      return { type: req.type, subtype: req.subtype, id: req.id, payload: EMPTY };
    }
    let payload: Uint8Array | undefined;
    try {
      payload = handler(domid, req);
    } catch (e) {
      log('d%d: handler for %s threw: %s', domid, msgName(req), e instanceof Error ? e.message : String(e));
    }
    return { type: req.type, subtype: req.subtype, id: req.id, payload: payload ?? EMPTY };
  }

  private settleAnswer(d: CtrlDomain, a: SlotRead): void {
    const header = a.ok ? a.msg : a.header;
    const o = d.inflight.get(header.id);
    if (o === undefined) {
      log('d%d: answer %s with id %d matches no request: dropped', d.domid, msgName(header), header.id);
      return;
    }
    d.inflight.delete(header.id);
    if (o.settled) {
      log('d%d: late answer to %s id %d dropped', d.domid, o.name, header.id);
      return;
    }
    const fail = (detail: string): void => this.settle(o, { ok: false, error: { kind: 'bad-response', domid: d.domid, request: o.name, detail } });
    if (!a.ok) fail(`malformed answer: ${a.error}`);
    else if (a.msg.type !== o.type || a.msg.subtype !== o.subtype) fail(`answered with ${msgName(a.msg)}`);
    else {
      log('d%d: %s id %d answered (%d bytes)', d.domid, o.name, header.id, a.msg.payload.length);
      this.settle(o, { ok: true, response: a.msg });
    }
  }

  private allocId(d: CtrlDomain): number | undefined {
    for (let i = 0; i < ID_SPACE; i++) {
      const id = (d.nextId + i) % ID_SPACE;
      if (!d.inflight.has(id)) {
        d.nextId = (id + 1) % ID_SPACE;
        return id;
      }
    }
    return undefined;
  }

  private expire(d: CtrlDomain, o: Outgoing): void {
    if (o.settled) return;
    const at = d.queue.indexOf(o);
    if (at >= 0) d.queue.splice(at, 1);
    const where = o.id === undefined ? 'still waiting for a free slot' : `id ${o.id} in the ring, unanswered`;
    log('d%d: %s timed out (%s)', d.domid, o.name, where);
    this.settle(o, { ok: false, error: { kind: 'timeout', domid: d.domid, request: o.name, detail: `no answer within ${this.timeoutNs} ns (${where})` } });
  }

  private settle(o: Outgoing, r: CtrlIfResult): void {
    if (o.settled) return;
    o.settled = true;
    o.timer?.cancel();
    o.timer = undefined;
    o.resolve(r);
  }

  private failAll(d: CtrlDomain, kind: CtrlIfErrorKind, detail: string): void {
    const all = [...d.queue, ...d.inflight.values()];
    d.queue.length = 0;
    d.inflight.clear();
    for (const o of all) this.settle(o, { ok: false, error: { kind, domid: d.domid, request: o.name, detail } });
  }

  private breakDomain(d: CtrlDomain, why: string): void {
    if (d.broken !== undefined) return;
    d.broken = why;
    const line = `ctrl_if d${d.domid}: ${why}; no longer serving this domain`;
    log('%s', line);
    this.env.report?.(line);
    this.disconnect(d);
    this.failAll(d, 'broken', why);
  }
}

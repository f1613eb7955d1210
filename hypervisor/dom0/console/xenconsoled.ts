/*
 * xenconsoled: dom0's console daemon.
 *
 * Per guest: the console page (`struct xencons_interface`) and its event
 * channel, as start_info gives them (`console.domU.mfn`, `.evtchn`). When
 * the guest signals, everything in `out` is taken, appended to the
 * guest's console log (file, in-memory tail, attached viewers) and the
 * guest is signalled back so it may write more. Input (`xl console`
 * keystrokes) goes into `in` as far as there is room; the rest waits in
 * a bounded queue and follows whenever the guest frees space (it signals
 * when it consumes input).
 *
 * Output that reaches dom0 another way lands in the same log, in order:
 * the hypervisor's CONSOLEIO_write (the earliest boot messages, before the
 * ring is up) and ctrl_if CMSG_CONSOLE data. Before such bytes are
 * appended the ring is drained, so bytes the guest put in its ring before
 * it made the hypercall are logged before the hypercall's.
 *
 * The page is hostile input: indices that do not make sense mark that one
 * console broken (one line to the machine log, event channel closed); no
 * other console notices, and the log and viewers stay. After a restore the
 * page and port are new: `reconnect` maps and binds them and carries the
 * log, viewers and queued input over. A connection carries a generation,
 * so an event from before a reconnect is recognised and ignored.
 */
import createDebug from 'debug';
import type { DomId, EvtchnPort, Mfn } from '../../public/types.js';
import { dom0Error, dom0Ok, type Dom0Result, type EventBinding, type GuestLinkEnv } from './env.js';
import { ConsoleRingPage } from './ring.js';
import { ConsoleLog, DEFAULT_TAIL_BYTES, consoleLogPath, type ConsoleViewer } from './log.js';

const log = createDebug('dom0:console');

export interface XenconsoledOptions {
  /** Where `<domid>.log` files go; omitted, output is kept in memory only. */
  readonly consoleDir?: string;
  /** Bytes of recent output kept per console for viewers that attach later. */
  readonly tailBytes?: number;
  /** Input bytes that may wait for room in a guest's `in` ring. */
  readonly maxPendingInput?: number;
}

export const DEFAULT_MAX_PENDING_INPUT = 64 * 1024;

/** A console's connection: `connected`, `broken` (a protocol violation), or `unconnected` (log only). */
export type ConsoleState =
  | { readonly state: 'connected'; readonly mfn: Mfn; readonly port: EvtchnPort; readonly generation: number }
  | { readonly state: 'broken'; readonly reason: string; readonly generation: number }
  | { readonly state: 'unconnected'; readonly generation: number };

/** An attached viewer's handle. */
export interface ConsoleAttachment {
  /** Recent output (oldest first) at the moment of attaching. */
  readonly backlog: Uint8Array;
  /** Stop receiving output; the guest notices nothing. */
  detach(): void;
}

interface RingConn {
  readonly mfn: Mfn;
  readonly port: EvtchnPort;
  readonly ring: ConsoleRingPage;
  readonly binding: EventBinding;
}

interface DomConsole {
  readonly domid: DomId;
  readonly log: ConsoleLog;
  conn: RingConn | undefined;
  broken: string | undefined;
  /** Bumped on every (re)connect and disconnect. */
  generation: number;
  readonly input: Uint8Array[];
  inputBytes: number;
  /** Inside kick(): a nested kick only asks for another pass. */
  busy: boolean;
  again: boolean;
}

export class Xenconsoled {
  private readonly consoles = new Map<number, DomConsole>();
  private readonly tailBytes: number;
  private readonly maxPendingInput: number;
  private closed = false;

  constructor(
    private readonly env: GuestLinkEnv,
    private readonly opts: XenconsoledOptions = {},
  ) {
    this.tailBytes = opts.tailBytes ?? DEFAULT_TAIL_BYTES;
    this.maxPendingInput = opts.maxPendingInput ?? DEFAULT_MAX_PENDING_INPUT;
  }

  /**
   * Serve a new guest's console: map its page, bind its port, and take any
   * output already waiting. An error if the console is already connected
   * or the page or port cannot be had.
   */
  add(domid: DomId, mfn: Mfn, port: EvtchnPort): Dom0Result {
    if (this.closed) return dom0Error('xenconsoled is closed');
    const c = this.consoleOf(domid);
    if (c.conn !== undefined) return dom0Error(`console d${domid} is already connected (page ${c.conn.mfn}, port ${c.conn.port})`);
    return this.connect(c, mfn, port);
  }

  /**
   * After a restore: the console page and port are new. The old binding is
   * closed (the old page is not touched: it may be gone), the new page is
   * mapped and bound, and output waiting in it is taken. Log, viewers and
   * queued input carry over; a broken console gets a fresh start.
   */
  reconnect(domid: DomId, newMfn: Mfn, newPort: EvtchnPort): Dom0Result {
    if (this.closed) return dom0Error('xenconsoled is closed');
    const c = this.consoles.get(domid);
    if (c === undefined) return dom0Error(`console d${domid} is not known`);
    this.disconnect(c);
    return this.connect(c, newMfn, newPort);
  }

  /**
   * The domain is going away: take its last output, close the channel and
   * the log, and tell viewers. Call it before the domain's memory is freed.
   */
  remove(domid: DomId): void {
    const c = this.consoles.get(domid);
    if (c === undefined) return;
    this.drain(c);
    this.disconnect(c);
    c.log.close();
    this.consoles.delete(domid);
    log('d%d: removed', domid);
  }

  /** The guest signalled: take its output, feed it queued input, signal it back. */
  kick(domid: DomId): void {
    const c = this.consoles.get(domid);
    if (c !== undefined) this.service(c);
  }

  /**
   * Output that reached dom0 outside the ring (CONSOLEIO_write, ctrl_if
   * CMSG_CONSOLE). Strings are taken one byte per character (latin1), as
   * the hypervisor's console_io hands them over. Creates the console's log
   * if the guest has no ring yet.
   */
  appendOutput(domid: DomId, data: Uint8Array | string): void {
    if (this.closed) return;
    const bytes = typeof data === 'string' ? latin1Bytes(data) : data;
    const c = this.consoleOf(domid);
    // What the guest put in its ring before this arrived is older: log it first.
    this.service(c);
    c.log.append(bytes);
  }

  /**
   * Keyboard input for the guest. Returns how many bytes were accepted
   * (delivered or queued); the rest did not fit in the queue. A broken or
   * unknown console accepts nothing.
   */
  write(domid: DomId, data: Uint8Array): number {
    const c = this.consoles.get(domid);
    if (c === undefined || c.broken !== undefined || this.closed) return 0;
    const room = this.maxPendingInput - c.inputBytes;
    const n = Math.max(0, Math.min(room, data.length));
    if (n === 0) return 0;
    c.input.push(data.slice(0, n));
    c.inputBytes += n;
    this.service(c);
    return n;
  }

  /** Attach a viewer (`xl console`); undefined for an unknown console. */
  attach(domid: DomId, viewer: ConsoleViewer): ConsoleAttachment | undefined {
    const c = this.consoles.get(domid);
    if (c === undefined) return undefined;
    const backlog = c.log.tail();
    const detach = c.log.attach(viewer);
    log('d%d: viewer attached (%d now)', domid, c.log.viewerCount);
    return { backlog, detach };
  }

  /** Recent output of a console (oldest first); empty for an unknown one. */
  tail(domid: DomId): Uint8Array {
    return this.consoles.get(domid)?.log.tail() ?? new Uint8Array(0);
  }

  state(domid: DomId): ConsoleState | undefined {
    const c = this.consoles.get(domid);
    if (c === undefined) return undefined;
    if (c.broken !== undefined) return { state: 'broken', reason: c.broken, generation: c.generation };
    if (c.conn !== undefined) return { state: 'connected', mfn: c.conn.mfn, port: c.conn.port, generation: c.generation };
    return { state: 'unconnected', generation: c.generation };
  }

  /** Input bytes still waiting for room in the guest's ring. */
  pendingInput(domid: DomId): number {
    return this.consoles.get(domid)?.inputBytes ?? 0;
  }

  /** The log file of a console (undefined when logs are in memory only). */
  logPath(domid: DomId): string | undefined {
    return this.opts.consoleDir === undefined ? undefined : consoleLogPath(this.opts.consoleDir, domid);
  }

  domains(): DomId[] {
    return [...this.consoles.values()].map((c) => c.domid);
  }

  /** Stop serving every console (the machine is stopping). */
  close(): void {
    if (this.closed) return;
    for (const c of [...this.consoles.values()]) this.remove(c.domid);
    this.closed = true;
  }

  // --- internals ---------------------------------------------------------------

  private consoleOf(domid: DomId): DomConsole {
    let c = this.consoles.get(domid);
    if (c === undefined) {
      const path = this.logPath(domid);
      c = {
        domid,
        log: new ConsoleLog(domid, path, this.tailBytes, (line) => this.report(line)),
        conn: undefined,
        broken: undefined,
        generation: 0,
        input: [],
        inputBytes: 0,
        busy: false,
        again: false,
      };
      this.consoles.set(domid, c);
    }
    return c;
  }

  private connect(c: DomConsole, mfn: Mfn, port: EvtchnPort): Dom0Result {
    const mapped = this.env.mapGuestFrame(c.domid, mfn);
    if (!mapped.ok) return dom0Error(`console d${c.domid}: cannot map frame ${mfn}: ${mapped.error}`);
    const generation = c.generation + 1;
    const bound = this.env.bindEventChannel(c.domid, port, () => this.onEvent(c, generation));
    if (!bound.ok) return dom0Error(`console d${c.domid}: cannot bind port ${port}: ${bound.error}`);
    const binding = bound.value;
    c.generation = generation;
    c.conn = { mfn, port, ring: new ConsoleRingPage(mapped.value), binding };
    c.broken = undefined;
    log('d%d: connected page %d port %d (generation %d)', c.domid, mfn, port, generation);
    this.service(c);
    return c.broken === undefined ? dom0Ok : dom0Error(`console d${c.domid}: ${c.broken}`);
  }

  private disconnect(c: DomConsole): void {
    if (c.conn === undefined) return;
    c.conn.binding.close();
    c.conn = undefined;
    c.generation++;
  }

  private onEvent(c: DomConsole, generation: number): void {
    // An event raised for a connection that has since been replaced.
    if (generation !== c.generation || this.consoles.get(c.domid) !== c) return;
    this.service(c);
  }

  /** Take output, feed input, signal the guest if either moved. */
  private service(c: DomConsole): void {
    if (c.busy) {
      c.again = true;
      return;
    }
    c.busy = true;
    try {
      do {
        c.again = false;
        const conn = c.conn;
        if (conn === undefined || c.broken !== undefined) return;
        const took = this.drain(c);
        const fed = this.feed(c, conn);
        if ((took || fed) && c.conn === conn && c.broken === undefined) conn.binding.notify();
      } while (c.again);
    } finally {
      c.busy = false;
    }
  }

  /** Take everything in `out` into the log; true if anything was taken. */
  private drain(c: DomConsole): boolean {
    const conn = c.conn;
    if (conn === undefined || c.broken !== undefined) return false;
    const r = conn.ring.takeOutput();
    if (!r.ok) {
      this.breakConsole(c, r.error);
      return false;
    }
    if (r.value.length === 0) return false;
    c.log.append(r.value);
    return true;
  }

  /** Move queued input into `in`; true if anything was written. */
  private feed(c: DomConsole, conn: RingConn): boolean {
    let wrote = false;
    while (c.input.length > 0 && c.conn === conn && c.broken === undefined) {
      const head = c.input[0]!;
      const r = conn.ring.putInput(head);
      if (!r.ok) {
        this.breakConsole(c, r.error);
        break;
      }
      if (r.value === 0) break;
      wrote = true;
      c.inputBytes -= r.value;
      if (r.value === head.length) c.input.shift();
      else c.input[0] = head.subarray(r.value);
    }
    return wrote;
  }

  private breakConsole(c: DomConsole, why: string): void {
    if (c.broken !== undefined) return;
    c.broken = why;
    this.report(`console d${c.domid}: ring broken (${why}); no longer reading this console`);
    // Stop listening: a broken ring is only ever brought back by reconnect().
    if (c.conn !== undefined) {
      c.conn.binding.close();
      c.conn = undefined;
      c.generation++;
    }
    c.input.length = 0;
    c.inputBytes = 0;
  }

  private report(line: string): void {
    log('%s', line);
    this.env.report?.(line);
  }
}

function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

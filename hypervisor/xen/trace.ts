/*
 * The machine's protocol trace, in the spirit of xentrace: a bounded
 * buffer of records, each stamped with the machine's system time and the
 * host's clock, saying what one protocol step was and which domain it was
 * about. It feeds `<dir>/trace.jsonl` (the machine daemon) and the demo's
 * timeline.
 *
 * Who records:
 *   'xen'        the hypercall gate (trace-hypercalls.ts): what a guest does
 *                during suspend and resume (SCHEDOP_shutdown, shared_info
 *                unmapped and mapped, set_callbacks, setup_table, event
 *                channel binds), and the toolstack's domctls
 *   'toolstack'  save, restore and the machine host, through a StepListener
 *   'xenstored'  requests of interest from or about a domain (xs-trace.ts)
 *
 * Off by default. While off, `record` returns at once and the hypercall
 * gate has no observer at all, so the hot path pays one null check.
 * `hostMs` (performance.now()) is for people reading the trace only:
 * nothing ever decides anything on it.
 */
import { DOMID_INVALID } from '../public/xen.js';
import { dbg } from './log.js';

export type TraceSource = 'xen' | 'toolstack' | 'xenstored';

export interface TraceRecord {
  /** Position in the machine's trace, from 0, no gaps (a gap in a file means records fell out of the buffer). */
  readonly seq: number;
  /** Machine system time in ns (what the guest's vcpu_time_info says). */
  readonly ns: number;
  /** Host time in ms (performance.now() of the process), for reading only. */
  readonly hostMs: number;
  /** The domain the step is about (DOMID_INVALID when none is known yet). */
  readonly domid: number;
  readonly src: TraceSource;
  readonly event: string;
  readonly detail?: string;
}

/**
 * A protocol step reached by toolstack code: what, a short detail, and the
 * domain when the listener does not know it already (a restore learns its
 * domid half-way).
 */
export type StepListener = (event: string, detail?: string, domid?: number) => void;

export interface TraceFilter {
  readonly domid?: number;
  readonly src?: TraceSource;
  /** Records with seq >= since. */
  readonly since?: number;
}

/** Records kept by default: a save or a restore makes a few hundred. */
export const DEFAULT_TRACE_CAPACITY = 16_384;

export class Trace {
  readonly capacity: number;
  readonly #ring: (TraceRecord | undefined)[];
  #next = 0;
  /** Oldest seq not cleared. */
  #first = 0;
  #on = false;

  /**
   * `now` is the machine's system time; `onSwitch` is told when tracing
   * goes on or off (the machine installs or removes its hypercall observer).
   */
  constructor(
    private readonly now: () => number,
    capacity = DEFAULT_TRACE_CAPACITY,
    private readonly onSwitch: (on: boolean) => void = () => undefined,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`trace capacity ${capacity}`);
    this.capacity = capacity;
    this.#ring = new Array<TraceRecord | undefined>(capacity).fill(undefined);
  }

  get enabled(): boolean {
    return this.#on;
  }

  set enabled(on: boolean) {
    if (on === this.#on) return;
    this.#on = on;
    this.onSwitch(on);
  }

  /** seq the next record gets. */
  get nextSeq(): number {
    return this.#next;
  }

  /** Records that fell out of the buffer so far. */
  get dropped(): number {
    return Math.max(0, this.#next - this.capacity);
  }

  /** Add a record (nothing while tracing is off). */
  record(domid: number, src: TraceSource, event: string, detail?: string): TraceRecord | undefined {
    if (!this.#on) return undefined;
    const r: TraceRecord = {
      seq: this.#next, ns: this.now(), hostMs: performance.now(), domid, src, event,
      ...(detail === undefined || detail === '' ? {} : { detail }),
    };
    this.#ring[this.#next % this.capacity] = r;
    this.#next++;
    if (dbg.trace.enabled) dbg.trace('d%d %s %s%s', domid, src, event, detail === undefined ? '' : `: ${detail}`);
    return r;
  }

  /** The records still in the buffer that match, oldest first. */
  records(f: TraceFilter = {}): TraceRecord[] {
    const out: TraceRecord[] = [];
    const first = Math.max(this.#next - this.capacity, this.#first, f.since ?? 0);
    for (let seq = first; seq < this.#next; seq++) {
      const r = this.#ring[seq % this.capacity]!;
      if (f.domid !== undefined && r.domid !== f.domid) continue;
      if (f.src !== undefined && r.src !== f.src) continue;
      out.push(r);
    }
    return out;
  }

  /** Forget every record (seq goes on from where it was). */
  clear(): void {
    this.#ring.fill(undefined);
    this.#first = this.#next;
  }

  /** Toolstack steps as 'toolstack' records about `domid` (or the domid each step names). */
  steps(domid?: number): StepListener {
    return (event, detail, d) => {
      this.record(d ?? domid ?? DOMID_INVALID, 'toolstack', event, detail);
    };
  }
}

/** One record as a JSON line (without the newline). */
export function traceLine(r: TraceRecord): string {
  return JSON.stringify(r);
}

const SOURCES: ReadonlySet<string> = new Set<TraceSource>(['xen', 'toolstack', 'xenstored']);

/** A JSON line back into a record; undefined when it is not one. */
export function parseTraceLine(line: string): TraceRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const num = (k: string): boolean => typeof o[k] === 'number' && Number.isFinite(o[k]);
  if (!num('seq') || !num('ns') || !num('hostMs') || !num('domid')) return undefined;
  if (typeof o['src'] !== 'string' || !SOURCES.has(o['src']) || typeof o['event'] !== 'string') return undefined;
  if (o['detail'] !== undefined && typeof o['detail'] !== 'string') return undefined;
  return {
    seq: o['seq'] as number, ns: o['ns'] as number, hostMs: o['hostMs'] as number, domid: o['domid'] as number,
    src: o['src'] as TraceSource, event: o['event'],
    ...(typeof o['detail'] === 'string' ? { detail: o['detail'] } : {}),
  };
}

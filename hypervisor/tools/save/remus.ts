/*
 * Checkpointing (Remus-style): the sending half. One stream, as a live
 * migration starts it (log-dirty mode, a full pass and pre-copy rounds
 * while the guest runs), then over and over:
 *
 *   suspend the guest (the caller's protocol)
 *   send the pages dirtied since the last checkpoint, TSC/shared_info/vCPUs
 *   CHECKPOINT (+ libxl CHECKPOINT_END): the receiver holds this state now
 *   fast-resume the guest in place (rax = 1, resumedomain, then the
 *   caller's `resume` adds XS_RESUME) and let it run for an interval
 *
 * until the count is reached or the signal aborts: the last checkpoint is
 * closed by END instead of CHECKPOINT. The primary keeps running all along
 * and after the stream ends. On failure log-dirty mode is turned off and a
 * suspended guest is resumed in place.
 *
 * Unlike Remus proper there is no acknowledgement per checkpoint and the
 * guest's network output is not held back until the checkpoint is safe.
 */
import type { StreamSink } from '../stream/index.js';
import type { SaveMachine } from './deps.js';
import { SaveError } from './errors.js';
import { fastResume, resumeAfterFailure } from './save.js';
import { pageTypeNow, saveTail, type PageCounts } from './save-parts.js';
import { precopy, suspendedDirty, type LiveRound, type LiveSaveOptions } from './live.js';

export interface RemusOptions extends LiveSaveOptions {
  /** Let the guest run between two checkpoints (after checkpoint `n`). */
  readonly interval: (n: number) => Promise<void> | void;
  /** Stop after this many checkpoints (default: until `signal` aborts). */
  readonly checkpoints?: number;
  /** Stop at the next checkpoint, which then closes the stream. */
  readonly signal?: AbortSignal;
  /** Resume the guest in place after each checkpoint (default: fastResume; a toolstack adds XS_RESUME). */
  readonly resume?: () => Promise<void> | void;
  /** Told of each checkpoint once it is on the wire, while the guest is still suspended. */
  readonly onCheckpoint?: (cp: RemusCheckpoint) => Promise<void> | void;
}

export interface RemusCheckpoint {
  /** 1, 2, ... */
  readonly n: number;
  /** Pages sent while the guest was suspended for it. */
  readonly pages: number;
  /** Stream bytes up to and including its CHECKPOINT (or the final END). */
  readonly bytes: number;
  /** The last one: closed by END. */
  readonly last: boolean;
}

export interface RemusResult {
  readonly domid: number;
  readonly maxPfn: number;
  readonly checkpoints: readonly RemusCheckpoint[];
  /** Pre-copy rounds (the full pass included). */
  readonly rounds: readonly LiveRound[];
  readonly bytes: number;
  readonly records: number;
  /** The guest runs on here. */
  readonly outcome: 'resumed';
}

/**
 * Checkpoint the running domain `domid` to `sink` until told to stop.
 * Resolves once the stream is complete (the domain running on); rejects
 * with a SaveError (the domain running on) if the stream cannot go on.
 */
export async function remusSaveDomain(m: SaveMachine, domid: number, sink: StreamSink, opts: RemusOptions): Promise<RemusResult> {
  if (opts.checkpoints !== undefined && !(Number.isInteger(opts.checkpoints) && opts.checkpoints >= 1)) {
    throw new RangeError(`checkpoints must be a positive integer, not ${opts.checkpoints}`);
  }
  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new SaveError('no-domain', domid, 'no such domain');
  const checkpoints: RemusCheckpoint[] = [];
  const counts: PageCounts = { pages: 0, holes: 0, pageTables: 0 };
  let logDirty = false;
  try {
    const { w, g, rounds, left, io, send } = await precopy(m, domid, sink, opts, counts);
    logDirty = true;
    let carry = left;
    let records = 0;
    for (let n = 1; ; n++) {
      await opts.suspend();
      const dirty = suspendedDirty(m, domid, g, carry, `checkpoint ${n}`);
      carry = [];
      const pages = await send(dirty);
      const tail = saveTail(m, domid, g, (pfn) => pageTypeNow(m, domid, g, pfn));
      await io(() => w.writeEndOfCheckpoint(tail));
      const last = (opts.checkpoints !== undefined && n >= opts.checkpoints) || opts.signal?.aborted === true;
      if (last) records = (await io(() => w.finish())).records;
      else await io(() => w.writeCheckpoint());
      const cp = { n, pages, bytes: w.offset, last };
      checkpoints.push(cp);
      opts.onStep?.(last ? 'last checkpoint sent' : 'checkpoint sent', `checkpoint ${n}: ${pages} pages, stream at ${w.offset} bytes`, domid);
      await opts.onCheckpoint?.(cp);
      if (opts.resume === undefined) fastResume(m, domid);
      else await opts.resume();
      if (last) break;
      await opts.interval(n);
    }
    m.xc.disableLogDirty(domid);
    logDirty = false;
    return { domid, maxPfn: g.maxPfn, checkpoints, rounds, bytes: w.offset, records, outcome: 'resumed' };
  } catch (e) {
    if (logDirty) m.xc.disableLogDirty(domid);
    if ((opts.onFailure ?? 'resume') === 'resume') resumeAfterFailure(m, domid);
    throw e;
  }
}

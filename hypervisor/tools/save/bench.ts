/*
 * Save and restore throughput, for bench/ and for anyone curious: for each
 * guest size, save a suspended guest to a file and restore it into a fresh
 * machine, and in the same run write and read the same number of bytes to
 * and from a plain file of the same kind (Node streams, same chunking
 * policy, no fsync on either side), so the ratio says what the toolstack
 * costs over the disk. Numbers are returned, nothing is printed.
 *
 * The guest comes from the caller (this module never imports guest code):
 * a factory that builds one on a machine and brings it to SHUTDOWN_suspend.
 *
 * Where the time goes comes from the machine's trace (../../xen/trace.ts),
 * not from timers of its own: with `trace` on, each row carries the save's
 * and the restore's steps, each the host ms from the trace record that
 * ended the step before to the one that ends it (stepsOf, with SAVE_STEPS
 * and RESTORE_STEPS; bench/ uses the same for its own breakdowns). The
 * save's window is bracketed by two records the bench adds ("save
 * started" before saveDomain, "image file closed" once the file is
 * flushed); the restore's is restoreDomain's own "stream read started" to
 * "grant entries seeded".
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import type { KernelImage } from '../../public/cpu.js';
import { Machine } from '../../xen/machine.js';
import type { Trace, TraceRecord } from '../../xen/trace.js';
import { saveDomain } from './save.js';
import { restoreDomain } from './restore.js';

export interface BenchGuestFactory {
  /** The kernel images the guest needs (registered on both machines). */
  readonly images: readonly KernelImage[];
  /** Build a guest of `pages` pages on `m` and bring it to SHUTDOWN_suspend; its domid. */
  suspended(m: Machine, pages: number): Promise<number>;
}

export interface SaveBenchOptions {
  /** Guest sizes (default 64, 256 and 1024 MiB). */
  readonly sizesMiB?: readonly number[];
  /** Where the files go (default: a fresh mkdtemp directory, removed afterwards). */
  readonly dir?: string;
  /**
   * Called with each saved image file after its round is timed and before
   * the file is removed (tests hand it to the stream checkers). Outside
   * every measurement.
   */
  readonly onImage?: (file: string, guestMiB: number) => Promise<void> | void;
  /**
   * Record the machines' trace during the save and the restore and break
   * both down into steps (default true). Off, rows have no `steps`.
   */
  readonly trace?: boolean;
}

/** One step of a breakdown: what, and host ms from the end of the step before (or the start) to its end. */
export interface StepMs {
  readonly step: string;
  readonly ms: number;
}

/** Where the save's and the restore's host time went, step by step, in protocol order. */
export interface SaveRestoreSteps {
  readonly save: readonly StepMs[];
  readonly restore: readonly StepMs[];
}

export interface SaveBenchRow {
  readonly guestMiB: number;
  /** Bytes of the image (and of the raw file). */
  readonly bytes: number;
  readonly saveMs: number;
  readonly restoreMs: number;
  readonly rawWriteMs: number;
  readonly rawReadMs: number;
  /** MiB of image per second. */
  readonly saveMiBps: number;
  readonly restoreMiBps: number;
  readonly rawWriteMiBps: number;
  readonly rawReadMiBps: number;
  /** From the trace (when the bench ran with `trace`): the steps' ms add up to at most saveMs and restoreMs. */
  readonly steps?: SaveRestoreSteps;
}

/**
 * A step of a breakdown: the trace records that end it. A run of matching
 * records (nothing matching another rule between them) is one step, ended
 * by the last of the run; a `once` rule takes only the first record it
 * matches, later ones fall to whatever rule comes next. Records no rule
 * matches are part of the step that follows them.
 */
export interface StepRule {
  readonly step: string;
  readonly match: (r: TraceRecord) => boolean;
  readonly once?: boolean;
}

/** A step as stepsOf finds it: its name and the record that ends it. */
export interface StepEnd {
  readonly step: string;
  readonly end: TraceRecord;
}

/** A rule for a toolstack step recorded with `event`. */
export function toolstackStep(step: string, ...events: readonly string[]): StepRule {
  const set = new Set(events.length === 0 ? [step] : events);
  return { step, match: (r) => r.src === 'toolstack' && set.has(r.event) };
}

/**
 * The steps of `records` (oldest first, the first being the start), in the
 * order the trace has them: one entry per run, so a step seen twice apart
 * (out of protocol order) is listed twice. The first rule a record matches
 * wins.
 */
export function stepsOf(records: readonly TraceRecord[], rules: readonly StepRule[]): StepEnd[] {
  const out: { step: string; end: TraceRecord; rule: StepRule }[] = [];
  const used = new Set<StepRule>();
  for (let i = 1; i < records.length; i++) {
    const r = records[i]!;
    const rule = rules.find((x) => !(x.once === true && used.has(x)) && x.match(r));
    if (rule === undefined) continue;
    used.add(rule);
    const last = out[out.length - 1];
    if (last !== undefined && last.rule === rule && rule.once !== true) last.end = r;
    else out.push({ step: rule.step, end: r, rule });
  }
  return out.map(({ step, end }) => ({ step, end }));
}

/** Each step's duration on `clock` (host ms, or the machine's ns): its end minus the end before it (the first, minus `start`). */
export function durations(start: TraceRecord, ends: readonly StepEnd[], clock: 'hostMs' | 'ns'): { step: string; d: number }[] {
  let prev = start[clock];
  return ends.map(({ step, end }) => {
    const d = end[clock] - prev;
    prev = end[clock];
    return { step, d };
  });
}

/** stepsOf, each step's host ms. */
export function stepsMs(records: readonly TraceRecord[], rules: readonly StepRule[]): StepMs[] {
  const start = records[0];
  if (start === undefined) return [];
  return durations(start, stepsOf(records, rules), 'hostMs').map(({ step, d }) => ({ step, ms: d }));
}

/** The step names of `rules`, once each, in rule order (the protocol order a breakdown should show). */
export function stepNames(rules: readonly StepRule[]): string[] {
  return [...new Set(rules.map((r) => r.step))];
}

/** Events the bench records around saveDomain (the window's ends). */
export const SAVE_STARTED = 'save started';
export const SAVE_FILE_CLOSED = 'image file closed';

/** saveDomain's steps (save.ts), and the file flushed. */
export const SAVE_STEPS: readonly StepRule[] = [
  toolstackStep('P2M read'),
  toolstackStep('page types read'),
  toolstackStep('vcpu/shared_info read', 'vcpu context and shared_info read'),
  toolstackStep('headers + P2M frames', 'PAGE_DATA started'),
  toolstackStep('PAGE_DATA', 'pages written'),
  toolstackStep('tail records', 'image written'),
  { step: 'destroydomain', match: (r) => r.src === 'xen' && r.event === 'domctl destroydomain' },
  toolstackStep('file flushed', SAVE_FILE_CLOSED),
];

/** restoreDomain's steps (restore.ts, restore-finish.ts), from "stream read started". */
export const RESTORE_STEPS: readonly StepRule[] = [
  toolstackStep('stream header', 'stream header ok'),
  toolstackStep('domain created'),
  toolstackStep('pages populated+written', 'pages populated and written'),
  toolstackStep('page tables localized'),
  toolstackStep('M2P', 'M2P updated'),
  toolstackStep('P2M rewritten'),
  toolstackStep('start_info/shared_info', 'start_info rewritten', 'shared_info rewritten'),
  toolstackStep('pin', 'page tables pinned'),
  toolstackStep('vcpu', 'vcpu context set'),
  toolstackStep('grant entries', 'grant entries seeded'),
];

/**
 * The records since `since` (the window's first record must be that one:
 * a trace buffer that overflowed would make a breakdown lie).
 */
export function traceSince(trace: Trace, since: number, what: string): TraceRecord[] {
  const rs = trace.records({ since });
  if (rs[0]?.seq !== since) throw new Error(`bench: the trace lost the start of the ${what} (${trace.dropped} records dropped)`);
  return rs;
}

const MiB = 2 ** 20;
/** Machine memory beyond the guest: dom0, the domain's own frames, slack. */
const MACHINE_SLACK_MIB = 32;
const RAW_CHUNK = 4 * MiB;

function finished(w: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.end(() => resolve());
  });
}

async function rawWrite(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  const chunk = new Uint8Array(RAW_CHUNK);
  for (let i = 0; i < chunk.length; i += 4096) chunk[i] = i & 0xff;
  for (let left = bytes; left > 0; left -= RAW_CHUNK) {
    // A fresh chunk each time, as the saver hands out fresh records.
    const c = chunk.slice(0, Math.min(RAW_CHUNK, left));
    if (!out.write(c)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await finished(out);
}

async function rawRead(file: string): Promise<number> {
  let n = 0;
  for await (const c of createReadStream(file)) n += (c as Uint8Array).length;
  return n;
}

function machineFor(guestMiB: number, images: readonly KernelImage[], seed: number, tscKhz: number, trace = false): Machine {
  const m = new Machine({ memoryBytes: (guestMiB + MACHINE_SLACK_MIB) * MiB, clock: 'simulated', scrambleSeed: seed, tscKhz, trace });
  for (const img of images) m.registerImage(img);
  return m;
}

export async function benchSaveRestore(guest: BenchGuestFactory, opts: SaveBenchOptions = {}): Promise<SaveBenchRow[]> {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'xenport-save-bench-'));
  const rows: SaveBenchRow[] = [];
  const trace = opts.trace ?? true;
  try {
    for (const guestMiB of opts.sizesMiB ?? [64, 256, 1024]) {
      const image = path.join(dir, `guest-${guestMiB}.img`);
      const raw = path.join(dir, `raw-${guestMiB}.bin`);
      let bytes: number;
      let saveMs: number;
      let saveSteps: StepMs[] = [];
      {
        const a = machineFor(guestMiB, guest.images, 101, 2_000_000);
        const domid = await guest.suspended(a, (guestMiB * MiB) / 4096);
        // On for the save only: the guest's set-up is not what is measured.
        a.trace.enabled = trace;
        const out = createWriteStream(image);
        const since = a.trace.nextSeq;
        const t0 = performance.now();
        a.trace.record(domid, 'toolstack', SAVE_STARTED);
        await saveDomain(a, domid, out, trace ? { onStep: a.trace.steps(domid) } : {});
        await finished(out);
        a.trace.record(domid, 'toolstack', SAVE_FILE_CLOSED);
        saveMs = performance.now() - t0;
        if (trace) saveSteps = stepsMs(traceSince(a.trace, since, 'save'), SAVE_STEPS);
        bytes = statSync(image).size;
      }
      const t1 = performance.now();
      await rawWrite(raw, bytes);
      const rawWriteMs = performance.now() - t1;

      const b = machineFor(guestMiB, guest.images, 202, 3_000_000, trace);
      const rsince = b.trace.nextSeq;
      const t2 = performance.now();
      const r = await restoreDomain(b, createReadStream(image), trace ? { onStep: b.trace.steps() } : {});
      const restoreMs = performance.now() - t2;
      const restoreSteps = trace ? stepsMs(traceSince(b.trace, rsince, 'restore'), RESTORE_STEPS) : [];
      b.xc.destroyDomain(r.domid);
      const t3 = performance.now();
      await rawRead(raw);
      const rawReadMs = performance.now() - t3;
      await opts.onImage?.(image, guestMiB);

      const rate = (ms: number): number => bytes / MiB / (ms / 1000);
      rows.push({
        guestMiB, bytes, saveMs, restoreMs, rawWriteMs, rawReadMs,
        saveMiBps: rate(saveMs), restoreMiBps: rate(restoreMs), rawWriteMiBps: rate(rawWriteMs), rawReadMiBps: rate(rawReadMs),
        ...(trace ? { steps: { save: saveSteps, restore: restoreSteps } } : {}),
      });
      rmSync(image, { force: true });
      rmSync(raw, { force: true });
    }
  } finally {
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

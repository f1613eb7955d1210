/*
 * What the two demos (demo.ts: boot, save, restore; demo-migrate.ts: live
 * migration) share: running ./bin/xl and timing it, following a guest's
 * console, polling its workload counters with Debian's xenstore-read,
 * reading `xl p2m` and a machine's trace.jsonl, and the timeline of xl
 * commands each demo prints at the end.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTraceLine, type TraceRecord } from '../hypervisor/xen/trace.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const XL = path.join(ROOT, 'bin', 'xl');

/** Evidence the demo needs and did not get: it stops with this one line. */
export class Missing extends Error {}

export interface Step { readonly what: string; readonly ms: number }
/** The xl commands and waits of this run, with their host ms (the demo's last table). */
export const timeline: Step[] = [];
export const t0 = performance.now();

export function say(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

/** `xl --dir DIR ARGS...`, timed; its stdout, or an Error with its stderr. */
export function xl(dir: string, args: string[]): string {
  const start = performance.now();
  const r = spawnSync(XL, ['--dir', dir, ...args], { encoding: 'utf8' });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`xl ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').trim()}`);
  timeline.push({ what: `xl ${args.join(' ')}`, ms });
  return r.stdout;
}

/** Follow `xl console DOM` (echoing it) until a line matches, then detach with Ctrl-]. */
export function followConsole(dir: string, dom: string, until: RegExp, limitMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(XL, ['--dir', dir, 'console', dom], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    let done = false;
    const guard = setTimeout(() => {
      if (!done) {
        done = true;
        child.kill();
        reject(new Error(`no line matching ${until} on the console within ${limitMs} ms; got:\n${lines.join('\n')}`));
      }
    }, limitMs);
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        lines.push(line);
        say(`  | ${line}`);
        if (!done && until.test(line)) {
          done = true;
          timeline.push({ what: `console: "${line.slice(0, 40)}"`, ms: performance.now() - start });
          child.stdin.write('\x1d');
        }
      }
    });
    child.on('exit', () => {
      clearTimeout(guard);
      if (done) resolve(lines);
      else reject(new Error(`xl console exited before a line matched ${until}: ${err.trim()}`));
    });
  });
}

/** The workload counters a demo reads from `data/workload/` (ARCHITECTURE's four workloads). */
export const NAMES = ['blk/writes', 'blk/verified', 'blk/errors', 'net/heartbeats', 'net/errors', 'mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'];
/** The counters that must stay 0. */
export const ERRORS = ['blk/errors', 'net/errors', 'mem/errors', 'clock/backwards'];
export type Counters = Record<string, number>;

export function fmt(c: Counters): string {
  return NAMES.map((n) => `${n}=${c[n]}`).join(' ');
}

/** `xl p2m` output as pfn -> mfn. */
export function parseP2m(out: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const line of out.trim().split('\n')) {
    const [p, f] = line.split(' ');
    m.set(Number(p), Number(f));
  }
  return m;
}

/** Poll the guest's workload counters (xenstore-read on `xsPath`) until `ok`, for at most `limitMs`. */
export async function waitCounters(
  xsPath: string, domid: number | string, ok: (c: Counters) => boolean, what: string, limitMs = 60_000,
): Promise<Counters> {
  const start = performance.now();
  for (;;) {
    const r = spawnSync('xenstore-read', NAMES.map((n) => `/local/domain/${domid}/data/workload/${n}`), { encoding: 'utf8', env: { ...process.env, XENSTORED_PATH: xsPath } });
    if (r.error) throw new Error(`xenstore-read: ${r.error.message} (make deps installs xenstore-utils)`);
    if (r.status === 0) {
      const vals = r.stdout.trim().split('\n').map(Number);
      const c = Object.fromEntries(NAMES.map((n, i) => [n, vals[i] ?? NaN]));
      if (ok(c)) {
        timeline.push({ what, ms: performance.now() - start });
        return c;
      }
    }
    if (performance.now() - start > limitMs) throw new Missing(`gave up waiting for ${what} (${limitMs} ms)`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** The records of one machine's trace file (the daemon writes it; complete once the machine stopped). */
export function readTrace(file: string): TraceRecord[] {
  if (!fs.existsSync(file)) throw new Missing(`${file} is missing: the machine daemon writes its trace there`);
  const records: TraceRecord[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const r = parseTraceLine(line);
    if (r === undefined) throw new Missing(`${file}: not a trace record: ${line.slice(0, 80)}`);
    records.push(r);
  }
  return records;
}

/** The timeline of the xl commands, and the run's total. */
export function sayTimeline(): void {
  say('\n== timeline of the xl commands (measured in this run, by this script)');
  for (const s of timeline) say(`  ${s.ms.toFixed(1).padStart(9)} ms  ${s.what}`);
  say(`  ${(performance.now() - t0).toFixed(1).padStart(9)} ms  total`);
}

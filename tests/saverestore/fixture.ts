/*
 * Save and restore through the shipped program (bin/xl-main.js) against
 * real machine daemons on the real clock: start machines, create guests,
 * read workload counters with Debian's xenstore-read over xenstored.sock,
 * run Xen's verify-stream-v2 on the images. Waiting re-checks a condition
 * on every xenstore change of a watched machine, with a deadline; never a
 * fixed sleep.
 */
import type { ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until, watchMachine } from '../helpers/xs-events.js';

export const XL = fileURLToPath(new URL('../../bin/xl-main.js', import.meta.url));
export const VERIFY = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
export const XEN_PYTHONPATH = '/usr/lib/xen-4.17/lib/python';

export interface Ran {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 }, (error, out, err) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, out, err });
    });
  });
}

export function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenport-sr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A running machine daemon, stopped at teardown. */
export class Machine {
  constructor(readonly dir: string) {}

  xl(args: readonly string[]): Promise<Ran> {
    return run(process.execPath, [XL, '--dir', this.dir, ...args]);
  }

  /** `xl ... ` that must succeed: its stdout. */
  async ok(t: ExecutionContext, args: readonly string[]): Promise<string> {
    const r = await this.xl(args);
    t.is(r.code, 0, `xl ${args.join(' ')}: ${r.err}`);
    if (r.code !== 0) throw new Error(`xl ${args.join(' ')} failed: ${r.err}`);
    return r.out;
  }

  async read(path: string): Promise<string | undefined> {
    const r = await run('xenstore-read', [path], { ...process.env, XENSTORED_PATH: join(this.dir, 'xenstored.sock') });
    return r.code === 0 ? r.out.trim() : undefined;
  }

  async counters(domid: number, names: readonly string[]): Promise<Record<string, number> | undefined> {
    const base = `/local/domain/${domid}/data/workload`;
    const r = await run('xenstore-read', names.map((n) => `${base}/${n}`), { ...process.env, XENSTORED_PATH: join(this.dir, 'xenstored.sock') });
    if (r.code !== 0) return undefined;
    const vals = r.out.trim().split('\n').map(Number);
    return Object.fromEntries(names.map((n, i) => [n, vals[i] ?? NaN]));
  }

  async p2m(t: ExecutionContext, dom: string): Promise<Map<number, number>> {
    const out = await this.ok(t, ['p2m', dom]);
    const m = new Map<number, number>();
    for (const line of out.trim().split('\n')) {
      const [p, f] = line.split(' ');
      m.set(Number(p), Number(f));
    }
    return m;
  }
}

export async function startMachine(t: ExecutionContext, dir: string, opts: readonly string[] = []): Promise<Machine> {
  const m = new Machine(dir);
  const r = await run(process.execPath, [XL, 'machine', 'start', '--dir', dir, '--memory', '256M', ...opts]);
  t.is(r.code, 0, r.err);
  if (r.code !== 0) throw new Error(`machine start: ${r.err}`);
  const unwatch = watchMachine(dir);
  t.teardown(async () => {
    unwatch();
    if (existsSync(join(dir, 'control.sock'))) await m.xl(['machine', 'stop']);
  });
  return m;
}

export { until };

export const COUNTERS = ['mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'] as const;

/** Create a netbsd guest running workload=mem,clock; resolves with its domid once its counters move. */
export async function createGuest(t: ExecutionContext, m: Machine, dir: string, name: string, memory = 32): Promise<{ domid: number; first: Record<string, number> }> {
  const cfg = join(dir, `${name}.cfg`);
  writeFileSync(cfg, `name = "${name}"\nkernel = "netbsd"\nmemory = ${memory}\nextra = "workload=mem,clock mem_mb=2"\n`);
  const domid = Number((await m.ok(t, ['create', cfg])).trim());
  const first = await until(`${name}'s counters`, 90_000, async () => {
    const c = await m.counters(domid, COUNTERS);
    return c !== undefined && c['mem/passes']! >= 1 && c['clock/ticks']! >= 2 ? c : undefined;
  });
  return { domid, first };
}

/** Wait until the guest's counters pass `base`, with no errors. */
export async function growing(m: Machine, domid: number, base: Record<string, number>): Promise<Record<string, number>> {
  return until('the counters to grow', 60_000, async () => {
    const c = await m.counters(domid, COUNTERS);
    return c !== undefined && c['mem/passes']! > base['mem/passes']! && c['clock/ticks']! > base['clock/ticks']! ? c : undefined;
  });
}

export function verifyStream(file: string): Promise<Ran> {
  return run(VERIFY, ['-v', '-f', 'xl', '-i', file], { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, 120_000);
}

export function spawnXl(args: readonly string[]): ChildProcess {
  return spawn(process.execPath, [XL, ...args], { stdio: 'ignore' });
}

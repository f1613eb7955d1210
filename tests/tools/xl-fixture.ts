/*
 * Running the real xl against real machine daemons, for the end-to-end
 * tests: each `xl` is a child process of xl-fixture-main.js (the xl front
 * end and daemon with the probe kernel), each machine lives in a fresh
 * mkdtemp directory and is stopped when the test ends.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { ControlClient } from '../../hypervisor/tools/machine/control.js';
import { machinePaths } from '../../hypervisor/tools/machine/launch.js';

export const XL_PROGRAM = fileURLToPath(new URL('./xl-fixture-main.js', import.meta.url));

export interface XlResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Run `xl args...`; resolves with its exit status and output. */
export function xl(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<XlResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [XL_PROGRAM, ...args], { env, encoding: 'utf8' }, (error, out, err) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, out, err });
    });
  });
}

export function tempDir(t: ExecutionContext, prefix = 'xenport-xl-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `xl machine start --dir <fresh dir>`; stopped (or killed) when the test ends. */
export async function startMachine(t: ExecutionContext, args: readonly string[] = []): Promise<{ dir: string; pid: number }> {
  const dir = tempDir(t);
  const r = await xl(['machine', 'start', '--dir', dir, ...args]);
  if (r.code !== 0) throw new Error(`xl machine start failed (${r.code}): ${r.err}`);
  const m = /\(pid (\d+)\)/.exec(r.out);
  if (!m) throw new Error(`xl machine start said: ${r.out}`);
  const pid = Number(m[1]);
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already stopped */
    }
  });
  return { dir, pid };
}

/** A config file in `dir`. */
export function writeConfig(dir: string, name: string, body: string): string {
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, body);
  return file;
}

/** Attach to a domain's console until `want` shows up in its output, then detach with Ctrl-]. */
export async function consoleUntil(dir: string, dom: string, want: RegExp): Promise<string> {
  const c = await ControlClient.connect(dir, machinePaths(dir).control);
  try {
    let seen = '';
    let detached = false;
    const call = c.call('console', { dom }, (d) => {
      seen += d;
      if (!detached && want.test(seen)) {
        detached = true;
        c.input(call.id, '\x1d');
      }
    });
    await call.result;
    return seen;
  } finally {
    c.close();
  }
}

/** `xl machine run` in the foreground, as a child we can watch exit. */
export function runMachine(dir: string, args: readonly string[] = []): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [XL_PROGRAM, 'machine', 'run', '--dir', dir, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) {
        if (out.startsWith('ready ')) resolve({ child, exited });
        else reject(new Error(`machine run said: ${out}`));
      }
    });
    child.once('exit', (code) => reject(new Error(`machine run exited (${code}) before it was ready: ${out}`)));
  });
}

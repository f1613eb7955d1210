/*
 * Starting a machine daemon and finding it again.
 *
 * `xl machine start` spawns the daemon as a detached process running the
 * same program with the hidden verb `machine run`. The daemon writes one
 * line, `ready <pid>`, on its stdout once control.sock and xenstored.sock
 * accept connections (or `error <message>` if it could not start), and the
 * launcher returns then: no polling, no sleeps.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface MachineDirPaths {
  readonly dir: string;
  readonly control: string;
  readonly xenstored: string;
  readonly pidFile: string;
  readonly log: string;
  readonly consoleDir: string;
}

/** The machine dir: --dir, else $XL_MACHINE, else a per-user default. */
export function resolveMachineDir(dir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const d = dir ?? env['XL_MACHINE'] ?? path.join(os.tmpdir(), `xenport-machine-${os.userInfo().uid}`);
  return path.resolve(d);
}

export function machinePaths(dir: string): MachineDirPaths {
  return {
    dir,
    control: path.join(dir, 'control.sock'),
    xenstored: path.join(dir, 'xenstored.sock'),
    pidFile: path.join(dir, 'machine.pid'),
    log: path.join(dir, 'machine.log'),
    consoleDir: path.join(dir, 'console'),
  };
}

export interface LaunchOptions {
  /** The program to run: the xl bundle (process.argv[1] when run from xl). */
  readonly program: string;
  readonly dir: string;
  /** Arguments after `machine run`, e.g. ['--memory', '512M']. */
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

/** Spawn the daemon and resolve with its pid once it says it is ready. */
export function launchDaemon(opts: LaunchOptions): Promise<number> {
  const p = machinePaths(opts.dir);
  fs.mkdirSync(p.dir, { recursive: true });
  const logFd = fs.openSync(p.log, 'a');
  const child = spawn(process.execPath, [opts.program, 'machine', 'run', '--dir', opts.dir, ...opts.args], {
    detached: true,
    stdio: ['ignore', 'pipe', logFd],
    env: opts.env ?? process.env,
  });
  fs.closeSync(logFd);
  return new Promise((resolve, reject) => {
    let out = '';
    let settled = false;
    const finish = (err: Error | null, pid?: number): void => {
      if (settled) return;
      settled = true;
      child.stdout?.destroy();
      child.unref();
      if (err) reject(err);
      else resolve(pid!);
    };
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const line = out.slice(0, nl);
      if (line.startsWith('ready ')) finish(null, Number(line.slice(6)));
      else finish(new Error(line.startsWith('error ') ? line.slice(6) : `machine daemon said: ${line}`));
    });
    child.once('error', (e) => finish(e));
    child.once('exit', (code, sig) => {
      let tail = '';
      try {
        tail = fs.readFileSync(p.log, 'utf8').trim().split('\n').slice(-5).join('\n');
      } catch {
        /* no log */
      }
      finish(new Error(`machine daemon exited (${sig ?? `code ${code}`}) before it was ready${tail ? `:\n${tail}` : ''}`));
    });
  });
}

/*
 * Helpers for tests against real peers: a server on a socket in a fresh
 * temporary directory, and child processes awaited (never slept on). A
 * missing peer binary makes the test fail with a message saying which.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startXenstored, type XenstoredHandle } from '../../hypervisor/tools/xenstored/server.js';

export interface TestServer extends XenstoredHandle {
  readonly env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function serve(): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'xenstored-test-'));
  const handle = await startXenstored({ socketPath: join(dir, 'xenstored.sock') });
  return {
    ...handle,
    env: { ...process.env, XENSTORED_PATH: handle.socketPath },
    stop: async () => {
      await handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Spawn a peer and wait for it to exit. */
export function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnPeer(cmd, args, env);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('latin1'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('latin1'); });
    child.once('error', (err) => reject(missing(cmd, err)));
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

export function spawnPeer(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  return spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

function missing(cmd: string, err: Error & { code?: string }): Error {
  return err.code === 'ENOENT' ? new Error(`peer binary missing: ${cmd} (install the Debian package that provides it)`) : err;
}

/** Lines of a child's stdout, one promise per line, in order. */
export class LineReader {
  private buf = '';
  private readonly lines: string[] = [];
  private readonly waiters: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  private ended: Error | undefined;

  constructor(child: ChildProcessWithoutNullStreams, cmd: string) {
    child.stdout.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w !== undefined) w.resolve(line);
        else this.lines.push(line);
      }
    });
    child.once('error', (err) => this.end(missing(cmd, err)));
    child.once('close', (code) => this.end(new Error(`${cmd} exited (${code}) before printing the expected line`)));
  }

  next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private end(err: Error): void {
    // A spawn failure reports 'error' then 'close': keep the first, clearer reason.
    if (this.ended !== undefined) return;
    this.ended = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

/** Wait for a child to exit. */
export function exited(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('close', (code) => resolve(code)));
}

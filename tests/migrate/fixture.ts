/*
 * Live migration through the shipped program against real machine daemons
 * (the saverestore fixture: machines, xl, counters over xenstored.sock),
 * plus what only migration needs: `xl migrate-receive` as a running child
 * whose first line names its port, and a TCP relay between the two
 * machines that records both directions and can cut the connection or
 * call back after a number of bytes. Every wait is on an event (a line,
 * a byte count, a process exit, a xenstore change), with a deadline.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { XL, until, type Machine, type Ran } from '../saverestore/fixture.js';

export { COUNTERS, growing, run, startMachine, tempDir, until, XL, type Machine, type Ran } from '../saverestore/fixture.js';

export const WL = ['mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'] as const;
export const WL_BLK = ['blk/writes', 'blk/verified', 'blk/errors', ...WL] as const;

/** A running `xl migrate-receive`: the port it listens on, and how it ended. */
export interface Receiver {
  readonly port: number;
  /** Its first stdout line. */
  readonly listening: string;
  readonly done: Promise<Ran>;
}

/** Start `xl migrate-receive ARGS` against `m`; resolves once it has printed where it listens. */
export function receive(t: ExecutionContext, m: Machine, args: readonly string[] = []): Promise<Receiver> {
  const child = spawn(process.execPath, [XL, '--dir', m.dir, 'migrate-receive', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    err += d;
  });
  const done = new Promise<Ran>((resolve) => {
    child.once('exit', (code) => resolve({ code: code ?? 1, out, err }));
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill();
  });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      const had = out.includes('\n');
      out += d;
      if (had) return;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const line = out.slice(0, nl);
      const port = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
      if (port === null) reject(new Error(`migrate-receive's first line: ${JSON.stringify(line)}`));
      else resolve({ port: Number(port[1]), listening: line, done });
    });
    void done.then((r) => reject(new Error(`migrate-receive exited (${r.code}) before it listened: ${r.err}`)));
  });
}

export interface RelayOptions {
  /** Cut both connections once this many bytes went from the sender to the receiver. */
  readonly cutAfter?: number;
  /** Called once, when this many bytes went from the sender to the receiver. */
  readonly at?: { readonly bytes: number; readonly fn: () => void };
}

/** A TCP relay on 127.0.0.1 in front of `port`, for one connection, recording both directions. */
export interface Relay {
  readonly port: number;
  /** What the sender sent (the stream and the go), and what the receiver answered. */
  up(): Uint8Array;
  down(): Uint8Array;
  /** Resolves once both sides of the relayed connection are closed. */
  readonly closed: Promise<void>;
}

export async function relay(t: ExecutionContext, port: number, opts: RelayOptions = {}): Promise<Relay> {
  const up: Buffer[] = [];
  const down: Buffer[] = [];
  let upBytes = 0;
  let fired = false;
  let closedResolve: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    closedResolve = resolve;
  });
  const server = net.createServer((client) => {
    server.close();
    const target = net.createConnection({ host: '127.0.0.1', port });
    let open = 2;
    const gone = (): void => {
      if (--open === 0) closedResolve();
    };
    const cut = (): void => {
      client.destroy();
      target.destroy();
    };
    client.on('close', gone);
    target.on('close', gone);
    client.on('error', cut);
    target.on('error', cut);
    client.on('data', (b: Buffer) => {
      if (opts.cutAfter !== undefined && upBytes + b.length > opts.cutAfter) {
        const keep = b.subarray(0, opts.cutAfter - upBytes);
        up.push(keep);
        upBytes += keep.length;
        target.write(keep, cut);
        return;
      }
      up.push(b);
      upBytes += b.length;
      if (!target.write(b)) client.pause();
      if (opts.at !== undefined && !fired && upBytes >= opts.at.bytes) {
        fired = true;
        opts.at.fn();
      }
    });
    target.on('drain', () => client.resume());
    target.on('data', (b: Buffer) => {
      down.push(b);
      if (!client.write(b)) target.pause();
    });
    client.on('drain', () => target.resume());
    client.on('end', () => target.end());
    target.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    server.close();
  });
  return {
    port: (server.address() as AddressInfo).port,
    up: () => new Uint8Array(Buffer.concat(up)),
    down: () => new Uint8Array(Buffer.concat(down)),
    closed,
  };
}

/** A port on 127.0.0.1 that nothing listens on (just released). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A netbsd guest config: mem,clock (plus blk when `disk` is given), the mem workload rewriting pages fast. */
export function guestConfig(dir: string, name: string, disk?: string): string {
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, [
    `name = "${name}"`, 'kernel = "netbsd"', 'memory = 32',
    ...(disk === undefined ? [] : [`disk = [ 'file:${disk},xvda,w' ]`]),
    `extra = "workload=${disk === undefined ? '' : 'blk,'}mem,clock mem_mb=4 dirty_rate=2000"`, '',
  ].join('\n'));
  return file;
}

/** Counters `names` of `domid` once all are published. */
export async function counters(m: Machine, domid: number, names: readonly string[]): Promise<Record<string, number> | undefined> {
  const c = await m.counters(domid, names);
  return c !== undefined && Object.values(c).every(Number.isFinite) ? c : undefined;
}

/** Create the guest and wait until its workloads run; its domid. */
export async function bootGuest(t: ExecutionContext, m: Machine, cfg: string, names: readonly string[] = WL): Promise<{ domid: number; first: Record<string, number> }> {
  const domid = Number((await m.ok(t, ['create', cfg])).trim());
  const first = await until('the workload counters', 90_000, async () => {
    const c = await counters(m, domid, names);
    return c !== undefined && c['mem/passes']! >= 1 && c['clock/ticks']! >= 2 && (c['blk/verified'] ?? 8) >= 8 ? c : undefined;
  });
  return { domid, first };
}

/** Wait until every counter in `grow` passes its value in `base`; the counters then. */
export function grown(m: Machine, domid: number, names: readonly string[], base: Record<string, number>, grow: readonly string[], what: string): Promise<Record<string, number>> {
  return until(what, 60_000, async () => {
    const c = await counters(m, domid, names);
    return c !== undefined && grow.every((k) => c[k]! > base[k]!) ? c : undefined;
  });
}

/** `round N: P pages (pre-copy|final ...)` lines of `xl migrate`. */
export function roundsOf(out: string): { round: number; pages: number; phase: 'pre-copy' | 'final' }[] {
  return [...out.matchAll(/^round (\d+): (\d+) pages \((pre-copy|final),/gm)].map((m) => ({
    round: Number(m[1]), pages: Number(m[2]), phase: m[3] as 'pre-copy' | 'final',
  }));
}

/** `xl list` rows as [name, domid, state]. */
export async function listRows(t: ExecutionContext, m: Machine): Promise<[string, number, string][]> {
  const out = await m.ok(t, ['list']);
  return out.trim().split('\n').slice(1).map((l) => {
    const f = l.trim().split(/\s+/);
    return [f[0]!, Number(f[1]), f[4]!];
  });
}

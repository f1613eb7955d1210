/*
 * xl: the command line. Verbs and flags follow Xen's xl where Xen has them;
 * `xl machine ...` manages the emulated machine daemon (ARCHITECTURE §8).
 *
 * The CLI is thin: it parses arguments and config files (so a bad config
 * is reported before anything is sent), then forwards the verb to the
 * daemon over control.sock. Every failure is one clear line on stderr and
 * a non-zero exit status.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { KernelImage } from '../../public/cpu.js';
import { ControlClient, ControlError, NoMachineError } from '../machine/control.js';
import { launchDaemon, machinePaths, resolveMachineDir } from '../machine/launch.js';
import { DaemonArgError, parseDaemonArgs } from '../machine/args.js';
import { MigrateWireError, parseHostPort } from '../machine/migrate-wire.js';
import { ConfigError, parseConfig } from './config.js';

export interface XlIo {
  out(s: string): void;
  err(s: string): void;
  /** Interactive console input (raw bytes from the terminal), if any. */
  readonly stdin?: NodeJS.ReadableStream & { setRawMode?: (raw: boolean) => unknown; isTTY?: boolean };
}

export interface XlDeps {
  /** Kernel images this build can boot, handed to a daemon started in-process. */
  readonly images: readonly KernelImage[];
  /** Path of the program (the xl bundle), used to spawn the daemon. */
  readonly program: string;
  /** Runs the daemon in this process (`xl machine run`, hidden). */
  readonly runDaemon: (dir: string, args: readonly string[], images: readonly KernelImage[]) => Promise<void>;
  readonly env?: NodeJS.ProcessEnv;
}

/** A usage or argument error: printed as one line, exit status 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const USAGE = `usage: xl [--dir DIR] <verb> [args]
machine:  machine start [--memory SIZE] [--tsc-khz N] [--clock realtime|simulated] [--scramble SEED]
          machine status | machine stop
domains:  create CFG | list [-l] | console DOM | dmesg | info
          pause DOM | unpause DOM | shutdown [-w] [--ctrl-if] DOM | destroy DOM
save:     save [-c] [-p] [--suspend=evtchn|xenstore|ctrl_if] DOM FILE|- | restore [-p] FILE | p2m DOM
migrate:  migrate [--suspend=evtchn|xenstore|ctrl_if] [--timeout S] DOM HOST:PORT
          migrate-receive [-p] [-r|--checkpointed] [--listen [HOST:]PORT] [--timeout S]
          remus [-i MS] [-n COUNT] [--suspend=evtchn|xenstore|ctrl_if] DOM HOST:PORT
network:  network-ping DOM | network-info
DIR defaults to $XL_MACHINE.`;

interface Parsed {
  flags: Map<string, string | true>;
  positional: string[];
}

/** Parse `--flag value`, `--flag=value`, `-x` flags; `bool` lists flags without values. */
export function parseArgs(argv: readonly string[], withValue: readonly string[], bool: readonly string[]): Parsed {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(0, eq) : a;
      if (withValue.includes(name)) {
        const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new UsageError(`${name} needs a value`);
        flags.set(name, v);
      } else if (bool.includes(name) && eq < 0) {
        flags.set(name, true);
      } else {
        throw new UsageError(`unknown option ${name}`);
      }
    } else positional.push(a);
  }
  return { flags, positional };
}

/** `--timeout S` (whole seconds) as ms, if given. */
function timeoutFlag(p: Parsed): number | undefined {
  const tmo = p.flags.get('--timeout');
  const ms = typeof tmo === 'string' ? Number(tmo) * 1000 : undefined;
  if (ms !== undefined && !(Number.isInteger(ms) && ms > 0)) throw new UsageError('--timeout takes whole seconds');
  return ms;
}

/** Check a HOST:PORT before anything is sent. */
function checkAddress(text: string, opts: { readonly defaultHost?: string; readonly allowZero?: boolean }): void {
  try {
    parseHostPort(text, opts);
  } catch (e) {
    if (e instanceof MigrateWireError) throw new UsageError(e.message);
    throw e;
  }
}

interface RoundLine {
  round: number;
  pages: number;
  phase: 'precopy' | 'final';
}

interface MigrateSummary {
  name: string;
  target: string;
  via: string;
  rounds: RoundLine[];
  precopyRounds: number;
  pages: number;
  bytes: number;
  remoteDomid: number;
  downtimeMs: number;
  outcome: string;
}

function roundLine(r: RoundLine): string {
  return `round ${r.round}: ${r.pages} pages (${r.phase === 'precopy' ? 'pre-copy, the guest running' : 'final, the guest suspended'})`;
}

function oneArg(p: Parsed, what: string): string {
  if (p.positional.length !== 1) throw new UsageError(`expected one ${what}`);
  return p.positional[0]!;
}

async function withClient<T>(dir: string, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await ControlClient.connect(dir, machinePaths(dir).control);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

interface DomainRow {
  name: string;
  domid: number;
  memMiB: number;
  vcpus: number;
  state: string;
  cpuTimeSec: number;
}

/** Xen's `xl list` columns. */
export function formatList(rows: readonly DomainRow[]): string {
  const lines = [`${'Name'.padEnd(40)}${'ID'.padStart(5)}${'Mem'.padStart(6)}${'VCPUs'.padStart(6)}${'State'.padStart(11)}${'Time(s)'.padStart(11)}`];
  for (const r of rows) {
    lines.push(`${r.name.padEnd(40)}${String(r.domid).padStart(5)}${String(r.memMiB).padStart(6)}${String(r.vcpus).padStart(6)}${r.state.padStart(11)}${r.cpuTimeSec.toFixed(1).padStart(11)}`);
  }
  return lines.join('\n') + '\n';
}

async function console_(dir: string, dom: string, io: XlIo): Promise<void> {
  await withClient(dir, async (c) => {
    const stdin = io.stdin;
    let call: { id: number; result: Promise<unknown> } | undefined;
    const onKey = (d: Buffer | string): void => {
      const s = typeof d === 'string' ? d : d.toString('latin1');
      // Ctrl-] detaches, as in xl console.
      const cut = s.indexOf('\x1d');
      if (cut >= 0) {
        if (cut > 0 && call) c.input(call.id, s.slice(0, cut));
        if (call) c.input(call.id, '\x1d');
        return;
      }
      if (call) c.input(call.id, s);
    };
    call = c.call('console', { dom }, (d) => io.out(d));
    if (stdin) {
      if (stdin.isTTY && stdin.setRawMode) stdin.setRawMode(true);
      stdin.on('data', onKey);
    }
    try {
      await call.result;
    } finally {
      if (stdin) {
        stdin.off('data', onKey);
        if (stdin.isTTY && stdin.setRawMode) stdin.setRawMode(false);
        stdin.pause();
      }
    }
  });
}

async function dispatch(argv: readonly string[], io: XlIo, deps: XlDeps): Promise<void> {
  // Global --dir may precede the verb.
  let i = 0;
  let dirFlag: string | undefined;
  while (i < argv.length && argv[i]!.startsWith('-')) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      io.out(USAGE + '\n');
      return;
    }
    if (a === '--dir') dirFlag = argv[++i];
    else if (a.startsWith('--dir=')) dirFlag = a.slice(6);
    else throw new UsageError(`unknown option ${a}`);
    i++;
  }
  const verb = argv[i];
  const rest = argv.slice(i + 1);
  if (verb === undefined) throw new UsageError(USAGE);
  const env = deps.env ?? process.env;

  if (verb === 'machine') {
    const sub = rest[0];
    const p = parseArgs(rest.slice(1), ['--dir', '--memory', '--tsc-khz', '--clock', '--scramble'], []);
    const dirArg = p.flags.get('--dir');
    const dir = resolveMachineDir(typeof dirArg === 'string' ? dirArg : dirFlag, env);
    const passThrough: string[] = [];
    for (const [k, v] of p.flags) if (k !== '--dir' && typeof v === 'string') passThrough.push(k, v);
    switch (sub) {
      case 'start': {
        if (fs.existsSync(machinePaths(dir).control)) {
          const alive = await withClient(dir, async (c) => c.call('status').result).then(() => true, () => false);
          if (alive) throw new ControlError(`a machine is already running at ${dir}`);
        }
        try {
          parseDaemonArgs(passThrough);
        } catch (e) {
          if (e instanceof DaemonArgError) throw new UsageError(e.message);
          throw e;
        }
        const pid = await launchDaemon({ program: deps.program, dir, args: passThrough, env }).catch((e: unknown) => {
          throw new ControlError(`machine start: ${e instanceof Error ? e.message : String(e)}`);
        });
        io.out(`machine started at ${dir} (pid ${pid})\n`);
        return;
      }
      case 'run':
        await deps.runDaemon(dir, passThrough, deps.images);
        return;
      case 'status': {
        const s = (await withClient(dir, (c) => c.call('status').result)) as Record<string, unknown>;
        io.out(Object.entries(s).map(([k, v]) => `${k.padEnd(16)}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n') + '\n');
        return;
      }
      case 'stop':
        await withClient(dir, (c) => c.call('stop').result);
        io.out(`machine at ${dir} stopped\n`);
        return;
      default:
        throw new UsageError('usage: xl machine start|status|stop [--dir DIR] ...');
    }
  }

  const dir = resolveMachineDir(dirFlag, env);
  switch (verb) {
    case 'create': {
      const p = parseArgs(rest, [], ['-p']);
      const file = oneArg(p, 'config file');
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const cfg = parseConfig(text, file);
      const base = path.dirname(path.resolve(file));
      // Disk paths are relative to the config file, as a user would expect.
      const disks = cfg.disks.map((d) => ({ ...d, target: path.resolve(base, d.target) }));
      const r = (await withClient(dir, (c) => c.call('create', { config: { ...cfg, disks }, paused: p.flags.has('-p') }).result)) as { domid: number };
      io.out(`${r.domid}\n`);
      return;
    }
    case 'list': {
      const p = parseArgs(rest, [], ['-l']);
      const rows = (await withClient(dir, (c) => c.call('list', { long: p.flags.has('-l') }).result)) as DomainRow[];
      io.out(p.flags.has('-l') ? JSON.stringify(rows, null, 2) + '\n' : formatList(rows));
      return;
    }
    case 'console':
      await console_(dir, oneArg(parseArgs(rest, [], []), 'domain'), io);
      return;
    case 'dmesg': {
      const r = (await withClient(dir, (c) => c.call('dmesg').result)) as string;
      io.out(r);
      return;
    }
    case 'info': {
      const r = (await withClient(dir, (c) => c.call('info').result)) as Record<string, unknown>;
      io.out(Object.entries(r).map(([k, v]) => `${k.padEnd(24)}: ${String(v)}`).join('\n') + '\n');
      return;
    }
    case 'pause':
    case 'unpause':
    case 'destroy': {
      const dom = oneArg(parseArgs(rest, [], []), 'domain');
      await withClient(dir, (c) => c.call(verb, { dom }).result);
      return;
    }
    case 'shutdown': {
      const p = parseArgs(rest, [], ['--ctrl-if', '-w']);
      const dom = oneArg(p, 'domain');
      await withClient(dir, (c) => c.call('shutdown', { dom, via: p.flags.has('--ctrl-if') ? 'ctrl_if' : 'xenstore', wait: p.flags.has('-w') }).result);
      return;
    }
    case 'save': {
      const p = parseArgs(rest, ['--suspend', '--timeout'], ['-c', '-p']);
      if (p.positional.length !== 2) throw new UsageError('usage: xl save [-c] [-p] [--suspend=evtchn|xenstore|ctrl_if] DOM FILE');
      const [dom, file] = p.positional as [string, string];
      const via = p.flags.get('--suspend');
      if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') {
        throw new UsageError('--suspend must be evtchn, xenstore or ctrl_if');
      }
      const tmo = p.flags.get('--timeout');
      const timeoutMs = typeof tmo === 'string' ? Number(tmo) * 1000 : undefined;
      if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw new UsageError('--timeout takes whole seconds');
      // '-': the machine writes a temporary file in its directory and xl streams it.
      const toStdout = file === '-';
      const target = toStdout ? path.join(dir, `stdout-save-${process.pid}.img`) : path.resolve(file);
      const args = {
        dom, file: target, checkpoint: p.flags.has('-c'), paused: p.flags.has('-p'),
        ...(typeof via === 'string' ? { via } : {}), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }),
      };
      // A progress line on a terminal only: `\r`-rewritten as the machine streams `done total` chunks.
      const tty = !toStdout && process.stdout.isTTY === true;
      let shown = 0;
      const onData = (d: string): void => {
        const last = d.trim().split('\n').pop()?.split(' ').map(Number) ?? [];
        const [done, total] = last;
        if (done === undefined || total === undefined || !(total > 0)) return;
        const line = `saving ${dom}: ${done}/${total} pages (${Math.floor((100 * done) / total)}%)`;
        io.out(`\r${line}`);
        shown = line.length;
      };
      let r: { bytes: number; outcome: string; via: string };
      try {
        r = (await withClient(dir, (c) => c.call('save', tty ? { ...args, progress: true } : args, tty ? onData : undefined).result)) as typeof r;
      } finally {
        if (shown > 0) io.out(`\r${' '.repeat(shown)}\r`);
      }
      if (toStdout) {
        try {
          await new Promise<void>((resolve, reject) => {
            const rs = fs.createReadStream(target);
            rs.on('error', reject);
            rs.on('end', resolve);
            rs.pipe(process.stdout, { end: false });
          });
        } finally {
          fs.rmSync(target, { force: true });
        }
        io.err(`saved domain ${dom} (${r.bytes} bytes, suspended via ${r.via}): ${r.outcome}\n`);
      } else {
        io.out(`saved domain ${dom} to ${target} (${r.bytes} bytes, suspended via ${r.via}): ${r.outcome}\n`);
      }
      return;
    }
    case 'restore': {
      const p = parseArgs(rest, [], ['-p']);
      const file = path.resolve(oneArg(p, 'image file'));
      const r = (await withClient(dir, (c) => c.call('restore', { file, paused: p.flags.has('-p') }).result)) as { domid: number };
      io.out(`${r.domid}\n`);
      return;
    }
    case 'migrate': {
      const p = parseArgs(rest, ['--suspend', '--timeout'], []);
      if (p.positional.length !== 2) throw new UsageError('usage: xl migrate [--suspend=evtchn|xenstore|ctrl_if] [--timeout S] DOM HOST:PORT');
      const [dom, target] = p.positional as [string, string];
      checkAddress(target, {});
      const via = p.flags.get('--suspend');
      if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') {
        throw new UsageError('--suspend must be evtchn, xenstore or ctrl_if');
      }
      const timeoutMs = timeoutFlag(p);
      const args = { dom, target, ...(typeof via === 'string' ? { via } : {}), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }) };
      // Each round as the machine reports it (one JSON line a round).
      const onData = (d: string): void => {
        for (const line of d.split('\n')) {
          if (line.trim() === '') continue;
          try {
            io.out(`${roundLine(JSON.parse(line) as RoundLine)}\n`);
          } catch {
            // not a round: ignore
          }
        }
      };
      const r = (await withClient(dir, (c) => c.call('migrate', args, onData).result)) as MigrateSummary;
      const final = r.rounds.filter((x) => x.phase === 'final').reduce((n, x) => n + x.pages, 0);
      io.out(`migrated domain ${r.name} to ${r.target} (domid ${r.remoteDomid} there): ${r.rounds.length} rounds, ${r.precopyRounds} pre-copy while it ran`
        + ` then ${final} pages after it suspended via ${r.via}; ${r.pages} pages, ${r.bytes} bytes, downtime ${r.downtimeMs} ms: ${r.outcome} here\n`);
      return;
    }
    case 'migrate-receive': {
      const p = parseArgs(rest, ['--listen', '--timeout'], ['-p', '-r', '--checkpointed']);
      if (p.positional.length !== 0) throw new UsageError('usage: xl migrate-receive [-p] [-r|--checkpointed] [--listen [HOST:]PORT] [--timeout S]');
      const checkpointed = p.flags.has('-r') || p.flags.has('--checkpointed');
      const listen = p.flags.get('--listen');
      if (typeof listen === 'string') checkAddress(listen, { defaultHost: '127.0.0.1', allowZero: true });
      const timeoutMs = timeoutFlag(p);
      const args = {
        paused: p.flags.has('-p'), ...(typeof listen === 'string' ? { listen } : {}), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }),
        ...(checkpointed ? { checkpointed: true } : {}),
      };
      // One line naming the address, as soon as the machine listens: a script reads the port from it.
      const onData = (d: string): void => {
        const m = /^listening (\S+)$/m.exec(d);
        if (m !== null) io.out(`listening on ${m[1]}\n`);
        for (const c of d.matchAll(/^checkpoint (\d+)$/gm)) io.out(`checkpoint ${c[1]} received\n`);
      };
      const r = (await withClient(dir, (c) => c.call('migrate-receive', args, onData).result)) as {
        domid: number; checkpoint?: number; ended?: string; why?: string;
      };
      if (checkpointed) {
        const how = r.ended === 'end' ? 'the stream ended' : `the stream broke: ${r.why ?? ''}`;
        io.out(`started from checkpoint ${r.checkpoint} (${how})\n`);
      }
      io.out(`${r.domid}\n`);
      return;
    }
    case 'remus': {
      const usage = 'usage: xl remus [-i MS] [-n COUNT] [--suspend=evtchn|xenstore|ctrl_if] [--timeout S] DOM HOST:PORT';
      const p = parseArgs(rest, ['-i', '-n', '--suspend', '--timeout'], []);
      if (p.positional.length !== 2) throw new UsageError(usage);
      const [dom, target] = p.positional as [string, string];
      checkAddress(target, {});
      const via = p.flags.get('--suspend');
      if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') throw new UsageError('--suspend must be evtchn, xenstore or ctrl_if');
      const num = (flag: string, what: string): number | undefined => {
        const v = p.flags.get(flag);
        if (v === undefined) return undefined;
        const x = Number(v);
        if (typeof v !== 'string' || !Number.isInteger(x) || x < 1) throw new UsageError(`${flag} takes ${what}`);
        return x;
      };
      const interval = num('-i', 'a whole number of ms');
      const count = num('-n', 'a positive count');
      const timeoutMs = timeoutFlag(p);
      const args = {
        dom, target, ...(typeof via === 'string' ? { via } : {}), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }),
        ...(interval === undefined ? {} : { interval_ms: interval }), ...(count === undefined ? {} : { checkpoints: count }),
      };
      const onData = (d: string): void => {
        for (const line of d.split('\n')) {
          if (line.trim() === '') continue;
          try {
            const cp = JSON.parse(line) as { n: number; pages: number; last: boolean };
            io.out(`checkpoint ${cp.n}: ${cp.pages} pages${cp.last ? ' (the last)' : ''}\n`);
          } catch {
            // not a checkpoint: ignore
          }
        }
      };
      const r = (await withClient(dir, (c) => c.call('remus', args, onData).result)) as { name: string; target: string; checkpoints: number; bytes: number };
      io.out(`remus of ${r.name} to ${r.target} stopped after ${r.checkpoints} checkpoints, ${r.bytes} bytes; the domain keeps running here\n`);
      return;
    }
    case 'p2m': {
      const dom = oneArg(parseArgs(rest, [], []), 'domain');
      io.out((await withClient(dir, (c) => c.call('p2m', { dom }).result)) as string);
      return;
    }
    case 'network-ping': {
      const dom = oneArg(parseArgs(rest, [], []), 'domain');
      const r = (await withClient(dir, (c) => c.call('network-ping', { dom }).result)) as { line: string };
      io.out(`${r.line}\n`);
      return;
    }
    case 'network-info': {
      parseArgs(rest, [], []);
      const r = await withClient(dir, (c) => c.call('network-info').result);
      io.out(JSON.stringify(r, null, 2) + '\n');
      return;
    }
    default:
      throw new UsageError(`unknown verb ${verb}\n${USAGE}`);
  }
}

/** Run xl with `argv` (without node and script). Returns the exit status. */
export async function runXl(argv: readonly string[], io: XlIo, deps: XlDeps): Promise<number> {
  try {
    await dispatch(argv, io, deps);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ControlError || e instanceof NoMachineError || e instanceof ConfigError) {
      io.err(`xl: ${e.message}\n`);
      return 1;
    }
    io.err(`xl: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
}

/**
 * What a composition root (bin/xl-main.ts) runs: xl on this process's
 * arguments and standard streams; the exit status becomes the process's.
 */
export async function xlMain(deps: XlDeps, argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const io: XlIo = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    // Only `xl console` reads the terminal; touch process.stdin only then.
    get stdin() {
      return process.stdin;
    },
  };
  process.exitCode = await runXl(argv, io, deps);
}

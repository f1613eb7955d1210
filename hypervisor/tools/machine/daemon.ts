/*
 * The machine daemon (`xl machine run`, started by `xl machine start`):
 * one emulated machine per directory.
 *
 *   <dir>/control.sock     xl <-> daemon (control.ts), verbs in verbs.ts
 *   <dir>/xenstored.sock   xs_wire for any host client (xenstore-utils, pyxs)
 *   <dir>/machine.log      the hypervisor's log (what `xl dmesg` shows)
 *   <dir>/console/N.log    each guest's console (xenconsoled)
 *   <dir>/trace.jsonl      the protocol trace (save, restore: hypervisor/xen/trace.ts), JSON lines
 *   <dir>/machine.pid
 *   TCP                    only while `xl migrate-receive` waits for its one
 *                          migration, and `xl migrate`'s connection (migrate.ts)
 *
 * Startup writes `ready <pid>` on stdout once both sockets accept, or
 * `error <message>` (launch.ts waits for that line). The machine clock
 * runs in real time unless `--clock simulated`. `stop` (after its reply),
 * SIGTERM and SIGINT stop it cleanly: domains destroyed, sockets closed
 * and removed, exit status 0.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { KernelImage } from '../../public/cpu.js';
import type { Machine } from '../../xen/machine.js';
import { ControlServer } from './control.js';
import { machinePaths, type MachineDirPaths } from './launch.js';
import { parseDaemonArgs } from './args.js';
import { MachineHost } from './host.js';
import { makeVerbs } from './verbs.js';
import { TraceFile, TRACE_FILE } from './trace-file.js';

/** How often the hypervisor's log is copied to machine.log between verbs. */
const LOG_FLUSH_MS = 250;
/** How often time is let act on dom0's network (ARP retries, ageing, idle forwards). */
const NET_TICK_MS = 100;

/** Copies the hypervisor's console ring to machine.log as it grows. */
class LogFile {
  private at: number | undefined;
  private readonly fd: number;

  constructor(path: string, private readonly m: Machine) {
    this.fd = fs.openSync(path, 'a');
  }

  flush(): void {
    const { text, end } = this.m.log.readRing(this.at, 1 << 20);
    this.at = end;
    if (text.length > 0) fs.writeSync(this.fd, text);
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
  }
}

/** Does something answer on this socket? */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function claimDir(p: MachineDirPaths): Promise<void> {
  fs.mkdirSync(p.dir, { recursive: true });
  fs.mkdirSync(p.consoleDir, { recursive: true });
  if (fs.existsSync(p.control)) {
    if (await answers(p.control)) throw new Error(`a machine is already running at ${p.dir}`);
    fs.rmSync(p.control, { force: true }); // left by a daemon that died
  }
}

/**
 * Run a machine daemon in this process until it is stopped. Reports
 * readiness (or failure) on stdout as launch.ts expects.
 */
export async function runDaemon(dir: string, args: readonly string[], images: readonly KernelImage[]): Promise<void> {
  const p = machinePaths(dir);
  let host: MachineHost | undefined;
  let server: ControlServer | undefined;
  let log: LogFile | undefined;
  let trace: TraceFile | undefined;
  let flushTimer: ReturnType<typeof setInterval> | undefined;
  let netTimer: ReturnType<typeof setInterval> | undefined;
  let stopRequested: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  const onSignal = (): void => stopRequested();
  let listening = false;
  try {
    const opts = parseDaemonArgs(args);
    await claimDir(p);
    host = await MachineHost.create({
      machine: { memoryBytes: opts.memoryBytes, tscKhz: opts.tscKhz, clock: opts.clock, scrambleSeed: opts.scrambleSeed, trace: true },
      images,
      consoleDir: p.consoleDir,
      xenstoredSocket: p.xenstored,
    });
    const h = host;
    log = new LogFile(p.log, h.m);
    const lf = log;
    trace = new TraceFile(`${p.dir}/${TRACE_FILE}`, h.m.trace);
    const tf = trace;
    h.m.log.xen(`xenport machine daemon pid ${process.pid} at ${dir}; kernel images: ${images.map((i) => i.name).join(', ') || 'none'}`);
    server = new ControlServer(makeVerbs({
      host: h,
      dir,
      // Let the reply go out first.
      requestStop: () => setImmediate(stopRequested),
      flushLog: () => lf.flush(),
    }, images));
    await server.listen(p.control);
    listening = true;
    fs.writeFileSync(p.pidFile, `${process.pid}\n`);
    flushTimer = setInterval(() => {
      lf.flush();
      tf.flush();
    }, LOG_FLUSH_MS);
    flushTimer.unref();
    netTimer = setInterval(() => h.backends.tick(), NET_TICK_MS);
    netTimer.unref();
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    h.m.start();
    process.stdout.write(`ready ${process.pid}\n`);
  } catch (e) {
    process.stdout.write(`error ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
    stopRequested();
  }
  await stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (flushTimer !== undefined) clearInterval(flushTimer);
  if (netTimer !== undefined) clearInterval(netTimer);
  await server?.close();
  if (host !== undefined) {
    host.m.log.xen('machine stopping: destroying every domain');
    await host.close();
  }
  trace?.close();
  log?.close();
  if (listening) {
    // Only what this daemon made: a failed start must not remove a running machine's socket.
    fs.rmSync(p.control, { force: true });
    fs.rmSync(p.pidFile, { force: true });
  }
}

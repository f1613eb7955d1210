/*
 * Live migration between machine daemons: `xl migrate DOM HOST:PORT` on
 * the source machine, `xl migrate-receive` on the target, over one TCP
 * connection (the handshake and the stream: migrate-wire.ts). The steps
 * and their order are xl's (tools/xl/xl_migrate.c):
 *
 *   receiver                                 sender
 *   listen, accept one connection
 *   banner                       ------->    check it
 *                                <-------    xl stream: liveSaveDomain, pre-copy
 *   restoreDomain as it comes in             rounds while the guest runs, then
 *   (validated as `xl restore` does)         suspend (as `xl save`) and the rest
 *   nodes, XS_INTRODUCE, console,
 *   ctrl_if, devices; paused,
 *   named NAME--incoming
 *   ready                        ------->    rename own copy NAME--migratedaway
 *                                <-------    go
 *   rename to NAME, unpause (not -p)
 *   started DOMID                ------->    destroy own copy (as `xl destroy`)
 *
 * Before "go" any failure on either side (no connection, a receiver that
 * dies or refuses the stream, a guest that does not suspend, a timeout)
 * ends the same way: the receiver destroys whatever it built, the sender
 * turns log-dirty mode off and resumes its domain in place (rax = 1,
 * resumedomain, XS_RESUME): the guest carries on where it was. After "go"
 * the receiver owns the domain; if it reports that it could not start it,
 * it has destroyed its copy and the sender resumes its own. If the
 * connection breaks after "go" with no report, neither side can know
 * whether the other runs the domain: the sender leaves its copy suspended
 * (renamed NAME--migratedaway) and says so, as xl does.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Machine } from '../../xen/machine.js';
import { DOMID_INVALID } from '../../public/xen.js';
import { liveSaveDomain, remusSaveDomain, restoreDomain, RestoreError, type LiveRound, type RemusCheckpoint } from '../save/index.js';
import { StreamError } from '../stream/index.js';
import { ToolstackError, type MachineHost, type SuspendVia } from './host.js';
import {
  MIGRATE_BANNER, MIGRATE_FAILED, MIGRATE_GO, MIGRATE_READY, MIGRATE_STARTED, MigrateWireError, Wire,
  connectTo, formatHostPort, oneLine, type HostPort,
} from './migrate-wire.js';

export interface MigrateRequest {
  /** How to ask the guest to suspend for the last round (default as `xl save`). */
  readonly via?: SuspendVia;
  /** ms of machine time the guest has to suspend (default 10 s). */
  readonly timeoutMs?: number;
  /** ms the receiver may take for each answer (banner, ready, report) (default 60 s). */
  readonly peerTimeoutMs?: number;
  /** Pre-copy rounds after the first full pass (default 5). */
  readonly maxRounds?: number;
  /** Suspend once fewer pages than this were dirtied in a round (default 50). */
  readonly dirtyThreshold?: number;
  /** ms of machine time the guest runs between two pre-copy rounds (default 50). */
  readonly roundMs?: number;
  /** Told after each round. */
  readonly onRound?: (round: LiveRound) => void;
  /** Abandon the migration (the xl that asked went away): as a failure, if before the permission to go. */
  readonly signal?: AbortSignal;
}

export interface MigrateReport {
  readonly domid: number;
  readonly name: string;
  readonly target: string;
  readonly via: SuspendVia;
  readonly rounds: readonly LiveRound[];
  /** Rounds sent while the guest ran (the full pass included). */
  readonly precopyRounds: number;
  /** Pages sent in all rounds (resends included). */
  readonly pages: number;
  readonly bytes: number;
  /** The domain's id on the receiving machine. */
  readonly remoteDomid: number;
  /** ms from asking the guest to suspend to the receiver's report. */
  readonly downtimeMs: number;
  readonly totalMs: number;
  readonly outcome: 'destroyed';
}

export interface ReceiveRequest {
  /** Where to listen; port 0: any free port. */
  readonly listen: HostPort;
  /** `-p`: leave the domain paused once it is in. */
  readonly paused?: boolean;
  /** Told the address actually listened on, once connections are accepted. */
  readonly onListening?: (addr: HostPort) => void;
  /** Give up (the xl that asked went away): as a failure, if before the domain is started. */
  readonly signal?: AbortSignal;
  /** ms the sender may stay silent once connected (default 60 s). */
  readonly peerTimeoutMs?: number;
}

export interface ReceiveReport {
  readonly domid: number;
  readonly name: string;
  /** The sender's address. */
  readonly from: string;
  /** Pfns that got a frame. */
  readonly pages: number;
  /** Bytes of the stream. */
  readonly bytes: number;
  readonly paused: boolean;
}

const DEFAULT_PEER_MS = 60_000;
const INCOMING = '--incoming';
const AWAY = '--migratedaway';
/** Guest entries a simulated machine runs before yielding to the event loop. */
const SLICE = 2000;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Let the guests run for `ns` of machine time between two pre-copy rounds.
 * A realtime machine runs itself (the daemon started its loop): wait that
 * long. A simulated clock only moves when someone steps the machine: step
 * it here up to the deadline, yielding to the event loop between slices so
 * that xenstored and the backends keep up (if its own loop runs as well,
 * both step it; time still only goes forward).
 */
export async function letGuestRun(m: Pick<Machine, 'clock' | 'step'>, ns: number): Promise<void> {
  const deadline = m.clock.now() + ns;
  if (m.clock.kind !== 'simulated') {
    await new Promise<void>((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(ns / 1e6))));
    return;
  }
  while (m.clock.now() < deadline) {
    let moved = true;
    for (let i = 0; i < SLICE && moved && m.clock.now() < deadline; i++) moved = m.step(deadline);
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!moved) return;
  }
}

/** The receiver's `failed: ...` line, if it sent one before going away. */
class ReceiverFailed extends Error {}

/**
 * How `xl migrate` and `xl remus` start: the domain (ours, not dom0, not
 * suspended), a claim on it (one way out at a time) and a connection to
 * the receiver; on failure the claim is let go and the domain runs on.
 */
async function connectOutgoing(
  h: MachineHost, domid: number, to: HostPort, how: 'migration' | 'checkpointing', peerMs: number,
): Promise<{ name: string; target: string; what: string; release: () => void; wire: Wire }> {
  if (domid === 0) throw new ToolstackError(`Domain-0 cannot be ${how === 'migration' ? 'migrated' : 'checkpointed'}`);
  const r = h.record(domid);
  if (r === undefined) throw new ToolstackError(`domain ${domid} was not created by this toolstack`);
  const target = formatHostPort(to);
  const what = `${how === 'migration' ? 'migration' : 'remus'} of ${r.name} (${domid}) to ${target}`;
  if (h.isSuspended(domid)) throw new ToolstackError(`${what}: the domain is suspended`);
  const release = h.claimLeaving(domid, how);
  try {
    return { name: r.name, target, what, release, wire: new Wire(await connectTo(to, peerMs)) };
  } catch (e) {
    release();
    throw new ToolstackError(`${what} failed, the domain keeps running here: ${message(e)}`);
  }
}

/**
 * `xl migrate DOM HOST:PORT`: send the domain live to `xl migrate-receive`
 * at `to`. Resolves once it runs there and is destroyed here; otherwise
 * rejects with a ToolstackError saying what happened to the domain.
 */
export async function migrateDomain(h: MachineHost, domid: number, to: HostPort, req: MigrateRequest = {}): Promise<MigrateReport> {
  const t0 = Date.now();
  const peerMs = req.peerTimeoutMs ?? DEFAULT_PEER_MS;
  const { name, target, what, release, wire } = await connectOutgoing(h, domid, to, 'migration', peerMs);
  let afterGo = false;
  let renamed = false;
  let suspendedAt = 0;
  // Closing the connection makes whatever step is under way fail, and the failure path resume the domain.
  const onAbort = (): void => {
    if (!afterGo) wire.destroy();
  };
  req.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const via = req.via ?? await h.defaultSuspendVia(domid);
    await wire.expect(MIGRATE_BANNER, 'the banner of xl migrate-receive', peerMs);
    h.m.trace.record(domid, 'toolstack', 'migrate: banner received', `from ${target}, suspend via ${via} for the last round`);
    const res = await liveSaveDomain(h.savingMachine(), domid, wire.socket, {
      ...h.imageOptions(domid, 'xl migrate'),
      suspend: async () => {
        suspendedAt = Date.now();
        await h.suspendGuest(domid, via, req.timeoutMs ?? 10_000, 'suspending for the last round');
      },
      betweenRounds: () => letGuestRun(h.m, (req.roundMs ?? 50) * 1e6),
      ...(req.maxRounds === undefined ? {} : { maxRounds: req.maxRounds }),
      ...(req.dirtyThreshold === undefined ? {} : { dirtyThreshold: req.dirtyThreshold }),
      ...(req.onRound === undefined ? {} : { onRound: req.onRound }),
    });
    const ready = await wire.readLine('the receiver\'s ready message', peerMs);
    if (ready.startsWith(MIGRATE_FAILED)) throw new ReceiverFailed(`the receiver failed: ${ready.slice(MIGRATE_FAILED.length)}`);
    if (`${ready}\n` !== MIGRATE_READY) throw new MigrateWireError('protocol', `${target} sent ${JSON.stringify(ready.slice(0, 80))} where the ready message was expected`);
    h.m.trace.record(domid, 'toolstack', 'migrate: ready received', 'the receiver holds the domain, paused');
    // Our copy goes out of the way before the receiver may take the name.
    await h.rename(domid, `${name}${AWAY}`);
    renamed = true;
    afterGo = true;
    await wire.write(MIGRATE_GO);
    h.m.trace.record(domid, 'toolstack', 'migrate: go sent', `this copy renamed ${name}${AWAY}`);
    const report = await wire.readLine('the receiver\'s report', peerMs);
    if (report.startsWith(MIGRATE_FAILED)) {
      // It destroyed its copy before saying so: ours is the only one.
      afterGo = false;
      throw new ReceiverFailed(`the receiver could not start the domain: ${report.slice(MIGRATE_FAILED.length)}`);
    }
    const remote = new RegExp(`^${MIGRATE_STARTED}(\\d+)$`).exec(report);
    if (remote === null) {
      throw new MigrateWireError('protocol', `${target} sent ${JSON.stringify(report.slice(0, 80))} where its report was expected`);
    }
    const downtimeMs = Date.now() - suspendedAt;
    h.m.trace.record(domid, 'toolstack', 'migrate: started received', `domid ${remote[1]} on ${target}; downtime ${downtimeMs} ms`);
    wire.end();
    // The domain runs there now: whatever happens to this copy, the migration succeeded.
    await h.destroy(domid).catch((e: unknown) => h.m.log.xen(`d${domid} (${name}): destroying the migrated copy: ${message(e)}`));
    const precopy = res.rounds.filter((x) => x.phase === 'precopy').length;
    h.m.log.xen(`d${domid} (${name}) migrated to ${target} (domid ${remote[1]} there): ${res.rounds.length} rounds, ${res.bytes} bytes, via ${via}`);
    return {
      domid, name, target, via, rounds: res.rounds, precopyRounds: precopy, pages: res.pages, bytes: res.bytes,
      remoteDomid: Number(remote[1]), downtimeMs, totalMs: Date.now() - t0, outcome: 'destroyed',
    };
  } catch (e) {
    // A receiver that gave up says why before it closes; that beats "EPIPE".
    const said = wire.peekLine();
    const why = !(e instanceof ReceiverFailed) && said?.startsWith(MIGRATE_FAILED) === true
      ? `the receiver failed: ${said.slice(MIGRATE_FAILED.length)}`
      : message(e);
    wire.destroy();
    if (afterGo) {
      h.m.trace.record(domid, 'toolstack', 'migrate: failed', `after go, left suspended as ${name}${AWAY}: ${why}`);
      h.m.log.xen(`d${domid} (${name}): ${what} failed after permission to go: ${why}`);
      throw new ToolstackError(`${what} failed in the final handshake (${why}): the receiver may be running the domain; this copy is left suspended as "${name}${AWAY}" (check ${target}, then xl destroy one of them)`);
    }
    if (renamed) await h.rename(domid, name).catch(() => undefined);
    await h.resumeInPlace(domid).catch(() => undefined);
    h.m.trace.record(domid, 'toolstack', 'migrate: failed', `resumed here: ${why}`);
    h.m.log.xen(`d${domid} (${name}): ${what} failed, resumed: ${why}`);
    throw new ToolstackError(`${what} failed, the domain was resumed here: ${why}`);
  } finally {
    req.signal?.removeEventListener('abort', onAbort);
    release();
  }
}

/** Listen on `at` and resolve with the first connection; the listener is closed then. */
function acceptOne(at: HostPort, onListening: ((a: HostPort) => void) | undefined, signal: AbortSignal | undefined): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    let settled = false;
    const finish = (err: Error | null, sock?: net.Socket): void => {
      if (settled) {
        sock?.destroy();
        return;
      }
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      server.close();
      if (err !== null) reject(err);
      else resolve(sock!);
    };
    const onAbort = (): void => finish(new ToolstackError('migrate-receive: given up before a sender connected'));
    server.on('connection', (sock) => {
      sock.on('error', () => undefined); // Wire reports errors; none may reach the event loop
      finish(null, sock);
    });
    server.on('error', (e: NodeJS.ErrnoException) => {
      finish(new ToolstackError(`migrate-receive: cannot listen on ${formatHostPort(at)}: ${e.code ?? e.message}`));
    });
    server.listen({ host: at.host, port: at.port, exclusive: true }, () => {
      const a = server.address() as AddressInfo;
      onListening?.({ host: a.address, port: a.port });
    });
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The chunks of `src`, counting their bytes into `count`. */
async function* counted(src: AsyncIterable<Uint8Array>, count: { bytes: number }): AsyncGenerator<Uint8Array> {
  for await (const c of src) {
    count.bytes += c.length;
    yield c;
  }
}

/**
 * `xl migrate-receive`: listen, take one incoming migration, restore it as
 * `xl restore` does, start it once the sender gives permission. Rejects
 * with a ToolstackError (and leaves no domain) if anything goes wrong
 * before the domain is started.
 */
export async function receiveMigration(h: MachineHost, req: ReceiveRequest): Promise<ReceiveReport> {
  const sock = await acceptOne(req.listen, req.onListening, req.signal);
  const wire = new Wire(sock);
  const from = wire.peer;
  const what = `migrate-receive from ${from}`;
  h.m.trace.steps()('migrate: sender connected', `from ${from}`);
  const peerMs = req.peerTimeoutMs ?? DEFAULT_PEER_MS;
  const paused = req.paused === true;
  let domid: number | undefined;
  let started = false;
  const onAbort = (): void => {
    if (!started) wire.destroy();
  };
  req.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await wire.write(MIGRATE_BANNER);
    const count = { bytes: 0 };
    let rest = 0;
    const { adopted, pages } = await h.withBuildLock(async () => {
      let rd;
      try {
        rd = await restoreDomain(h.m, counted(wire.chunks(peerMs, 'the migration stream'), count), {
          onStep: h.m.trace.steps(),
          afterEnd: (bytes) => {
            rest = bytes.length;
            wire.unread(bytes);
          },
        });
      } catch (e) {
        // The sender stopping (its guest did not suspend, its machine died) ends the stream early.
        const short = (e instanceof StreamError && e.code === 'truncated') || (e instanceof MigrateWireError && e.code !== 'timeout');
        if (short) throw new ToolstackError(`the stream was cut short: ${e.message}`);
        if (e instanceof StreamError || e instanceof RestoreError || e instanceof MigrateWireError) throw new ToolstackError(e.message);
        throw e;
      }
      const a = await h.adoptRestored(rd, {
        what: 'the incoming domain', source: `the stream from ${from}`, paused: true, name: (saved) => `${saved}${INCOMING}`,
      });
      return { adopted: a, pages: rd.pages };
    });
    domid = adopted.domid;
    const name = adopted.name.slice(0, -INCOMING.length);
    await wire.write(MIGRATE_READY);
    h.m.trace.record(domid, 'toolstack', 'migrate: ready sent', `paused as ${adopted.name}`);
    await wire.expect(MIGRATE_GO, 'permission to start the domain', peerMs);
    started = true;
    h.m.trace.record(domid, 'toolstack', 'migrate: go received', `renaming ${adopted.name} to ${name}${paused ? ', left paused (-p)' : ', unpausing'}`);
    await h.rename(domid, name);
    if (!paused) h.unpause(domid);
    h.m.poke();
    const bytes = count.bytes - rest;
    h.m.log.xen(`d${domid} (${name}) migrated in from ${from}: ${pages} pages, ${bytes} bytes${paused ? ', paused' : ''}`);
    // Past this point the domain is ours whatever becomes of the sender.
    const reported = await wire.write(`${MIGRATE_STARTED}${domid}\n`).then(() => true, (e: unknown) => {
      h.m.log.xen(`d${domid} (${name}): could not report the start to ${from}: ${message(e)}`);
      return false;
    });
    if (reported) h.m.trace.record(domid, 'toolstack', 'migrate: started sent', `"${MIGRATE_STARTED}${domid}" to ${from}`);
    wire.end();
    return { domid, name, from, pages, bytes, paused };
  } catch (e) {
    if (domid !== undefined) await h.destroy(domid).catch(() => undefined);
    const why = message(e);
    h.m.trace.record(domid ?? DOMID_INVALID, 'toolstack', 'migrate: failed', domid === undefined ? why : `d${domid} destroyed here: ${why}`);
    await wire.write(`${MIGRATE_FAILED}${oneLine(why)}\n`).catch(() => undefined);
    wire.end();
    h.m.log.xen(`${what} failed: ${why}`);
    throw new ToolstackError(`${what} failed, no domain was left here: ${why}`);
  } finally {
    req.signal?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------
// Checkpointing (Remus-style): `xl remus DOM HOST:PORT` sends one checkpointed
// stream (remusSaveDomain) to `xl migrate-receive -r`, after the same banner.
// The primary keeps running; the receiver holds the last complete checkpoint
// and, once the stream ends or breaks, starts the domain from it (failover).
// No handshake follows the stream: the receiver cannot tell a primary that
// stopped checkpointing from one that died.

export interface RemusRequest {
  readonly via?: SuspendVia;
  readonly timeoutMs?: number;
  readonly peerTimeoutMs?: number;
  /** ms the guest runs between two checkpoints (default 200). */
  readonly intervalMs?: number;
  /** Stop after this many checkpoints (default: until `signal`). */
  readonly checkpoints?: number;
  readonly onCheckpoint?: (cp: RemusCheckpoint) => void;
  /** Stop: the next checkpoint is the last. */
  readonly signal?: AbortSignal;
}

export interface RemusReport {
  readonly domid: number;
  readonly name: string;
  readonly target: string;
  readonly checkpoints: number;
  readonly bytes: number;
}

/** `xl remus`: checkpoint the domain to `to` until told to stop; the domain keeps running here. */
export async function remusDomain(h: MachineHost, domid: number, to: HostPort, req: RemusRequest = {}): Promise<RemusReport> {
  const peerMs = req.peerTimeoutMs ?? DEFAULT_PEER_MS;
  const { name, target, what, release, wire } = await connectOutgoing(h, domid, to, 'checkpointing', peerMs);
  try {
    const via = req.via ?? await h.defaultSuspendVia(domid);
    await wire.expect(MIGRATE_BANNER, 'the banner of xl migrate-receive -r', peerMs);
    const res = await remusSaveDomain(h.savingMachine(), domid, wire.socket, {
      ...h.imageOptions(domid, 'xl remus'),
      suspend: () => h.suspendGuest(domid, via, req.timeoutMs ?? 10_000, 'suspending for a checkpoint'),
      resume: () => h.resumeInPlace(domid),
      betweenRounds: () => letGuestRun(h.m, 50e6),
      interval: () => letGuestRun(h.m, (req.intervalMs ?? 200) * 1e6),
      ...(req.checkpoints === undefined ? {} : { checkpoints: req.checkpoints }),
      ...(req.signal === undefined ? {} : { signal: req.signal }),
      onCheckpoint: (cp) => {
        h.m.trace.record(domid, 'toolstack', 'remus: checkpoint sent', `${cp.n}: ${cp.pages} pages${cp.last ? ', the last' : ''}`);
        req.onCheckpoint?.(cp);
      },
    });
    wire.end();
    h.m.log.xen(`d${domid} (${name}): remus to ${target} stopped after ${res.checkpoints.length} checkpoints, running here`);
    return { domid, name, target, checkpoints: res.checkpoints.length, bytes: res.bytes };
  } catch (e) {
    wire.destroy();
    await h.resumeInPlace(domid).catch(() => undefined);
    h.m.log.xen(`d${domid} (${name}): ${what} failed: ${message(e)}`);
    throw new ToolstackError(`${what} failed, the domain keeps running here: ${message(e)}`);
  } finally {
    release();
  }
}

export interface CheckpointedReceiveReport extends ReceiveReport {
  /** The checkpoint the domain was started from. */
  readonly checkpoint: number;
  /** 'end': the sender closed the stream; 'broken': it broke (failover). */
  readonly ended: 'end' | 'broken';
  readonly why?: string;
}

/** `xl migrate-receive -r`: take one checkpointed stream, start the domain from its last complete checkpoint. */
export async function receiveCheckpointed(
  h: MachineHost, req: ReceiveRequest & { readonly onCheckpoint?: (n: number) => void },
): Promise<CheckpointedReceiveReport> {
  const sock = await acceptOne(req.listen, req.onListening, req.signal);
  const wire = new Wire(sock);
  const from = wire.peer;
  const peerMs = req.peerTimeoutMs ?? DEFAULT_PEER_MS;
  const paused = req.paused === true;
  let domid: number | undefined;
  const onAbort = (): void => wire.destroy();
  req.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await wire.write(MIGRATE_BANNER);
    const count = { bytes: 0 };
    const { adopted, rd } = await h.withBuildLock(async () => {
      let d;
      try {
        d = await restoreDomain(h.m, counted(wire.chunks(peerMs, 'the checkpointed stream'), count), {
          checkpointed: true, onStep: h.m.trace.steps(), afterEnd: () => undefined,
          ...(req.onCheckpoint === undefined ? {} : { onCheckpoint: req.onCheckpoint }),
        });
      } catch (e) {
        if (e instanceof StreamError || e instanceof RestoreError || e instanceof MigrateWireError) throw new ToolstackError(e.message);
        throw e;
      }
      const a = await h.adoptRestored(d, { what: 'the checkpointed domain', source: `the stream from ${from}`, paused: true, name: (saved) => saved });
      return { adopted: a, rd: d };
    });
    domid = adopted.domid;
    if (!paused) h.unpause(domid);
    h.m.poke();
    wire.destroy();
    const cp = rd.checkpoint ?? { n: 0, ended: 'end' as const };
    h.m.log.xen(`d${domid} (${adopted.name}) started from checkpoint ${cp.n} of the stream from ${from} (stream ${cp.ended === 'end' ? 'ended' : 'broke'})`);
    return {
      domid, name: adopted.name, from, pages: rd.pages, bytes: count.bytes, paused, checkpoint: cp.n, ended: cp.ended, ...(cp.why === undefined ? {} : { why: cp.why }),
    };
  } catch (e) {
    if (domid !== undefined) await h.destroy(domid).catch(() => undefined);
    wire.destroy();
    const why = message(e);
    h.m.log.xen(`migrate-receive -r from ${from} failed: ${why}`);
    throw new ToolstackError(`migrate-receive -r from ${from} failed, no domain was left here: ${why}`);
  } finally {
    req.signal?.removeEventListener('abort', onAbort);
  }
}

/*
 * Issue 7's proofs: a save and a restore into another machine (the
 * toolstack's, through tests/helpers/save-restore.ts), the devices'
 * Connected states, and a cycle's checks; and what a proof looks at to
 * show an injected event was real: the frontends' shared rings and the
 * store ring as the guest's memory holds them, dom0's backends held back,
 * the guest's watches and timers.
 */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { blkif_sring } from '../../hypervisor/public/io/blkif.js';
import { netif_rx_sring, netif_tx_sring } from '../../hypervisor/public/io/netif.js';
import { MASK_XENSTORE_IDX, XENSTORE_RING_SIZE, XS_WATCH_EVENT, xenstore_domain_interface } from '../../hypervisor/public/io/xs_wire.js';
import { VIRQ_TIMER } from '../../hypervisor/public/xen.js';
import type { ByteMem } from '../../hypervisor/public/layout.js';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { checkImage } from '../../hypervisor/tools/stream/check.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { latin1, XS_HEADER_SIZE } from '../../hypervisor/tools/xenstored/wire.js';
import { MiB, e2eHost, node } from '../e2e/fixture.js';
import { saveBytes, restoreBytes } from '../helpers/save-restore.js';

export { suspended } from '../helpers/save-restore.js';

/**
 * `xl save` of a suspended domain into bytes with `cfg` as its config (the
 * domain goes). Not checked here: the proofs run both checkers themselves.
 */
export function saveImage(h: MachineHost, domid: number, cfg: DomainConfig): Promise<Uint8Array> {
  return saveBytes(h, domid, { config: cfg });
}

/** A new machine (its own frames, xenstored, backends), the kernel linked afresh. */
export function nextHost(t: ExecutionContext, seed: number): Promise<MachineHost> {
  return e2eHost(t, [defineNetbsdImage()], { machine: { memoryBytes: 256 * MiB, clock: 'simulated', scrambleSeed: seed } });
}

/** `xl restore CFG IMAGE` into `h`: the new domain, its devices those of `cfg`, running. */
export function restoreImage(h: MachineHost, bytes: Uint8Array, cfg: DomainConfig): Promise<number> {
  return restoreBytes(h, bytes, { config: cfg });
}

export const VBD = 'device/vbd/51712/state';
export const VIF = 'device/vif/0/state';

/** xbd0 (and xennet0 when `net`) Connected (4), frontend and backend. */
export function connected(h: MachineHost, d: number, net: boolean): boolean {
  const fe = [VBD, ...(net ? [VIF] : [])];
  return fe.every((p) => {
    if (node(h, `${domainPath(d)}/${p}`) !== '4') return false;
    const be = node(h, `${domainPath(d)}/${p.replace(/state$/, 'backend')}`);
    return be !== undefined && node(h, `${be}/state`) === '4';
  });
}

/** checkImage's verdict, as a message ('' when the image is good). */
export async function imageProblems(bytes: Uint8Array): Promise<string> {
  const r = await checkImage(bytes);
  return r.ok ? '' : r.errors.map((e) => JSON.stringify(e)).join('\n');
}

export const VERIFY_TOOL = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
export const VERIFY_PYTHONPATH = process.env['XEN_PYTHONPATH'] ?? '/usr/lib/xen-4.17/lib/python';

/** Xen's verify-stream-v2 -f xl on an image; throws when the tool or its modules are missing. */
export function xenVerify(dir: string, bytes: Uint8Array, name: string): { status: number | null; out: string } {
  if (!existsSync(VERIFY_TOOL)) throw new Error(`${VERIFY_TOOL} is missing`);
  if (!existsSync(join(VERIFY_PYTHONPATH, 'xen', 'migration', 'libxc.py'))) throw new Error(`Xen's python modules are missing under ${VERIFY_PYTHONPATH}`);
  const file = join(dir, `${name}.img`);
  writeFileSync(file, bytes);
  const r = spawnSync(VERIFY_TOOL, ['-v', '-f', 'xl', '-i', file], {
    env: { ...process.env, PYTHONPATH: VERIFY_PYTHONPATH }, encoding: 'utf8', timeout: 120_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

// ---------------------------------------------------------------------------
// Evidence that an injected event was real

/** The shared indices of a frontend's ring, read from the guest's memory. */
export interface SharedIndices {
  readonly reqProd: number;
  readonly rspProd: number;
}

/** Requests the frontend has published and the backend has not answered yet. */
export const unanswered = (r: SharedIndices | undefined): number => (r === undefined ? 0 : (r.reqProd - r.rspProd) >>> 0);

/** Responses published between two readings of one ring. */
export const published = (a: SharedIndices | undefined, b: SharedIndices | undefined): number =>
  (a === undefined || b === undefined ? 0 : (b.rspProd - a.rspProd) >>> 0);

const SRINGS = { blk: blkif_sring, tx: netif_tx_sring, rx: netif_rx_sring } as const;

/**
 * The ring whose page the frontend granted in `<dev>/<refNode>`: the grant
 * entry in Xen's table names the frame, which must be the guest's own.
 * Undefined when the node, the grant or the frame is not there.
 */
function sharedRing(h: MachineHost, d: number, dev: string, refNode: string, kind: keyof typeof SRINGS): SharedIndices | undefined {
  const ref = node(h, `${domainPath(d)}/${dev}/${refNode}`);
  if (ref === undefined || !/^\d+$/.test(ref)) return undefined;
  const e = h.m.gnttab.readEntry(d, Number(ref));
  if (e === undefined || e.domid !== 0 || h.m.frames.owner[e.frame] !== d) return undefined;
  const v = SRINGS[kind].view(h.m.memory.frameMem(e.frame), 0);
  return { reqProd: v.get('req_prod'), rspProd: v.get('rsp_prod') };
}

/** xbd0's ring and xennet0's TX and RX rings, as the guest sees them. */
export interface FrontRings {
  readonly blk: SharedIndices | undefined;
  readonly tx: SharedIndices | undefined;
  readonly rx: SharedIndices | undefined;
}

export function frontRings(h: MachineHost, d: number): FrontRings {
  const vbd = VBD.replace(/\/state$/, '');
  const vif = VIF.replace(/\/state$/, '');
  return {
    blk: sharedRing(h, d, vbd, 'ring-ref', 'blk'),
    tx: sharedRing(h, d, vif, 'tx-ring-ref', 'tx'),
    rx: sharedRing(h, d, vif, 'rx-ring-ref', 'rx'),
  };
}

/**
 * Hold dom0's blkback and netback: their poll() does nothing (as
 * tests/e2e/restore.test.ts stubs blkback's), so requests the guest
 * publishes stay on its rings, unanswered; the devices stay kicked, so
 * nothing is lost. The returned function lets them poll again.
 */
export function holdBackends(h: MachineHost): () => void {
  const { blkback, netback } = h.backends;
  blkback.poll = () => 0;
  netback.poll = () => 0;
  return () => {
    Reflect.deleteProperty(blkback, 'poll');
    Reflect.deleteProperty(netback, 'poll');
  };
}

/** The guest's store ring: where xenstored writes replies and watch events next, and what it still queues. */
export interface StoreRingMark {
  readonly rspProd: number;
  readonly queued: number;
}

function storeRing(h: MachineHost, d: number): { view: ReturnType<typeof xenstore_domain_interface.view>; mem: ByteMem } | undefined {
  const mfn = Number(h.xenstored.state.domains.get(d)?.mfn ?? NaN);
  if (!Number.isSafeInteger(mfn) || h.m.frames.owner[mfn] !== d) return undefined;
  const mem = h.m.memory.frameMem(mfn);
  return { view: xenstore_domain_interface.view(mem, 0), mem };
}

export function storeMark(h: MachineHost, d: number): StoreRingMark | undefined {
  const r = storeRing(h, d);
  if (r === undefined) return undefined;
  return { rspProd: r.view.get('rsp_prod'), queued: h.xenstored.ringOf(toDomId(d))?.queued ?? 0 };
}

/**
 * The watch events xenstored wrote into the guest's response ring since
 * `from`: each a XS_WATCH_EVENT header followed by "path\0token\0", found in
 * the bytes between the two rsp_prod values (a message is written in
 * order, so the header of an event made since `from` is in there too).
 */
export function watchEventsSince(h: MachineHost, d: number, from: StoreRingMark): string[] {
  const r = storeRing(h, d);
  if (r === undefined) return [];
  const n = (r.view.get('rsp_prod') - from.rspProd) >>> 0;
  if (n > XENSTORE_RING_SIZE) return [];
  const rspAt = r.view.addr('rsp');
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = r.mem.getUint8(rspAt + MASK_XENSTORE_IDX(from.rspProd + i));
  const dv = new DataView(bytes.buffer);
  const out: string[] = [];
  // struct xsd_sockmsg: type, req_id, tx_id, len (u32 each), then the payload.
  for (let o = 0; o + XS_HEADER_SIZE <= n; o++) {
    if (dv.getUint32(o, true) !== XS_WATCH_EVENT) continue;
    const len = dv.getUint32(o + 12, true);
    if (len === 0 || len > n - o - XS_HEADER_SIZE) continue;
    const fields = latin1(bytes.subarray(o + XS_HEADER_SIZE, o + XS_HEADER_SIZE + len)).split('\0');
    if (fields.length === 3 && fields[2] === '') out.push(fields[0]!);
  }
  return out;
}

/**
 * The path the guest's connection would be told for a write to `path`
 * (absolute), through the first of its watches that covers it; undefined
 * when it watches nothing there.
 */
export function watchedAs(h: MachineHost, d: number, path: string): string | undefined {
  const st = h.xenstored.state;
  const conn = st.domains.get(d)?.conn;
  const c = conn === undefined ? undefined : st.conns.get(conn);
  const w = c?.watches.find((x) => path === x.path || path.startsWith(`${x.path}/`));
  return w === undefined ? undefined : path.slice(w.prefixLen);
}

/** The guest's VIRQ_TIMER port on vCPU 0 and whether it is pending. */
export function timerVirq(h: MachineHost, d: number): { port: number; pending: boolean } | undefined {
  const c = h.m.evtchn.channels(d).find((x) => x.virq === VIRQ_TIMER && x.vcpu === 0);
  return c === undefined ? undefined : { port: c.localPort, pending: c.pending };
}

/*
 * The PV domain builder (`xl create`), in the steps of libxc's x86_64 PV
 * builder (xc_dom_*) and libxl's domain creation around it:
 *
 *   createdomain (paused) -> max_mem -> populate_physmap (one fresh MFN per
 *   PFN, M2P set by the hypervisor) -> P2M array -> event channels (store,
 *   console, ctrl_if: unbound in the guest, remote dom0) -> start_info ->
 *   bootstrap page tables -> pin the L4 -> grant entries 0 (console) and 1
 *   (xenstore) -> set_kernel -> vCPU 0 context -> xenstore nodes ->
 *   XS_INTRODUCE -> xenconsoled, ctrl_if -> disks and vifs (their nodes
 *   written and their backends waiting, tools/backend) -> unpause (unless
 *   paused).
 *
 * Everything goes through the toolstack handle (`machine.xc`: real
 * hypercalls issued as dom0, foreign frame writes) except seeding the
 * grant entries, which uses the grant table's host API as libxc's
 * xc_dom_gnttab_seed writes the table frame directly.
 *
 * All or nothing: when any step fails, what was made is undone (services
 * detached, nodes removed, the domain destroyed so its frames go back) and
 * the BuildError says which step failed and why.
 */
import { randomUUID } from 'node:crypto';
import type { KernelImage } from '../../public/cpu.js';
import { MMUEXT_PIN_L4_TABLE } from '../../public/xen.js';
import { GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GTF_permit_access } from '../../public/grant_table.js';
import { PAGE_SIZE, domid as toDomId, evtchnPort, mfn as toMfn, type DomId, type EvtchnPort, type Mfn } from '../../public/types.js';
import type { Machine } from '../../xen/machine.js';
import type { Dom0Result } from '../../dom0/console/env.js';
import type { XsClient } from '../xenstored/client.js';
import type { DomainConfig } from '../xl/config.js';
import { BuildError, check } from './errors.js';
import { planLayout, type DomainLayout } from './layout.js';
import { buildPageTables } from './pagetables.js';
import { bootContext, commandLine, startInfoPage } from './start-info.js';
import { introduceDomain, removeDomainNodes, writeDomainNodes } from './xenstore.js';

/** What the builder needs from dom0 besides the hypervisor. */
export interface BuilderServices {
  /** dom0's xenstore connection (privileged). */
  readonly xs: XsClient;
  /** Serve the domain's console page (xenconsoled). */
  attachConsole?(domid: DomId, mfn: Mfn, port: EvtchnPort): Dom0Result;
  /** Serve the domain's ctrl_if page (the domain controller). */
  attachCtrlIf?(domid: DomId, mfn: Mfn, port: EvtchnPort): Dom0Result;
  /** Stop serving the domain (console, ctrl_if, dom0's store port); called before its memory goes. */
  detach?(domid: number): void;
  /**
   * Add the config's disks and vifs (libxl's device adding): nodes written,
   * each backend waiting for its frontend. Rejects with a BuildError
   * ('devices') naming the device that could not be added.
   */
  attachDevices?(domid: number, cfg: DomainConfig): Promise<void>;
  /** Take the domain's devices away (backends, backend nodes, forwards); idempotent. */
  detachDevices?(domid: number): Promise<void>;
  /** The domain is gone from the hypervisor: tell xenstored (@releaseDomain). */
  domainGone?(domid: number): void;
  /** The value of console/output for a domain (default "pty"). */
  consoleOutput?(domid: number): string;
}

export interface BuildOptions {
  /** `xl create -p`: leave the domain paused. */
  readonly paused?: boolean;
  /** The domain's UUID (default: a random one). */
  readonly uuid?: string;
  /** Unix seconds for /vm/U/start_time (default: now). */
  readonly startTime?: number;
}

/** What the builder made: everything the toolstack needs later (console, shutdown, save, destroy). */
export interface BuiltDomain {
  readonly domid: number;
  readonly name: string;
  readonly uuid: string;
  readonly config: DomainConfig;
  readonly image: KernelImage;
  readonly layout: DomainLayout;
  /** p2m[pfn] = MFN, as written into the guest's mfn_list. */
  readonly p2m: readonly number[];
  readonly sharedInfoMfn: number;
  readonly startInfoMfn: number;
  readonly storeMfn: number;
  readonly storePort: number;
  readonly consoleMfn: number;
  readonly consolePort: number;
  readonly ctrlIfMfn: number;
  readonly ctrlIfPort: number;
  readonly l4Mfn: number;
  readonly cmdLine: string;
}

/** Frames a domain takes beyond its RAM: shared_info and the first grant-table frame. */
export const DOMAIN_OVERHEAD_PAGES = 2;
/** libxl's LIBXL_MAXMEM_CONSTANT: max_mem is the target plus 1 MiB of slack. */
export const MAXMEM_SLACK_KB = 1024;
/** PFNs per populate_physmap call (dom0's argument arena holds 8 bytes per PFN). */
const POPULATE_BATCH = 32768;

const MiB = 2 ** 20;

/** The kernel image a config names, or a BuildError listing the images this machine has. */
export function findImage(m: Machine, name: string): KernelImage {
  const img = m.image(name);
  if (img !== undefined) return img;
  const known = m.imageNames;
  throw new BuildError('kernel', `unknown kernel "${name}" (this machine can boot: ${known.length === 0 ? 'no images at all' : known.join(', ')})`);
}

/** A UUID's 16 bytes (xen_domain_handle_t). */
export function uuidBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new BuildError('config', `uuid ${uuid} is not a UUID`);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Fail early, before anything exists, when the machine cannot hold the domain. */
function checkFreeMemory(m: Machine, cfg: DomainConfig, nrPages: number): void {
  const info = m.xc.physinfo();
  if (typeof info === 'number') check('memory', info, 'physinfo');
  else if (nrPages + DOMAIN_OVERHEAD_PAGES > info.freePages) {
    const freeMiB = Math.floor((info.freePages * PAGE_SIZE) / MiB);
    const totalMiB = Math.floor((info.totalPages * PAGE_SIZE) / MiB);
    throw new BuildError('memory', `memory = ${cfg.memory} MiB does not fit: the machine has ${freeMiB} MiB free of ${totalMiB} MiB`);
  }
}

/** Write a whole frame of the domain as the privileged builder. */
function writeFrame(m: Machine, domid: number, mfn: number, bytes: Uint8Array, step: 'p2m' | 'start_info' | 'pagetables', what: string): void {
  const f = m.xc.foreignFrame(domid, mfn, true);
  if (typeof f === 'number') check(step, f, `mapping ${what} (mfn 0x${mfn.toString(16)})`);
  else check(step, f.write(0, bytes), `writing ${what} (mfn 0x${mfn.toString(16)})`);
}

function populate(m: Machine, domid: number, nrPages: number): number[] {
  const p2m: number[] = [];
  for (let at = 0; at < nrPages; at += POPULATE_BATCH) {
    const pfns = Array.from({ length: Math.min(POPULATE_BATCH, nrPages - at) }, (_, i) => at + i);
    const mfns = m.xc.populatePhysmap(domid, pfns);
    if (typeof mfns === 'number') check('populate', mfns < 0 ? mfns : -12, `populate_physmap of PFNs ${at}..${at + pfns.length - 1}`);
    else p2m.push(...mfns);
  }
  return p2m;
}

function writeP2m(m: Machine, domid: number, l: DomainLayout, p2m: readonly number[]): void {
  const perPage = PAGE_SIZE / 8;
  for (let page = 0; page < l.p2mPages; page++) {
    const bytes = new Uint8Array(PAGE_SIZE);
    const dv = new DataView(bytes.buffer);
    for (let j = 0; j < perPage; j++) {
      const pfn = page * perPage + j;
      if (pfn >= p2m.length) break;
      dv.setBigUint64(8 * j, BigInt(p2m[pfn]!), true);
    }
    writeFrame(m, domid, p2m[l.p2mPfn + page]!, bytes, 'p2m', `P2M page ${page}`);
  }
}

/**
 * Build and start a domain from an xl config. Resolves with what was
 * built; rejects with a BuildError after undoing everything.
 */
export async function buildDomain(m: Machine, svc: BuilderServices, cfg: DomainConfig, opts: BuildOptions = {}): Promise<BuiltDomain> {
  const image = findImage(m, cfg.kernel);
  const nrPages = cfg.memory * (MiB / PAGE_SIZE);
  const layout = planLayout(image, nrPages);
  checkFreeMemory(m, cfg, nrPages);
  const uuid = opts.uuid ?? randomUUID();
  const handle = uuidBytes(uuid);

  const domid = m.xc.createDomain({ maxVcpus: cfg.vcpus, handle });
  check('createdomain', domid, 'XEN_DOMCTL_createdomain');
  let nodesWritten = false;
  try {
    const built = buildMemory(m, domid, cfg, image, layout, uuid);
    nodesWritten = true;
    await writeDomainNodes(svc.xs, {
      domid, name: cfg.name, uuid, kernel: image.name, vcpus: cfg.vcpus,
      targetKb: cfg.memory * 1024, maxMemKb: cfg.memory * 1024 + MAXMEM_SLACK_KB,
      storeMfn: built.storeMfn, storePort: built.storePort, consoleMfn: built.consoleMfn, consolePort: built.consolePort,
      consoleOutput: svc.consoleOutput?.(domid) ?? 'pty',
      startTime: opts.startTime ?? Math.floor(Date.now() / 1000),
    });
    await introduceDomain(svc.xs, domid, built.storeMfn, built.storePort);
    const dom = toDomId(domid);
    attach('console', svc.attachConsole?.(dom, toMfn(built.consoleMfn), evtchnPort(built.consolePort)));
    attach('ctrl_if', svc.attachCtrlIf?.(dom, toMfn(built.ctrlIfMfn), evtchnPort(built.ctrlIfPort)));
    await svc.attachDevices?.(domid, cfg);
    if (opts.paused !== true) check('unpause', m.xc.unpauseDomain(domid), 'unpause');
    m.log.xen(`d${domid} built: ${cfg.name}, kernel ${image.name}, ${nrPages} pages, start_info at pfn ${layout.startInfoPfn}`);
    return built;
  } catch (e) {
    await teardownDomain(m, svc, domid, nodesWritten ? uuid : undefined);
    if (e instanceof BuildError) throw e;
    throw new BuildError('config', `building domain ${cfg.name}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function attach(step: 'console' | 'ctrl_if', r: Dom0Result | undefined): void {
  if (r !== undefined && !r.ok) throw new BuildError(step, r.error);
}

/** The synchronous part: memory, tables, ports, grants, context. */
function buildMemory(m: Machine, domid: number, cfg: DomainConfig, image: KernelImage, layout: DomainLayout, uuid: string): BuiltDomain {
  const nrPages = layout.nrPages;
  check('max_mem', m.xc.setMaxMem(domid, cfg.memory * 1024 + MAXMEM_SLACK_KB), 'XEN_DOMCTL_max_mem');
  const p2m = populate(m, domid, nrPages);
  writeP2m(m, domid, layout, p2m);

  const storePort = check('evtchn', m.xc.allocUnbound(0, domid), 'EVTCHNOP_alloc_unbound (xenstore)');
  const consolePort = check('evtchn', m.xc.allocUnbound(0, domid), 'EVTCHNOP_alloc_unbound (console)');
  const ctrlIfPort = check('evtchn', m.xc.allocUnbound(0, domid), 'EVTCHNOP_alloc_unbound (ctrl_if)');

  const info = m.xc.getDomainInfo(domid);
  if (info === undefined) throw new BuildError('start_info', `domain ${domid} vanished while being built`);
  const mfnAt = (pfn: number): number => p2m[pfn]!;
  const cmdLine = commandLine(cfg.extra, layout.ctrlIfPfn, ctrlIfPort);
  const startInfo = startInfoPage(layout, {
    sharedInfoMfn: info.sharedInfoFrame,
    storeMfn: mfnAt(layout.storePfn), storePort,
    consoleMfn: mfnAt(layout.consolePfn), consolePort,
    flags: 0,
    cmdLine,
  });
  writeFrame(m, domid, mfnAt(layout.startInfoPfn), startInfo, 'start_info', 'start_info');

  for (const t of buildPageTables(layout, p2m)) writeFrame(m, domid, mfnAt(t.pfn), t.bytes, 'pagetables', `page table at pfn ${t.pfn}`);
  const l4Mfn = mfnAt(layout.l4Pfn);
  check('pin', m.xc.mmuextOp(domid, [{ cmd: MMUEXT_PIN_L4_TABLE, arg1: l4Mfn }]), 'MMUEXT_PIN_L4_TABLE');

  const seed = (ref: number, frame: number): void => {
    check('gnttab', m.gnttab.seedEntry(domid, ref, { flags: GTF_permit_access, domid: 0, frame }), `seeding grant entry ${ref}`);
  };
  seed(GNTTAB_RESERVED_CONSOLE, mfnAt(layout.consolePfn));
  seed(GNTTAB_RESERVED_XENSTORE, mfnAt(layout.storePfn));

  check('set_kernel', m.xc.setKernel(domid, image.name), `set_kernel ${image.name}`);
  check('vcpu', m.xc.setVcpuContext(domid, 0, bootContext(layout, image.entry, l4Mfn)), 'setvcpucontext of vCPU 0');

  return {
    domid, name: cfg.name, uuid, config: cfg, image, layout, p2m,
    sharedInfoMfn: info.sharedInfoFrame,
    startInfoMfn: mfnAt(layout.startInfoPfn),
    storeMfn: mfnAt(layout.storePfn), storePort,
    consoleMfn: mfnAt(layout.consolePfn), consolePort,
    ctrlIfMfn: mfnAt(layout.ctrlIfPfn), ctrlIfPort,
    l4Mfn, cmdLine,
  };
}

/**
 * Take a domain down as libxl does: dom0 stops serving it (console,
 * ctrl_if, then its devices: rings unmapped and backend nodes removed), its
 * xenstore paths go, the hypervisor destroys it (every frame back to the
 * free pool), then xenstored hears it is gone. `uuid` undefined: no nodes
 * were written.
 */
export async function teardownDomain(m: Machine, svc: BuilderServices, domid: number, uuid: string | undefined): Promise<void> {
  svc.detach?.(domid);
  await svc.detachDevices?.(domid).catch(() => undefined);
  if (uuid !== undefined) await removeDomainNodes(svc.xs, domid, uuid).catch(() => undefined);
  if (m.domain(domid) !== undefined) m.xc.destroyDomain(domid);
  svc.domainGone?.(domid);
}

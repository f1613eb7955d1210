/*
 * xennet on the small harness (tests/guest/harness.ts), with no hypervisor
 * but everything a frontend talks to made real enough:
 *
 *  - xenstore: the real xenstored, its ring in a page of guest memory
 *    (as tests/xenbus/fixture.ts does), xenbus0 attached under a test root;
 *  - event channels: a FakeCpu that hands out ports for
 *    EVTCHNOP_alloc_unbound, routes EVTCHNOP_send to whoever bound the
 *    port, and honours unmask; events reach the guest between entries
 *    through evtchn_do_event when the port's mask bit is clear;
 *  - grants: the guest's grant table is one page of guest memory (xengnt's
 *    state set up as setup_table would have), and the P2M maps each PFN to
 *    MFN_BASE + PFN (so a PFN used as an MFN shows);
 *  - a backend host over that memory (grant copies and ring mapping that
 *    check the grant entries like Xen, GTF_reading|GTF_writing while a ring
 *    is mapped): the real netback engine (hypervisor/dom0/netback) runs on
 *    it, plugged into a real bridge with dom0's endpoint (10.0.0.1); or a
 *    test drives the rings itself through the same host (raw backend).
 *
 * The backend's xenbus side is a small agent here: it writes the vif's
 * backend nodes (netback's own list, plus `ip`), and follows the
 * frontend's state with reads between guest entries.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, u64, char, type ByteMem } from '../../hypervisor/public/layout.js';
import { __HYPERVISOR_event_channel_op } from '../../hypervisor/public/xen.js';
import { EVTCHNOP_send, EVTCHNOP_alloc_unbound, EVTCHNOP_unmask, EVTCHNOP_close, evtchn_send, evtchn_alloc_unbound, evtchn_unmask, evtchn_close } from '../../hypervisor/public/event_channel.js';
import { GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing, GTF_type_mask } from '../../hypervisor/public/grant_table.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import { vaFromCanonical, domid as toDomId, type DomId, type GrantRef, type EvtchnPort } from '../../hypervisor/public/types.js';
import { XsClient } from '../../hypervisor/tools/xenstored/client.js';
import { Xenstored } from '../../hypervisor/tools/xenstored/server.js';
import type { XsRingTransport } from '../../hypervisor/tools/xenstored/ring.js';
import { Bridge } from '../../hypervisor/dom0/net/bridge.js';
import { Dom0Endpoint } from '../../hypervisor/dom0/net/endpoint.js';
import { Netback } from '../../hypervisor/dom0/netback/netback.js';
import type { Vif } from '../../hypervisor/dom0/netback/vif.js';
import { parseFrontendNodes } from '../../hypervisor/dom0/netback/nodes.js';
import { err, ok, type BackendHost, type BoundChannel, type MappedRing, type Outcome } from '../../hypervisor/dom0/backend-host.js';
import { KERNBASE, PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { xmd } from '../../arch/xen/include/xen.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { XEN_KSYMTABS } from '../../arch/xen/conf/files.xen.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { events_default_setup } from '../../arch/xen/xen/evtchn.js';
import { XENNET_KSYMTABS, XENNET_CFDATA } from '../../arch/xen/xen/if_xennet_xenbus.js';
import { xennet_view } from '../../arch/xen/xen/xennet_ring.js';
import { XENBUS_KSYMTABS, XENBUS_CFDATA } from '../../arch/xen/xenbus/xenbus.js';
import { xenbus_softc_of } from '../../arch/xen/xenbus/xenbus_var.js';
import { xenbus_softc_init, xenbus_start, xenbus_boot_queue } from '../../arch/xen/xenbus/xenbus_probe.js';
import { ksymtab, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { config_cfdata_attach, config_rootfound, config_found, device_private, device_lookup } from '../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../sys/kern/kern_pmf.js';
import { kmem_zalloc } from '../../sys/kern/subr_kmem.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { msgbuf_read } from '../../sys/kern/subr_log.js';
import { vptr_set, vu64_set } from '../../sys/lib/libkern/libkern.js';
import { aprint_normal } from '../../sys/kern/subr_prf.js';
import type { CfDesc } from '../../sys/sys/device.js';
import { NET_KSYMTABS } from '../../sys/net/net_conf.js';
import { FakeCpu, FlatMem, Harness } from '../guest/harness.js';

export const DOMID = 3;
export const STORE_PORT = 7;
export const MFN_BASE = 0x40000;
export const GUEST_MAC = '00:16:3e:00:00:02';
export const GUEST_IP = '10.0.0.2';
export const FE = `/local/domain/${DOMID}/device/vif/0`;
export const BE = `/local/domain/0/backend/vif/${DOMID}/0`;
const MEM_PAGES = 2048;
/** Nanoseconds per harness tick (HZ = 100). */
export const TICK_NS = 10_000_000;

const xnt_attach_args = struct('struct xnt_attach_args', { xa_device: array(char, 16), xnt_intf: u64, xnt_port: u32 });

/** Test root and xenbus attach (hypervisor0's job, minus start_info). */
const fixtureSyms = ksymtab({
  xnt_root_match(): number {
    return 1;
  },
  xnt_root_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    aprint_normal(cpu, '\n');
    config_found(cpu, self, aux);
  },
  xnt_xenbus_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    aprint_normal(cpu, ': Xen Virtual Bus Interface\n');
    const sc = device_private(cpu, self);
    xenbus_softc_init(cpu, sc, self);
    pmf_device_register(cpu, self, 'xenbus_suspend', 'xenbus_resume');
    const a = xnt_attach_args.view(cpu.mem, aux);
    if (xenbus_start(cpu, sc, Number(a.get('xnt_intf')), a.get('xnt_port')) !== 0) return;
    xenbus_boot_queue(cpu, sc);
  },
});

function xenbusTables(): KSymTab[] {
  return XENBUS_KSYMTABS.every((t) => XEN_KSYMTABS.includes(t)) ? [] : [...XENBUS_KSYMTABS];
}

/** Tables of `want` that the shipped image does not link already. */
function notLinked(want: readonly KSymTab[]): KSymTab[] {
  return want.every((t) => XEN_KSYMTABS.includes(t)) ? [] : [...want];
}

export function xennetTestImage(extra: readonly KSymTab[] = []): LinkedKernelImage {
  return defineNetbsdImage([...xenbusTables(), ...notLinked(NET_KSYMTABS), ...notLinked(XENNET_KSYMTABS), fixtureSyms, ...extra], 'xennet-test');
}

const ptr = (v: number | bigint | undefined): number => vaFromCanonical(BigInt.asUintN(64, BigInt(v ?? 0))) ?? 0;

interface Port {
  readonly remoteDom: number;
  onSend: (() => void) | undefined;
}

/** A FakeCpu with event channels. */
export class XenCpu extends FakeCpu {
  nextPort = 20;
  readonly ports = new Map<number, Port>();
  /** Ports with an event for the guest. */
  readonly pending = new Set<number>();
  onStoreSend: () => void = () => undefined;
  shinfo = 0;
  closed: number[] = [];

  override hypercall(nr: number, ...raw: (number | bigint | undefined)[]): number {
    if (nr === __HYPERVISOR_event_channel_op) {
      const op = Number(raw[0] ?? 0);
      const va = ptr(raw[1]);
      if (op === EVTCHNOP_alloc_unbound) {
        const v = evtchn_alloc_unbound.view(this.mem, va);
        const port = this.nextPort++;
        this.ports.set(port, { remoteDom: v.get('remote_dom'), onSend: undefined });
        v.set('port', port);
        this.hypercalls.push({ nr, args: [] });
        return 0;
      }
      if (op === EVTCHNOP_send) {
        const port = evtchn_send.view(this.mem, va).get('port');
        if (port === STORE_PORT) this.onStoreSend();
        else this.ports.get(port)?.onSend?.();
      } else if (op === EVTCHNOP_unmask) {
        const port = evtchn_unmask.view(this.mem, va).get('port');
        this.setMask(port, false);
      } else if (op === EVTCHNOP_close) {
        const port = evtchn_close.view(this.mem, va).get('port');
        this.ports.delete(port);
        this.pending.delete(port);
        this.closed.push(port);
      }
    }
    return super.hypercall(nr, ...raw);
  }

  private maskAddr(port: number): number {
    return this.shinfo + shared_info.offsetOf('evtchn_mask') + (port >>> 3);
  }

  setMask(port: number, masked: boolean): void {
    const at = this.maskAddr(port);
    const b = this.mem.getUint8(at);
    this.mem.setUint8(at, masked ? b | (1 << (port & 7)) : b & ~(1 << (port & 7)));
  }

  masked(port: number): boolean {
    return ((this.mem.getUint8(this.maskAddr(port)) >> (port & 7)) & 1) === 1;
  }

  /** The backend signals `port`: an event for the guest. */
  raise(port: number): void {
    if (this.ports.has(port)) this.pending.add(port);
  }
}

/** A ByteMem whose offset 0 is guest address `base` (one page mapped by the backend). */
export function pageWindow(mem: FlatMem, base: number): ByteMem {
  const bytes = mem.bytes.subarray(base - mem.base, base - mem.base + PAGE_SIZE);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, PAGE_SIZE) as DataView & Partial<ByteMem>;
  dv.readBytes = (off: number, len: number): Uint8Array => bytes.slice(off, off + len);
  dv.writeBytes = (off: number, data: Uint8Array): void => bytes.set(data, off);
  return dv as ByteMem;
}

const GE_FLAGS = 0;
const GE_DOMID = 2;
const GE_FRAME = 4;

/**
 * dom0's side of the machine, over the harness's memory: grant copies and
 * ring maps checked against the guest's grant table as Xen would.
 */
export class HarnessHost implements BackendHost {
  readonly maps = new Set<number>();
  bytesCopied = 0;
  readonly grants = {
    copyFromGrant: (domid: DomId, gref: GrantRef, offset: number, len: number): Outcome<Uint8Array> => {
      const p = this.resolve(domid, gref, false);
      if (!p.ok) return p;
      this.bytesCopied += len;
      return ok(this.cpu.mem.readBytes(p.value + offset, len));
    },
    copyToGrant: (domid: DomId, gref: GrantRef, offset: number, data: Uint8Array): Outcome<void> => {
      const p = this.resolve(domid, gref, true);
      if (!p.ok) return p;
      this.bytesCopied += data.length;
      this.cpu.mem.writeBytes(p.value + offset, data);
      return ok(undefined);
    },
  };

  constructor(readonly cpu: XenCpu, readonly table: () => number) {}

  entry(gref: number): number {
    return this.table() + gref * 8;
  }

  /** The guest page grant `gref` names, if dom0 may use it that way. */
  resolve(domid: number, gref: number, write: boolean): Outcome<number> {
    if (domid !== DOMID) return err(`grant of unknown domain ${domid}`);
    if (!(gref >= 0 && gref < PAGE_SIZE / 8)) return err(`bad grant ref ${gref}`);
    const e = this.entry(gref);
    const flags = this.cpu.mem.getUint16(e + GE_FLAGS, true);
    if ((flags & GTF_type_mask) !== GTF_permit_access) return err(`grant ${gref} not permit_access (flags ${flags.toString(16)})`);
    if (this.cpu.mem.getUint16(e + GE_DOMID, true) !== 0) return err(`grant ${gref} is not for dom0`);
    if (write && (flags & GTF_readonly) !== 0) return err(`grant ${gref} is read-only`);
    const pfn = this.cpu.mem.getUint32(e + GE_FRAME, true) - MFN_BASE;
    if (!(pfn >= 0 && pfn < MEM_PAGES)) return err(`grant ${gref} names frame ${pfn + MFN_BASE}, not ours`);
    return ok(KERNBASE + pfn * PAGE_SIZE);
  }

  mapRing(domid: DomId, ref: GrantRef): Outcome<MappedRing> {
    const p = this.resolve(domid, ref, true);
    if (!p.ok) return p;
    const e = this.entry(ref);
    const setBusy = (on: boolean): void => {
      const f = this.cpu.mem.getUint16(e + GE_FLAGS, true);
      this.cpu.mem.setUint16(e + GE_FLAGS, on ? f | GTF_reading | GTF_writing : f & ~(GTF_reading | GTF_writing), true);
    };
    setBusy(true);
    this.maps.add(ref);
    let mapped = true;
    return ok({
      mem: pageWindow(this.cpu.mem as FlatMem, p.value),
      base: 0,
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        this.maps.delete(ref);
        setBusy(false);
      },
    });
  }

  bindEventChannel(_domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<BoundChannel> {
    const p = this.cpu.ports.get(remotePort);
    if (p === undefined) return err(`port ${remotePort} is not an unbound port of d${DOMID}`);
    p.onSend = onEvent;
    let open = true;
    return ok({
      notify: () => {
        if (open) this.cpu.raise(remotePort);
      },
      close: () => {
        open = false;
        const q = this.cpu.ports.get(remotePort);
        if (q !== undefined) q.onSend = undefined;
      },
    });
  }
}

export interface NetWorld {
  readonly h: Harness;
  readonly cpu: XenCpu;
  readonly xs: Xenstored;
  readonly dom0: XsClient;
  readonly host: HarnessHost;
  readonly bridge: Bridge;
  readonly endpoint: Dom0Endpoint;
  /** The real netback engine (undefined with `raw`). */
  readonly nb: Netback | undefined;
  vif: Vif | undefined;
  /** Simulated time, ns. */
  now(): number;
  /** Run guest entries and dom0 work until `until` holds or `units` pass. */
  run(units?: number, until?: () => boolean | Promise<boolean>): Promise<boolean>;
  /** Everything the kernel printed. */
  console(): string;
  /** The xennet0 softc. */
  sc(): number;
  /** Backend-side xenbus state changes, in order. */
  readonly backendStates: number[];
  /** Set the backend's state node (and remember it). */
  setBackendState(state: number): Promise<void>;
  /**
   * What a save + restore does to everything but guest memory: the old
   * backend is gone, every grant ref and port of the old domain is void
   * (the grant table is empty again, as after xengnt's setup_table on
   * resume; every port masked and forgotten), and the toolstack creates the
   * vif again (frontend state Initialising, backend InitWait).
   */
  simulateRestore(): Promise<void>;
}

export interface NetWorldOptions {
  readonly extra?: readonly KSymTab[];
  /** Value of the backend's `ip` node (default GUEST_IP); null: no node. */
  readonly ip?: string | null;
  /** The frontend's `mac` node (default GUEST_MAC). */
  readonly mac?: string;
  /** Backend's feature-rx-copy (default "1"). */
  readonly rxCopy?: string;
  /** No netback engine: the test answers the rings itself (after reading the frontend's nodes). */
  readonly raw?: boolean;
  /** Kernel command line (start_info.cmd_line). */
  readonly cmdline?: string;
}

/** Nodes libxl makes for a domain, the ones xenbus uses. */
async function makeDomainNodes(dom0: XsClient): Promise<void> {
  const dom = `/local/domain/${DOMID}`;
  for (const p of [dom, `${dom}/control`, `${dom}/device`, `${dom}/device/suspend`]) {
    await dom0.write(p, '');
    await dom0.setPerms(p, ['n0', `r${DOMID}`]);
  }
  for (const p of ['control/shutdown', 'device/suspend/event-channel', 'data', 'error']) {
    await dom0.write(`${dom}/${p}`, '');
    await dom0.setPerms(`${dom}/${p}`, [`n${DOMID}`]);
  }
}

/** The vif as the toolstack announces it: frontend dir (the guest's) and backend dir. */
async function makeVif(dom0: XsClient, o: NetWorldOptions, backendNodes: Readonly<Record<string, string>>): Promise<void> {
  await dom0.write(BE, '');
  await dom0.setPerms(BE, ['n0', `r${DOMID}`]);
  for (const [k, v] of Object.entries(backendNodes)) await dom0.write(`${BE}/${k}`, v);
  if (o.rxCopy !== undefined) await dom0.write(`${BE}/feature-rx-copy`, o.rxCopy);
  if (o.ip !== null) await dom0.write(`${BE}/ip`, o.ip ?? GUEST_IP);
  await dom0.write(`${BE}/frontend`, FE);
  await dom0.write(`${BE}/frontend-id`, String(DOMID));
  await dom0.write(`${BE}/state`, '2');
  await dom0.write(FE, '');
  await dom0.setPerms(FE, [`n${DOMID}`, 'r0']);
  for (const [k, v] of [['state', '1'], ['backend-id', '0'], ['backend', BE], ['handle', '0'], ['mac', o.mac ?? GUEST_MAC]] as const) {
    await dom0.write(`${FE}/${k}`, v);
  }
}

export async function netWorld(o: NetWorldOptions = {}): Promise<NetWorld> {
  const image = xennetTestImage(o.extra);
  const cpu = new XenCpu(new FlatMem(KERNBASE, new Uint8Array(MEM_PAGES * PAGE_SIZE)));
  const h0 = Harness.boot({ image, memPages: MEM_PAGES });
  cpu.mem.bytes.set(h0.fake.mem.bytes);
  const h = new Harness(image, cpu);
  cpu.regs.setVa('rip', h.addr('mi_switch'));
  const kc = h.cpu;

  // What the boot path sets up before autoconf: shared_info, the event table, P2M, grant table.
  const shinfo = uvm_km_alloc(kc, PAGE_SIZE, UVM_KMF_ZERO);
  cpu.shinfo = shinfo;
  const x = xmd(kc);
  vptr_set(x, 'xm_shared_info_va', shinfo);
  events_default_setup(kc);
  const p2m = uvm_km_alloc(kc, MEM_PAGES * 8, UVM_KMF_ZERO);
  for (let pfn = 0; pfn < MEM_PAGES; pfn++) kc.mem.setBigUint64(p2m + pfn * 8, BigInt(MFN_BASE + pfn), true);
  vptr_set(x, 'xm_p2m_va', p2m);
  vu64_set(x, 'xm_nr_pages', MEM_PAGES);
  const table = uvm_km_alloc(kc, PAGE_SIZE, UVM_KMF_ZERO);
  const stack = uvm_km_alloc(kc, PAGE_SIZE, UVM_KMF_ZERO);
  const gs = x.sub('xm_gnt');
  vptr_set(gs, 'gs_table_va', table);
  gs.set('gs_nframes', 1);
  gs.set('gs_maxframes', 1);
  vptr_set(gs, 'gs_free', stack);
  /** An empty table: every ref the kernel may hand out is free (refs 0-7 are the toolstack's). */
  const fillGrantTable = (): void => {
    kc.mem.fill(table, PAGE_SIZE, 0);
    let k = 0;
    for (let ref = PAGE_SIZE / 8 - 1; ref >= 8; ref--) kc.mem.setUint32(stack + 4 * k++, ref, true);
    gs.set('gs_nfree', k);
    gs.set('gs_inuse', 0);
  };
  fillGrantTable();
  if (o.cmdline !== undefined) {
    const at = x.sub('xm_start_info').addr('cmd_line');
    for (let i = 0; i < o.cmdline.length; i++) kc.mem.setUint8(at + i, o.cmdline.charCodeAt(i));
  }
  const intf = uvm_km_alloc(kc, PAGE_SIZE, UVM_KMF_ZERO);

  let ticks = 0;
  const clock = { now: (): number => ticks * TICK_NS };
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const endpoint = new Dom0Endpoint({ bridge, clock });
  const host = new HarnessHost(cpu, () => table);
  let pollWanted = false;
  const nb = o.raw === true ? undefined : new Netback({ host, schedule: () => { pollWanted = true; } });

  const xs = new Xenstored();
  const dom0 = new XsClient((m) => port.send(m));
  const port = xs.connectLocal((m) => dom0.receive(m));
  await makeDomainNodes(dom0);
  let vif: Vif | undefined;
  let backendNodes: Readonly<Record<string, string>> = { 'feature-rx-copy': '1', mac: GUEST_MAC, handle: '0' };
  if (nb !== undefined) {
    const created = nb.create({ frontendDomid: toDomId(DOMID), devid: 0, mac: GUEST_MAC, bridge });
    if (!created.ok) throw new Error(created.error.message);
    vif = created.value;
    backendNodes = vif.backendNodes();
  }
  await makeVif(dom0, o, backendNodes);
  await dom0.introduce(DOMID, 1234, STORE_PORT);

  let storeEvent = false;
  let storeKick = false;
  const backendStates: number[] = [];
  let frontSeen = '';

  const w: NetWorld = {
    h, cpu, xs, dom0, host, bridge, endpoint, nb, vif, backendStates,
    now: clock.now,
    async simulateRestore(): Promise<void> {
      if (w.nb !== undefined && w.vif !== undefined) {
        w.vif.disconnect();
        w.nb.destroy(toDomId(DOMID), 0);
      }
      fillGrantTable();
      cpu.ports.clear();
      cpu.pending.clear();
      kc.mem.fill(shinfo + shared_info.offsetOf('evtchn_mask'), shared_info.fields.evtchn_mask.type.size, 0xff);
      if (w.nb !== undefined) {
        const created = w.nb.create({ frontendDomid: toDomId(DOMID), devid: 0, mac: GUEST_MAC, bridge });
        if (!created.ok) throw new Error(created.error.message);
        w.vif = created.value;
      }
      await dom0.write(`${FE}/state`, '1');
      frontSeen = '1';
      await w.setBackendState(2);
    },
    async setBackendState(state: number): Promise<void> {
      backendStates.push(state);
      await dom0.write(`${BE}/state`, String(state));
    },
    async run(units = 20000, until?: () => boolean | Promise<boolean>): Promise<boolean> {
      for (let i = 0; i < units; i++) {
        if (until !== undefined && (await until())) return true;
        if (storeKick) {
          storeKick = false;
          ring().kick();
          await settle();
          await agent();
        }
        if (storeEvent && cpu.shutdownReason === undefined) {
          storeEvent = false;
          h.call('evtchn_do_event', STORE_PORT);
          cpu.blocked = false;
          continue;
        }
        if (pollWanted && w.nb !== undefined) {
          pollWanted = false;
          w.nb.poll();
        }
        const due = [...cpu.pending].filter((p) => !cpu.masked(p));
        if (due.length > 0) {
          for (const p of due) {
            cpu.pending.delete(p);
            h.call('evtchn_do_event', p);
          }
          cpu.blocked = false;
          continue;
        }
        if (!h.step()) {
          if (cpu.shutdownReason !== undefined) return until !== undefined && (await until());
          h.tick();
          ticks++;
          endpoint.tick();
        }
      }
      return until !== undefined && (await until());
    },
    console(): string {
      return msgbuf_read(h.cpu);
    },
    sc(): number {
      const dev = device_lookup(h.cpu, 'xennet', 0);
      return dev === 0 ? 0 : device_private(h.cpu, dev);
    },
  };

  /** The backend's xenbus side: follow the frontend's state (netback's wiring, in miniature). */
  async function agent(): Promise<void> {
    if (w.vif === undefined) return;
    let state: string;
    try {
      state = await dom0.read(`${FE}/state`);
    } catch {
      return;
    }
    if (state === frontSeen) return;
    frontSeen = state;
    if ((state === '3' || state === '4') && w.vif.state !== 'connected') {
      const nodes = new Map<string, string>();
      for (const k of await dom0.directory(FE)) nodes.set(k, await dom0.read(`${FE}/${k}`));
      const params = parseFrontendNodes((k) => nodes.get(k));
      if (!params.ok) throw new Error(`agent: ${params.error}`);
      const up = w.vif.connect(params.value);
      if (!up.ok) throw new Error(`agent: connect: ${up.error}`);
      await w.setBackendState(4);
    } else if ((state === '5' || state === '6') && w.vif.state === 'connected') {
      w.vif.disconnect();
      await w.setBackendState(6);
    }
  }

  function ring(): XsRingTransport {
    const r = xs.ringOf(toDomId(DOMID));
    if (r === undefined) throw new Error('no store ring');
    return r;
  }
  cpu.onStoreSend = () => { storeKick = true; };
  xs.attachRing(toDomId(DOMID), pageWindow(cpu.mem, intf), 0, () => { storeEvent = true; });

  const cfdata: CfDesc[] = [
    { name: 'hypervisor', atname: '', match: 'xnt_root_match', attach: 'xnt_root_attach', devsize: 0 },
    ...XENBUS_CFDATA.map((d) => ({ ...d, attach: 'xnt_xenbus_attach' })),
    ...XENNET_CFDATA,
  ];
  config_cfdata_attach(kc, cfdata);
  const aa = kmem_zalloc(kc, xnt_attach_args.size);
  const a = xnt_attach_args.view(kc.mem, aa);
  a.setString('xa_device', 'xenbus');
  a.set('xnt_intf', BigInt(intf));
  a.set('xnt_port', STORE_PORT);
  config_rootfound(kc, 'hypervisor', aa);
  if (xenbus_softc_of(kc) === 0) throw new Error('xenbus0 did not attach');
  return w;
}

/** Let host-side promises settle. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** xennet0's state name. */
export function xnState(w: NetWorld): number {
  return xennet_view(w.h.cpu, w.sc()).get('sc_state');
}

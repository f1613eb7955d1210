/*
 * xenbus on the small harness (tests/guest/harness.ts), talking to the
 * real xenstored (hypervisor/tools/xenstored) through a store page in
 * guest memory, without the hypervisor.
 *
 *  - The kernel image is the MI kernel + arch/xen + xenbus + the test's
 *    own symbols; the harness runs it entry by entry at rip.
 *  - The store page is a page of guest memory; xenstored's ring transport
 *    is attached to it (XsRingTransport over the same bytes).
 *  - The store port: the guest's EVTCHNOP_send on it kicks the transport
 *    (between entries, as the machine defers dom0 work); xenstored's
 *    notify makes the event pending, delivered before the next entry
 *    through evtchn_do_event, the way the upcall does.
 *  - xenbus0 attaches under a test "hypervisor" root, with the store page
 *    and port handed over in the attach args (the real attach finds them
 *    through start_info and the M2P, which this harness does not have).
 *  - dom0 is an in-process XsClient (XsClient over connectLocal).
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, u64, char, type ByteMem } from '../../hypervisor/public/layout.js';
import { __HYPERVISOR_event_channel_op } from '../../hypervisor/public/xen.js';
import { EVTCHNOP_send, evtchn_send } from '../../hypervisor/public/event_channel.js';
import { vaFromCanonical, domid as toDomId } from '../../hypervisor/public/types.js';
import { XsClient } from '../../hypervisor/tools/xenstored/client.js';
import { Xenstored } from '../../hypervisor/tools/xenstored/server.js';
import { xenstore_domain_interface, XENSTORE_RING_SIZE } from '../../hypervisor/public/io/xs_wire.js';
import type { XsRingTransport } from '../../hypervisor/tools/xenstored/ring.js';
import { PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { xmd } from '../../arch/xen/include/xen.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { XEN_KSYMTABS } from '../../arch/xen/conf/files.xen.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { events_default_setup } from '../../arch/xen/xen/evtchn.js';
import { XENBUS_KSYMTABS, XENBUS_CFDATA } from '../../arch/xen/xenbus/xenbus.js';
import { xenbus_softc, xenbus_softc_of, XBF_BOOTED } from '../../arch/xen/xenbus/xenbus_var.js';
import { lwp_list } from '../../sys/kern/kern_lwp.js';
import { xenbus_softc_init, xenbus_start, xenbus_boot_queue } from '../../arch/xen/xenbus/xenbus_probe.js';
import { ksymtab, type KSymTab } from '../../sys/kern/kern_ksyms.js';
import { config_cfdata_attach, config_rootfound, config_found, device_private } from '../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../sys/kern/kern_pmf.js';
import { kmem_zalloc } from '../../sys/kern/subr_kmem.js';
import { uvm_km_alloc } from '../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../sys/uvm/uvm.js';
import { msgbuf_read } from '../../sys/kern/subr_log.js';
import { vptr_set } from '../../sys/lib/libkern/libkern.js';
import { aprint_normal } from '../../sys/kern/subr_prf.js';
import type { CfDesc } from '../../sys/sys/device.js';
import { FakeCpu, FlatMem, Harness } from '../guest/harness.js';
import { KERNBASE } from '../../arch/xen/include/vmparam.js';

export const DOMID = 3;
export const STORE_PORT = 7;
export const DOMPATH = `/local/domain/${DOMID}`;

/*
 * struct tb_attach_args { char xa_device[16]; uint64_t tb_intf; uint32_t tb_port; }
 * The test root hands xenbus0 the store page and port this way.
 */
const tb_attach_args = struct('struct tb_attach_args', {
  xa_device: array(char, 16),
  tb_intf: u64,
  tb_port: u32,
});

/** Test root and xenbus attach: what hypervisor0 and xenbus_attach do, minus start_info. */
const fixtureSyms = ksymtab({
  tb_root_match(): number {
    return 1;
  },
  tb_root_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    aprint_normal(cpu, '\n');
    config_found(cpu, self, aux);
  },
  tb_xenbus_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    aprint_normal(cpu, ': Xen Virtual Bus Interface\n');
    const sc = device_private(cpu, self);
    xenbus_softc_init(cpu, sc, self);
    pmf_device_register(cpu, self, 'xenbus_suspend', 'xenbus_resume');
    const a = tb_attach_args.view(cpu.mem, aux);
    if (xenbus_start(cpu, sc, Number(a.get('tb_intf')), a.get('tb_port')) !== 0) return;
    xenbus_boot_queue(cpu, sc);
  },
});

/** XEN_KSYMTABS with xenbus in it, whether or not the boot path links it yet. */
function xenTables(): KSymTab[] {
  const have = XENBUS_KSYMTABS.every((t) => XEN_KSYMTABS.includes(t));
  return have ? [] : [...XENBUS_KSYMTABS];
}

export function xenbusTestImage(extra: readonly KSymTab[] = []): LinkedKernelImage {
  return defineNetbsdImage([...xenTables(), fixtureSyms, ...extra], 'xenbus-test');
}

/** FakeCpu that reports EVTCHNOP_send on the store port. */
export class StoreCpu extends FakeCpu {
  onSend: (port: number) => void = () => undefined;
  override hypercall(nr: number, ...raw: (number | bigint | undefined)[]): number {
    if (nr === __HYPERVISOR_event_channel_op && BigInt(raw[0] ?? 0) === BigInt(EVTCHNOP_send)) {
      const va = vaFromCanonical(BigInt.asUintN(64, BigInt(raw[1] ?? 0)));
      if (va !== undefined) this.onSend(evtchn_send.view(this.mem, va).get('port'));
    }
    return super.hypercall(nr, ...raw);
  }
}

export interface WorldOptions {
  readonly extra?: readonly KSymTab[];
  readonly cfdata?: readonly CfDesc[];
  /** Initial ring indices (to exercise wrapping). */
  readonly ringStart?: number;
  /** Don't attach xenbus0 (the test does it). */
  readonly noAttach?: boolean;
  /** Host-side setup before xenbus attaches (devices, nodes). */
  readonly before?: (dom0: XsClient) => Promise<void>;
}

/** Nodes libxl makes for a domain, the ones xenbus uses; the guest owns control/*, data, error. */
export async function makeDomainNodes(dom0: XsClient, domid = DOMID): Promise<void> {
  const dom = `/local/domain/${domid}`;
  const own = [`n${domid}`];
  const ro = ['n0', `r${domid}`];
  for (const [p, perms] of [
    [dom, ro], [`${dom}/control`, ro], [`${dom}/device`, ro], [`${dom}/device/suspend`, ro],
  ] as const) {
    await dom0.write(p, '');
    await dom0.setPerms(p, perms);
  }
  for (const p of ['control/shutdown', 'control/feature-poweroff', 'control/feature-reboot', 'control/feature-suspend',
    'device/suspend/event-channel', 'data', 'error']) {
    await dom0.write(`${dom}/${p}`, '');
    await dom0.setPerms(`${dom}/${p}`, own);
  }
}

/** A frontend device as the toolstack announces it (frontend dir is the guest's, state Initialising). */
export async function addDevice(dom0: XsClient, type: string, id: number, domid = DOMID): Promise<void> {
  const fe = `/local/domain/${domid}/device/${type}/${id}`;
  const be = `/local/domain/0/backend/${type}/${domid}/${id}`;
  await dom0.write(be, '');
  await dom0.setPerms(be, ['n0', `r${domid}`]);
  await dom0.write(`${be}/state`, '1');
  await dom0.write(fe, '');
  await dom0.setPerms(fe, [`n${domid}`, 'r0']);
  for (const [k, v] of [['state', '1'], ['backend-id', '0'], ['backend', be]] as const) {
    await dom0.write(`${fe}/${k}`, v);
    await dom0.setPerms(`${fe}/${k}`, [`n${domid}`, 'r0']);
  }
}

/**
 * One guest on the harness and the xenstored serving it. `run` is the
 * machine's loop in miniature: kick xenstored when the guest signalled,
 * deliver the store event before the next entry, else run an entry or
 * let a tick pass.
 */
export class XbWorld {
  xs: Xenstored;
  dom0: XsClient;
  /** Address of the store page in guest memory. */
  intf: number;
  /** xenbus0's softc. */
  sc = 0;
  /** Kicks the guest made on the store port. */
  kicks = 0;
  /** Stop passing the guest's kicks on (a xenstored that hangs). */
  deaf = false;
  private pendingKick = false;
  private pendingEvent = false;

  constructor(readonly h: Harness, readonly fake: StoreCpu, xs: Xenstored, dom0: XsClient, intf: number) {
    this.xs = xs;
    this.dom0 = dom0;
    this.intf = intf;
    fake.onSend = (p) => {
      if (p === STORE_PORT) {
        this.kicks++;
        this.pendingKick = true;
      }
    };
  }

  ring(): XsRingTransport {
    const r = this.xs.ringOf(toDomId(DOMID));
    if (r === undefined) throw new Error('no ring');
    return r;
  }

  /** Serve the store page at `intf` with `xs` (the page as xenstored maps it: offset 0 = the page). */
  attach(xs: Xenstored, dom0: XsClient, intf: number): void {
    this.xs = xs;
    this.dom0 = dom0;
    this.intf = intf;
    xs.attachRing(toDomId(DOMID), pageWindow(this.fake.mem, intf), 0, () => this.raiseEvent());
  }

  /** Make the store port's event pending (as xenstored's notify does). */
  raiseEvent(): void {
    this.pendingEvent = true;
  }

  /** Run guest entries until `until` holds or `units` pass. */
  run(units = 20000, until?: () => boolean): boolean {
    const { h, fake } = this;
    for (let i = 0; i < units; i++) {
      if (until?.() === true) return true;
      if (this.pendingKick && !this.deaf) {
        this.pendingKick = false;
        this.ring().kick();
      }
      if (this.pendingEvent && fake.shutdownReason === undefined) {
        this.pendingEvent = false;
        h.call('evtchn_do_event', STORE_PORT);
        fake.blocked = false;
        continue;
      }
      if (!h.step()) {
        if (fake.shutdownReason !== undefined) return until?.() === true;
        h.tick();
      }
    }
    return until?.() === true;
  }

  /** Everything the kernel printed. */
  console(): string {
    return msgbuf_read(this.h.cpu);
  }

  /** Put bytes in the reply ring as a (broken) xenstored would, and publish them. */
  inject(bytes: Uint8Array): void {
    const mem = this.fake.mem;
    const v = xenstore_domain_interface.view(mem, this.intf);
    const rsp = this.intf + xenstore_domain_interface.offsetOf('rsp');
    let prod = v.get('rsp_prod');
    for (const b of bytes) {
      mem.setUint8(rsp + (prod % XENSTORE_RING_SIZE), b);
      prod = (prod + 1) >>> 0;
    }
    v.set('rsp_prod', prod);
    this.raiseEvent();
  }
}

/** A fresh xenstored with the domain's nodes, dom0's client on it, the domain introduced. */
export async function newXenstored(before?: (dom0: XsClient) => Promise<void>): Promise<{ xs: Xenstored; dom0: XsClient }> {
  const xs = new Xenstored();
  const dom0 = new XsClient((m) => port.send(m));
  const port = xs.connectLocal((m) => dom0.receive(m));
  await makeDomainNodes(dom0);
  if (before !== undefined) await before(dom0);
  await dom0.introduce(DOMID, 1234, STORE_PORT);
  return { xs, dom0 };
}

/** A zeroed page of guest memory (a store page), optionally with all four ring indices at `start`. */
export function storePage(h: Harness, start?: number): number {
  const intf = uvm_km_alloc(h.cpu, PAGE_SIZE, UVM_KMF_ZERO);
  if (start !== undefined) {
    const v = xenstore_domain_interface.view(h.cpu.mem, intf);
    for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) v.set(f, start >>> 0);
  }
  return intf;
}

export async function world(o: WorldOptions = {}): Promise<XbWorld> {
  const image = xenbusTestImage(o.extra);
  const pages = 1024;
  const fake = new StoreCpu(new FlatMem(KERNBASE, new Uint8Array(pages * PAGE_SIZE)));
  const h0 = Harness.boot({ image, memPages: pages });
  // Swap in the StoreCpu with the booted memory (Harness.boot made its own FakeCpu).
  fake.mem.bytes.set(h0.fake.mem.bytes);
  const h = new Harness(image, fake);
  fake.regs.setVa('rip', h.addr('mi_switch'));
  const cpu = h.cpu;

  // What the boot path sets up before autoconf: shared_info (masks), the event table.
  const shinfo = uvm_km_alloc(cpu, PAGE_SIZE, UVM_KMF_ZERO);
  vptr_set(xmd(cpu), 'xm_shared_info_va', shinfo);
  events_default_setup(cpu);
  const intf = storePage(h, o.ringStart);

  const { xs, dom0 } = await newXenstored(o.before);
  const w = new XbWorld(h, fake, xs, dom0, intf);
  w.attach(xs, dom0, intf);

  const cfdata: CfDesc[] = [
    { name: 'hypervisor', atname: '', match: 'tb_root_match', attach: 'tb_root_attach', devsize: 0 },
    ...XENBUS_CFDATA.map((d) => ({ ...d, attach: 'tb_xenbus_attach' })),
    ...(o.cfdata ?? []),
  ];
  config_cfdata_attach(cpu, cfdata);
  if (o.noAttach !== true) {
    const aa = kmem_zalloc(cpu, tb_attach_args.size);
    const a = tb_attach_args.view(cpu.mem, aa);
    a.setString('xa_device', 'xenbus');
    a.set('tb_intf', BigInt(intf));
    a.set('tb_port', STORE_PORT);
    config_rootfound(cpu, 'hypervisor', aa);
    w.sc = xenbusSoftc(w);
  }
  return w;
}

/** A ByteMem whose offset 0 is guest address `base` (a foreign mapping of one page). */
export function pageWindow(mem: FlatMem, base: number): ByteMem {
  const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset + (base - mem.base), PAGE_SIZE) as DataView & Partial<ByteMem>;
  const bytes = mem.bytes.subarray(base - mem.base, base - mem.base + PAGE_SIZE);
  dv.readBytes = (off: number, len: number): Uint8Array => bytes.slice(off, off + len);
  dv.writeBytes = (off: number, data: Uint8Array): void => bytes.set(data, off);
  return dv as ByteMem;
}

/** xenbus0's softc (0 if not attached). */
export function xenbusSoftc(w: XbWorld): number {
  return xenbus_softc_of(w.h.cpu);
}

/** Is some lwp asleep with this wmesg? */
export function sleepingOn(w: XbWorld, wmesg: string): boolean {
  return lwp_list(w.h.cpu).some((l) => l.wmesg === wmesg);
}

/** The boot sequence has run, nothing is in flight, the xenbus thread waits for work. */
export function bootDone(w: XbWorld): boolean {
  const v = xenbus_softc.view(w.h.cpu.mem, w.sc);
  return (v.get('sc_flags') & XBF_BOOTED) !== 0 && v.get('sc_nsent') + v.get('sc_nqueued') === 0 && v.get('sc_njobs') === 0 &&
    sleepingOn(w, 'xenwatch');
}

/** Let host-side promises settle (replies to dom0's requests resolve as microtasks). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

export { xenbus_softc };

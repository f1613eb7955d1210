/*
 * `probe`: a test kernel that boots the way a PV kernel does from what the
 * builder gave it (rsi = start_info, nothing else), reports what it found
 * in its own data page, and then acts on its command line:
 *
 *   poweroff | reboot | crash   shut down that way right after booting
 *   nostore                     block forever without touching xenstore
 *   (always, once booted)       answer the ctrl_if rx ring; a CMSG_SHUTDOWN
 *                               poweroff/reboot shuts it down that way
 *   (otherwise)                 over its store ring: write
 *                               control/feature-poweroff = 1, watch
 *                               control/shutdown (printing "watching"
 *                               once the watch is set), and power off (or
 *                               reboot) when the toolstack asks there
 *
 * Like every guest here it keeps no JS state between entries: its report
 * page and the shared store ring hold everything. Report (u64 slots at
 * the image's first page, virtBase): see R_* below.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { vaddr } from '../../hypervisor/public/types.js';
import {
  __HYPERVISOR_console_io, __HYPERVISOR_event_channel_op, __HYPERVISOR_sched_op, __HYPERVISOR_update_va_mapping,
  CONSOLEIO_write, UVMF_INVLPG, shared_info, start_info, vcpu_info,
} from '../../hypervisor/public/xen.js';
import { SCHEDOP_block, SCHEDOP_shutdown, SHUTDOWN_poweroff, SHUTDOWN_reboot, sched_shutdown } from '../../hypervisor/public/sched.js';
import { EVTCHNOP_send, evtchn_send } from '../../hypervisor/public/event_channel.js';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW } from '../../hypervisor/public/arch-x86_64.js';
import {
  MASK_XENSTORE_IDX, XENSTORE_RING_SIZE, XS_READ, XS_WATCH, XS_WATCH_EVENT, XS_WRITE, xenstore_domain_interface,
} from '../../hypervisor/public/io/xs_wire.js';
import {
  CMSG_SHUTDOWN, CMSG_SHUTDOWN_POWEROFF, CMSG_SHUTDOWN_REBOOT, CONTROL_RING_SIZE, MASK_CONTROL_IDX, control_if,
} from '../../hypervisor/public/domain_controller.js';
import { defineKernel, type TestKernel } from '../kernels/image.js';

export const PROBE_BASE = vaddr(0x8800_0000_0000);
const REPORT = PROBE_BASE;
const SCRATCH = PROBE_BASE + 0x800;

/* Report slots (u64). */
export const R_MAGIC_OK = 0;
export const R_NR_PAGES = 1;
export const R_MFN_LIST = 2;
export const R_P2M_FIRST = 3;
export const R_START_INFO_VA = 4;
export const R_RSP = 5;
export const R_STORE_PORT = 6;
export const R_CONSOLE_PORT = 7;
export const R_PT_BASE = 8;
export const R_ENTRIES = 9;
export const R_SHINFO_VA = 10;
export const R_SHINFO_RC = 11;
export const R_STORE_VA = 12;
/** Messages the kernel has read from its store ring. */
export const R_XS_READ = 13;
/** Last value read from control/shutdown, as a small code: 1 poweroff, 2 reboot, 3 other. */
export const R_SHUTDOWN_SEEN = 14;

const slot = (i: number): number => REPORT + 8 * i;
const get = (cpu: GuestCpu, i: number): number => Number(cpu.mem.getBigUint64(slot(i), true));
const put = (cpu: GuestCpu, i: number, v: number | bigint): void => cpu.mem.setBigUint64(slot(i), BigInt.asUintN(64, BigInt(v)), true);

function vaOf(v: bigint): number {
  return Number(v & 0xffff_ffff_ffffn);
}

function print(cpu: GuestCpu, text: string): void {
  const bytes = new TextEncoder().encode(text);
  cpu.mem.writeBytes(SCRATCH + 0x400, bytes);
  cpu.hypercall(__HYPERVISOR_console_io, CONSOLEIO_write, bytes.length, SCRATCH + 0x400);
}

function shutdown(cpu: GuestCpu, reason: number): void {
  const s = sched_shutdown.view(cpu.mem, SCRATCH);
  s.set('reason', reason);
  cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, SCRATCH);
}

function notify(cpu: GuestCpu, port: number): void {
  const s = evtchn_send.view(cpu.mem, SCRATCH);
  s.set('port', port);
  cpu.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, SCRATCH);
}

function cmdLine(cpu: GuestCpu): string {
  return start_info.view(cpu.mem, get(cpu, R_START_INFO_VA)).getString('cmd_line');
}

/** Put one xs_wire request on the store ring (the test kernel's requests are tiny). */
function xsSend(cpu: GuestCpu, type: number, parts: readonly string[]): void {
  const ring = xenstore_domain_interface.view(cpu.mem, get(cpu, R_STORE_VA));
  const body = new TextEncoder().encode(parts.join('\0'));
  const msg = new Uint8Array(16 + body.length);
  const dv = new DataView(msg.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, type, true); // req_id: the type is enough to tell replies apart here
  dv.setUint32(12, body.length, true);
  msg.set(body, 16);
  let prod = ring.get('req_prod');
  for (const b of msg) {
    cpu.mem.setUint8(ring.addr('req') + MASK_XENSTORE_IDX(prod), b);
    prod = (prod + 1) >>> 0;
  }
  ring.set('req_prod', prod);
}

/** Take every complete message from the response ring. */
function xsReceive(cpu: GuestCpu): { type: number; payload: string }[] {
  const ring = xenstore_domain_interface.view(cpu.mem, get(cpu, R_STORE_VA));
  const out: { type: number; payload: string }[] = [];
  for (;;) {
    const cons = ring.get('rsp_cons');
    const avail = (ring.get('rsp_prod') - cons) >>> 0;
    if (avail < 16 || avail > XENSTORE_RING_SIZE) return out;
    const byte = (i: number): number => cpu.mem.getUint8(ring.addr('rsp') + MASK_XENSTORE_IDX(cons + i));
    const u32 = (i: number): number => (byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24)) >>> 0;
    const len = u32(12);
    if (avail < 16 + len) return out;
    let payload = '';
    for (let i = 0; i < len; i++) payload += String.fromCharCode(byte(16 + i));
    out.push({ type: u32(0), payload });
    ring.set('rsp_cons', (cons + 16 + len) >>> 0);
    put(cpu, R_XS_READ, get(cpu, R_XS_READ) + 1);
  }
}

/** Acknowledge every event: the vCPU's pending flag, selector and all pending bits. */
function ackEvents(cpu: GuestCpu): void {
  const sh = get(cpu, R_SHINFO_VA);
  const vi = sh + shared_info.offsetOf('vcpu_info');
  cpu.mem.setUint8(vi + vcpu_info.offsetOf('evtchn_upcall_pending'), 0);
  cpu.mem.setBigUint64(vi + vcpu_info.offsetOf('evtchn_pending_sel'), 0n, true);
  for (let w = 0; w < 4; w++) cpu.mem.setBigUint64(sh + shared_info.offsetOf('evtchn_pending') + 8 * w, 0n, true);
}

/**
 * Answer what the domain controller put on the ctrl_if rx ring (in the
 * same slots, echoing type/subtype/id); the SHUTDOWN reason asked for, if
 * any. rx_resp_prod doubles as the guest's consumer index.
 */
function ctrlIfShutdown(cpu: GuestCpu): number | undefined {
  const m = /\bctrl_if=(\d+),(\d+)/.exec(cmdLine(cpu));
  if (!m) return undefined;
  const page = control_if.view(cpu.mem, PROBE_BASE + Number(m[1]) * 4096);
  let reason: number | undefined;
  let resp = page.get('rx_resp_prod');
  const req = page.get('rx_req_prod');
  if (((req - resp) >>> 0) > CONTROL_RING_SIZE) return undefined;
  for (; resp !== req; resp = (resp + 1) >>> 0) {
    const msg = page.sub('rx_ring', MASK_CONTROL_IDX(resp));
    if (msg.get('type') === CMSG_SHUTDOWN && msg.get('subtype') === CMSG_SHUTDOWN_POWEROFF) reason = SHUTDOWN_poweroff;
    if (msg.get('type') === CMSG_SHUTDOWN && msg.get('subtype') === CMSG_SHUTDOWN_REBOOT) reason = SHUTDOWN_reboot;
    msg.set('length', 0);
  }
  if (resp === page.get('rx_resp_prod')) return undefined;
  page.set('rx_resp_prod', resp);
  notify(cpu, Number(m[2]));
  return reason;
}

export const probeKernel: TestKernel = defineKernel({
  name: 'probe',
  virtBase: PROBE_BASE,
  imageSize: 4096,
  textBase: 0x8000_7000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      const siVa = cpu.regs.getVa('rsi');
      put(cpu, R_START_INFO_VA, siVa);
      put(cpu, R_RSP, cpu.regs.getVa('rsp'));
      const si = start_info.view(cpu.mem, siVa);
      put(cpu, R_MAGIC_OK, si.getString('magic') === 'xen-3.0-x86_64' ? 1 : 0);
      const nrPages = Number(si.get('nr_pages'));
      put(cpu, R_NR_PAGES, nrPages);
      const mfnList = vaOf(si.get('mfn_list'));
      put(cpu, R_MFN_LIST, mfnList);
      put(cpu, R_P2M_FIRST, cpu.mem.getBigUint64(mfnList, true));
      put(cpu, R_PT_BASE, vaOf(si.get('pt_base')));
      put(cpu, R_STORE_PORT, si.get('store_evtchn'));
      put(cpu, R_CONSOLE_PORT, si.sub('console').sub('domU').get('evtchn'));
      // The store page's PFN: look its MFN up in the P2M.
      const storeMfn = si.get('store_mfn');
      for (let p = 0; p < nrPages; p++) {
        if (cpu.mem.getBigUint64(mfnList + 8 * p, true) === storeMfn) put(cpu, R_STORE_VA, PROBE_BASE + p * 4096);
      }
      // shared_info replaces the last (free) page of the direct map.
      const shVa = PROBE_BASE + (nrPages - 1) * 4096;
      put(cpu, R_SHINFO_VA, shVa);
      const pte = si.get('shared_info') | BigInt(_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY);
      put(cpu, R_SHINFO_RC, cpu.hypercall(__HYPERVISOR_update_va_mapping, shVa, pte, UVMF_INVLPG));
      put(cpu, R_ENTRIES, 1);
      const cmd = cmdLine(cpu);
      print(cpu, `probe: booted (${cmd})\n`);
      if (/\bpoweroff\b/.test(cmd)) return shutdown(cpu, SHUTDOWN_poweroff);
      if (/\breboot\b/.test(cmd)) return shutdown(cpu, SHUTDOWN_reboot);
      if (/\bcrash\b/.test(cmd)) throw new Error('probe: crash requested on the command line');
      cpu.regs.setVa('rip', probeKernel.addr.idle!);
      if (!/\bnostore\b/.test(cmd)) {
        xsSend(cpu, XS_WRITE, ['control/feature-poweroff', '1']);
        xsSend(cpu, XS_WATCH, ['control/shutdown', 'sd', '']);
        notify(cpu, get(cpu, R_STORE_PORT));
      }
      cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
    },
    idle(cpu: GuestCpu) {
      put(cpu, R_ENTRIES, get(cpu, R_ENTRIES) + 1);
      ackEvents(cpu);
      let sent = false;
      for (const m of xsReceive(cpu)) {
        if (m.type === XS_WATCH) {
          // The write of feature-poweroff went first: the toolstack may ask now.
          print(cpu, 'probe: watching control/shutdown\n');
        } else if (m.type === XS_WATCH_EVENT && m.payload.includes('control/shutdown')) {
          xsSend(cpu, XS_READ, ['control/shutdown', '']);
          sent = true;
        } else if (m.type === XS_READ) {
          const what = m.payload.replace(/\0.*$/s, '');
          put(cpu, R_SHUTDOWN_SEEN, what === 'poweroff' ? 1 : what === 'reboot' ? 2 : what === '' ? 0 : 3);
          if (what === 'poweroff' || what === 'reboot') {
            print(cpu, `probe: ${what} requested\n`);
            return shutdown(cpu, what === 'poweroff' ? SHUTDOWN_poweroff : SHUTDOWN_reboot);
          }
        }
      }
      if (sent) notify(cpu, get(cpu, R_STORE_PORT));
      const ctrl = ctrlIfShutdown(cpu);
      if (ctrl !== undefined) {
        print(cpu, `probe: ctrl_if ${ctrl === SHUTDOWN_poweroff ? 'poweroff' : 'reboot'}\n`);
        return shutdown(cpu, ctrl);
      }
      cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
    },
  },
});

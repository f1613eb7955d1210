// A small machine for the event channel tests: real machine memory and frame
// table, one shared_info frame per domain, and a fake core that records
// kicks and poller wake-ups. Also a fake caller address space for driving
// the hypercall handlers (shared with the grant table tests).
import { MachineMemory } from '../../hypervisor/xen/physmem.js';
import { FrameTable } from '../../hypervisor/xen/frametable.js';
import { EventChannels, type EvtchnCaller, type EvtchnEnv } from '../../hypervisor/xen/evtchn.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import { GuestPageFault, type GuestMem } from '../../hypervisor/public/cpu.js';
import type { CallCtx } from '../../hypervisor/xen/hcall.js';

export interface EvFixture {
  memory: MachineMemory;
  frames: FrameTable;
  ev: EventChannels;
  /** shared_info MFN per domain. */
  shinfo: Map<number, number>;
  vcpus: Map<number, number>;
  kicks: string[];
  wakes: string[];
  /** Create a domain: shared_info frame, vCPUs, port table. */
  addDomain(domid: number, nrVcpus?: number, maxPorts?: number): void;
  caller(domid: number, privileged?: boolean, vcpuId?: number): EvtchnCaller;
  pendingBit(domid: number, port: number): boolean;
  maskBit(domid: number, port: number): boolean;
  setMask(domid: number, port: number, on: boolean): void;
  pendingSel(domid: number, vcpu: number): bigint;
  upcallPending(domid: number, vcpu: number): number;
  /** What a guest upcall does first: clear upcall_pending and the selector. */
  ackUpcall(domid: number, vcpu: number): void;
}

export function evFixture(): EvFixture {
  const memory = new MachineMemory(256 * 4096);
  const frames = new FrameTable(memory, 7);
  const shinfo = new Map<number, number>();
  const vcpus = new Map<number, number>();
  const kicks: string[] = [];
  const wakes: string[] = [];
  const env: EvtchnEnv = {
    vcpuCount: (d) => vcpus.get(d) ?? 0,
    sharedInfo: (d) => {
      const m = shinfo.get(d);
      return m === undefined ? undefined : memory.frameMem(m);
    },
    kick: (d, v) => { kicks.push(`d${d}v${v}`); },
    wakePoller: (d, v) => { wakes.push(`d${d}v${v}`); },
  };
  const ev = new EventChannels(env);
  const view = (d: number) => shared_info.view(memory.frameMem(shinfo.get(d)!), 0);
  const bit = (d: number, field: 'evtchn_pending' | 'evtchn_mask', port: number) =>
    ((view(d).getAt(field, port >> 6) >> BigInt(port & 63)) & 1n) === 1n;
  return {
    memory, frames, ev, shinfo, vcpus, kicks, wakes,
    addDomain(domid, nrVcpus = 1, maxPorts) {
      shinfo.set(domid, frames.alloc(domid)!);
      vcpus.set(domid, nrVcpus);
      ev.initDomain(domid, maxPorts === undefined ? {} : { maxPorts });
    },
    caller: (domid, privileged = domid === 0, vcpuId = 0) => ({ domid, vcpuId, privileged }),
    pendingBit: (d, p) => bit(d, 'evtchn_pending', p),
    maskBit: (d, p) => bit(d, 'evtchn_mask', p),
    setMask(d, p, on) {
      const v = view(d);
      const w = v.getAt('evtchn_mask', p >> 6);
      const m = 1n << BigInt(p & 63);
      v.setAt('evtchn_mask', p >> 6, on ? w | m : w & ~m);
    },
    pendingSel: (d, v) => view(d).sub('vcpu_info', v).get('evtchn_pending_sel'),
    upcallPending: (d, v) => view(d).sub('vcpu_info', v).get('evtchn_upcall_pending'),
    ackUpcall(d, v) {
      const vi = view(d).sub('vcpu_info', v);
      vi.set('evtchn_upcall_pending', 0);
      vi.set('evtchn_pending_sel', 0n);
    },
  };
}

/**
 * A caller address space: `size` bytes mapped at `base`, anything else
 * faults; pages listed in `readOnly` (by VA) fault on write.
 */
export function fakeGuestMem(base: number, size: number, readOnly: number[] = []): GuestMem & { bytes: Uint8Array } {
  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  const at = (va: number, len: number, write: boolean): number => {
    const off = va - base;
    if (!(off >= 0 && off + len <= size)) throw new GuestPageFault(va, write ? GuestPageFault.PF_WRITE : 0);
    if (write) {
      for (const ro of readOnly) {
        if (va < ro + 4096 && va + len > ro) throw new GuestPageFault(va, GuestPageFault.PF_PRESENT | GuestPageFault.PF_WRITE);
      }
    }
    return off;
  };
  return {
    bytes,
    getUint8: (va) => dv.getUint8(at(va, 1, false)),
    getInt8: (va) => dv.getInt8(at(va, 1, false)),
    getUint16: (va) => dv.getUint16(at(va, 2, false), true),
    getInt16: (va) => dv.getInt16(at(va, 2, false), true),
    getUint32: (va) => dv.getUint32(at(va, 4, false), true),
    getInt32: (va) => dv.getInt32(at(va, 4, false), true),
    getBigUint64: (va) => dv.getBigUint64(at(va, 8, false), true),
    getBigInt64: (va) => dv.getBigInt64(at(va, 8, false), true),
    setUint8: (va, v) => dv.setUint8(at(va, 1, true), v),
    setInt8: (va, v) => dv.setInt8(at(va, 1, true), v),
    setUint16: (va, v) => dv.setUint16(at(va, 2, true), v, true),
    setInt16: (va, v) => dv.setInt16(at(va, 2, true), v, true),
    setUint32: (va, v) => dv.setUint32(at(va, 4, true), v, true),
    setInt32: (va, v) => dv.setInt32(at(va, 4, true), v, true),
    setBigUint64: (va, v) => dv.setBigUint64(at(va, 8, true), v, true),
    setBigInt64: (va, v) => dv.setBigInt64(at(va, 8, true), v, true),
    readBytes: (va, len) => bytes.slice(at(va, len, false), at(va, len, false) + len),
    writeBytes: (va, data) => { bytes.set(data, at(va, data.length, true)); },
    fill: (va, len, b) => { const o = at(va, len, true); bytes.fill(b, o, o + len); },
    copyWithin: (dst, src, len) => { bytes.copyWithin(at(dst, len, true), at(src, len, false), at(src, len, false) + len); },
  };
}

/** A CallCtx over a fake address space. */
export function callCtx(domid: number, mem: GuestMem, privileged = domid === 0, vcpuId = 0): CallCtx {
  return { domid, vcpuId, privileged, mem };
}

/*
 * The small hypercalls: set_callbacks, set_trap_table, console_io,
 * xen_version, vm_assist and multicall.
 *
 * Callbacks and the virtual IDT are stored where Xen's vCPU context keeps
 * them (event_callback_eip, failsafe_callback_eip, syscall_callback_eip,
 * trap_ctxt[256]), so they travel with get/setvcpucontext and the
 * migration stream.
 */
import { trap_info, HYPERVISOR_VIRT_START } from '../public/arch-x86_64.js';
import {
  CONSOLEIO_write, CONSOLEIO_read, XENVER_version, XENVER_extraversion, XENVER_compile_info, XENVER_capabilities,
  XENVER_changeset, XENVER_platform_parameters, XENVER_get_features, XENVER_pagesize, XENVER_guest_handle,
  XENVER_commandline, XENVER_build_id, XEN_EXTRAVERSION_LEN, XEN_CAPABILITIES_INFO_LEN, XEN_CHANGESET_INFO_LEN, VMASST_CMD_enable,
  VMASST_CMD_disable, VMASST_TYPE_4gb_segments, VMASST_TYPE_4gb_segments_notify, VMASST_TYPE_writable_pagetables,
  VMASST_TYPE_pae_extended_cr3, VMASST_TYPE_architectural_iopl, VMASST_TYPE_runstate_update_flag, VMASST_TYPE_m2p_strict,
  xen_compile_info, xen_platform_parameters, xen_feature_info, multicall_entry,
} from '../public/xen.js';
import { EINVAL, ENOSYS, EPERM, ESRCH, EFAULT, ENODATA } from '../public/errno.js';
import { PAGE_SIZE, vaFromCanonical } from '../public/types.js';
import { guestAccess, ptrArg, i32Arg, u32Arg, type HypercallHandler } from './hcall.js';
import { CTX_EVENT_CALLBACK, CTX_FAILSAFE_CALLBACK, CTX_SYSCALL_CALLBACK, CTX_TRAP_CTXT, CTX_VM_ASSIST } from './vcpu.js';
import type { Machine } from './machine.js';

export const XEN_MAJOR = 4;
export const XEN_MINOR = 17;
export const XEN_EXTRAVERSION = '.0-xenport';
export const XEN_CAPABILITIES = 'xen-3.0-x86_64 ';
/** Bytes console_io moves per call at most (Xen works in chunks; so do we). */
const CONSOLE_IO_MAX = 64 * 1024;
const NR_VECTORS = 256;

const VMASST_VALID = (1 << VMASST_TYPE_4gb_segments) | (1 << VMASST_TYPE_4gb_segments_notify)
  | (1 << VMASST_TYPE_writable_pagetables) | (1 << VMASST_TYPE_pae_extended_cr3)
  | (1 << VMASST_TYPE_architectural_iopl) | (1 << VMASST_TYPE_runstate_update_flag);

/** A canonical 64-bit argument, or undefined. */
function canonical(v: bigint): boolean {
  return vaFromCanonical(v) !== undefined;
}

/** set_callbacks(event_address, failsafe_address, syscall_address). */
export function makeSetCallbacks(m: Machine): HypercallHandler {
  return (c, a1, a2, a3) => {
    const v = m.domain(c.domid)?.vcpus[c.vcpuId];
    if (v === undefined) return -ESRCH;
    if (!canonical(a1) || !canonical(a2) || !canonical(a3)) return -EINVAL;
    v.regs.setCtxU64(CTX_EVENT_CALLBACK, a1);
    v.regs.setCtxU64(CTX_FAILSAFE_CALLBACK, a2);
    v.regs.setCtxU64(CTX_SYSCALL_CALLBACK, a3);
    return 0;
  };
}

/**
 * set_trap_table(traps): entries up to one whose address is 0; a null
 * pointer clears the whole table.
 */
export function makeSetTrapTable(m: Machine): HypercallHandler {
  return (c, a1) => guestAccess(() => {
    const v = m.domain(c.domid)?.vcpus[c.vcpuId];
    if (v === undefined) return -ESRCH;
    if (BigInt.asUintN(64, a1) === 0n) {
      v.ctx.fill(0, CTX_TRAP_CTXT, CTX_TRAP_CTXT + NR_VECTORS * trap_info.size);
      return 0;
    }
    const base = ptrArg(a1);
    if (base === undefined) return -EFAULT;
    // One pass over at most 256 entries (a guest may repeat vectors).
    for (let i = 0; i < NR_VECTORS; i++) {
      const t = trap_info.view(c.mem, base + i * trap_info.size);
      const address = t.get('address');
      if (address === 0n) return 0;
      if (!canonical(address)) return -EINVAL;
      const dst = trap_info.view(new DataView(v.ctx.buffer, v.ctx.byteOffset), CTX_TRAP_CTXT + t.get('vector') * trap_info.size);
      dst.set('vector', t.get('vector'));
      dst.set('flags', t.get('flags'));
      dst.set('cs', t.get('cs'));
      dst.set('address', address);
    }
    return 0;
  });
}

/**
 * console_io(cmd, count, buffer): write goes to the domain's console log
 * and the hypervisor ring as `(dN) ...`; read (dom0 only) takes host input.
 */
export function makeConsoleIo(m: Machine): HypercallHandler {
  return (c, a1, a2, a3) => guestAccess(() => {
    const cmd = i32Arg(a1);
    const count = u32Arg(a2);
    const buf = ptrArg(a3);
    if (buf === undefined) return -EFAULT;
    switch (cmd) {
      case CONSOLEIO_write: {
        if (count > CONSOLE_IO_MAX) return -EINVAL;
        const bytes = c.mem.readBytes(buf, count);
        m.log.guestWrite(c.domid, Buffer.from(bytes).toString('latin1'));
        return 0;
      }
      case CONSOLEIO_read: {
        if (!c.privileged) return -EPERM;
        const text = m.log.takeInput(Math.min(count, CONSOLE_IO_MAX));
        c.mem.writeBytes(buf, Buffer.from(text, 'latin1'));
        return text.length;
      }
      default:
        return -ENOSYS;
    }
  });
}

function putString(mem: { writeBytes(va: number, d: Uint8Array): void }, va: number, s: string, size: number): void {
  const out = new Uint8Array(size);
  out.set(Buffer.from(s.slice(0, size - 1), 'latin1'));
  mem.writeBytes(va, out);
}

/** xen_version(cmd, arg). */
export function makeXenVersion(m: Machine): HypercallHandler {
  return (c, a1, a2) => guestAccess(() => {
    const cmd = i32Arg(a1);
    const arg = ptrArg(a2);
    switch (cmd) {
      case XENVER_version:
        return (XEN_MAJOR << 16) | XEN_MINOR;
      case XENVER_pagesize:
        return PAGE_SIZE;
    }
    if (arg === undefined) return -EFAULT;
    switch (cmd) {
      case XENVER_extraversion:
        putString(c.mem, arg, XEN_EXTRAVERSION, XEN_EXTRAVERSION_LEN);
        return 0;
      case XENVER_compile_info: {
        const v = xen_compile_info.view(c.mem, arg);
        c.mem.readBytes(arg, xen_compile_info.size);
        v.setString('compiler', `node ${process.version}`);
        v.setString('compile_by', 'xenport');
        v.setString('compile_domain', 'xenport');
        v.setString('compile_date', '');
        return 0;
      }
      case XENVER_capabilities:
        putString(c.mem, arg, XEN_CAPABILITIES, XEN_CAPABILITIES_INFO_LEN);
        return 0;
      case XENVER_changeset:
        putString(c.mem, arg, 'xenport', XEN_CHANGESET_INFO_LEN);
        return 0;
      case XENVER_platform_parameters:
        xen_platform_parameters.view(c.mem, arg).set('virt_start', HYPERVISOR_VIRT_START);
        return 0;
      case XENVER_get_features: {
        const f = xen_feature_info.view(c.mem, arg);
        f.get('submap_idx');
        // No optional XENFEAT_* are offered: guests take the plain PV paths.
        f.set('submap', 0);
        return 0;
      }
      case XENVER_guest_handle: {
        const d = m.domain(c.domid);
        if (d === undefined) return -ESRCH;
        c.mem.writeBytes(arg, d.handle);
        return 0;
      }
      case XENVER_commandline:
        if (!c.privileged) return -EPERM;
        putString(c.mem, arg, '', 1024);
        return 0;
      default:
        return cmd === XENVER_build_id ? -ENODATA : -ENOSYS;
    }
  });
}

/** vm_assist(cmd, type): per-domain VMASST_TYPE_* bits, mirrored in each vCPU's context. */
export function makeVmAssist(m: Machine): HypercallHandler {
  return (c, a1, a2) => {
    const d = m.domain(c.domid);
    if (d === undefined) return -ESRCH;
    const cmd = u32Arg(a1);
    const type = u32Arg(a2);
    if (type === VMASST_TYPE_m2p_strict) return -EINVAL;
    if (type >= 32 || ((1 << type) & VMASST_VALID) === 0) return -EINVAL;
    if (cmd === VMASST_CMD_enable) d.vmAssist |= 1 << type;
    else if (cmd === VMASST_CMD_disable) d.vmAssist &= ~(1 << type);
    else return -ENOSYS;
    for (const v of d.vcpus) v.regs.setCtxU64(CTX_VM_ASSIST, BigInt(d.vmAssist >>> 0));
    return 0;
  };
}

/** multicall(call_list, nr_calls): each entry's result written back, as Xen. */
export function makeMulticall(m: Machine): HypercallHandler {
  return (c, a1, a2) => guestAccess(() => {
    const list = ptrArg(a1);
    const nr = u32Arg(a2);
    if (list === undefined) return -EFAULT;
    if (nr > 1024) return -EINVAL;
    const d = m.domain(c.domid);
    const v = d?.vcpus[c.vcpuId];
    if (d === undefined || v === undefined) return -ESRCH;
    for (let i = 0; i < nr; i++) {
      const e = multicall_entry.view(c.mem, list + i * multicall_entry.size);
      const op = Number(BigInt.asUintN(32, e.get('op')));
      if (op === 13) {
        e.set('result', BigInt.asUintN(64, BigInt(-EINVAL)));
        continue;
      }
      const rc = m.hypercalls.call(c, op, e.getAt('args', 0), e.getAt('args', 1), e.getAt('args', 2), e.getAt('args', 3), e.getAt('args', 4),
        (err, nrr) => (d.isHost ? rethrow(err) : m.hypercallBug(d, v, err, nrr)));
      e.set('result', BigInt.asUintN(64, BigInt(rc)));
    }
    return 0;
  });
}

function rethrow(e: unknown): never {
  throw e;
}

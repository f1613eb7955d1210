/*
 * Loading a vcpu_guest_context into a vCPU (XEN_DOMCTL_setvcpucontext,
 * VCPUOP_initialise), as Xen's arch_set_info_guest does for a PV vCPU:
 *
 *  - The context is a byte copy in Xen's layout; CR3 (ctrlreg[3]) names
 *    the L4 to run on. It must be a frame of the domain that validates as
 *    an L4 (the vCPU takes a typed reference on it, which pins it in
 *    use); otherwise -EINVAL. ctrlreg[1], the user-mode L4, likewise when
 *    non-zero.
 *  - An already initialised vCPU may only be given a context with the same
 *    CR3 (-EOPNOTSUPP otherwise): that is how the toolstack changes a
 *    register of a live or suspended vCPU, e.g. rax = 1 for a cancelled
 *    suspend.
 *  - VGCF_online in flags brings the vCPU up.
 *  - A null context (toolstack) resets the vCPU: down, uninitialised, its
 *    base pointers dropped.
 */
import { EINVAL, EOPNOTSUPP } from '../public/errno.js';
import { vcpu_guest_context } from '../public/arch-x86_64.js';
import { clearBaseptrs, setBaseptr, setUserBaseptr } from './mm.js';
import type { Machine } from './machine.js';
import type { Domain } from './domain.js';
import { VCPU_CONTEXT_SIZE, VcpuRegs, type Vcpu } from './vcpu.js';

export function setContext(m: Machine, d: Domain, v: Vcpu, bytes: Uint8Array): number {
  if (d.dying || bytes.length < VCPU_CONTEXT_SIZE) return -EINVAL;
  const incoming = new VcpuRegs(bytes.slice(0, VCPU_CONTEXT_SIZE));
  const cr3 = incoming.ctxCr(3);
  const userCr3 = incoming.ctxCr(1);
  if ((cr3 & 0xfffn) !== 0n || (userCr3 & 0xfffn) !== 0n) return -EINVAL;
  const cr3Mfn = Number(cr3 >> 12n);
  const userMfn = Number(userCr3 >> 12n);
  if (cr3Mfn > m.frames.nrFrames || userMfn > m.frames.nrFrames) return -EINVAL;
  if (v.initialised) {
    if (cr3Mfn !== v.mmu.cr3Mfn || userMfn !== v.mmu.userCr3Mfn) return -EOPNOTSUPP;
  } else {
    if (cr3Mfn === 0) return -EINVAL;
    const rc = setBaseptr(m.mmEnv, v.mmu, cr3Mfn);
    if (rc !== 0) return rc;
    if (userMfn !== 0) {
      const urc = setUserBaseptr(m.mmEnv, v.mmu, userMfn);
      if (urc !== 0) {
        clearBaseptrs(m.mmEnv, v.mmu);
        return urc;
      }
    }
  }
  v.loadContext(bytes);
  if (v.up) m.sched.wake(v);
  return 0;
}

/** The toolstack's null context: back to a fresh, down vCPU. */
export function resetVcpu(m: Machine, v: Vcpu): void {
  clearBaseptrs(m.mmEnv, v.mmu);
  v.ctx.fill(0);
  v.up = false;
  v.initialised = false;
  v.blocked = 'none';
  m.timers.cancel(v.singleshot);
  m.timers.cancel(v.periodic);
  m.timers.cancel(v.pollTimer);
}

export const VCPU_GUEST_CONTEXT_SIZE = vcpu_guest_context.size;

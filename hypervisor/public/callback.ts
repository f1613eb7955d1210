/*
 * xen/include/public/callback.h: registering guest entry points
 * (`callback_op`), the newer form of `set_callbacks`.
 */
import { struct, u16, ulong } from './layout.js';

/** Event upcall: entered when an event is pending and not masked. */
export const CALLBACKTYPE_event = 0;
/** Entered when Xen cannot restore the guest's state (bad segment, ...). */
export const CALLBACKTYPE_failsafe = 1;
/** x86_64: SYSCALL from a 64-bit user program. */
export const CALLBACKTYPE_syscall = 2;
export const CALLBACKTYPE_sysenter_deprecated = 3;
export const CALLBACKTYPE_nmi = 4;
export const CALLBACKTYPE_sysenter = 5;
export const CALLBACKTYPE_syscall32 = 7;

export const _CALLBACKF_mask_events = 0;
/** Mask events (set evtchn_upcall_mask) on entry to the callback. */
export const CALLBACKF_mask_events = 1 << _CALLBACKF_mask_events;

/** Argument: struct callback_register. */
export const CALLBACKOP_register = 0;
/** Argument: struct callback_unregister. */
export const CALLBACKOP_unregister = 1;

/** `typedef unsigned long xen_callback_t;` (x86_64: a virtual address). */
export const xen_callback_t = ulong;

/*
 * struct callback_register {
 *     uint16_t type;            // CALLBACKTYPE_*
 *     uint16_t flags;           // CALLBACKF_*
 *     xen_callback_t address;
 * };
 */
export const callback_register = struct('struct callback_register', {
  type: u16,
  flags: u16,
  address: xen_callback_t,
});

/*
 * struct callback_unregister {
 *     uint16_t type;
 *     uint16_t _unused;
 * };
 */
export const callback_unregister = struct('struct callback_unregister', {
  type: u16,
  _unused: u16,
});

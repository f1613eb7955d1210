/*
 * __HYPERVISOR_event_channel_op(cmd, arg) and the old
 * __HYPERVISOR_event_channel_op_compat(struct evtchn_op *): decode the
 * argument struct from the caller's memory, run the operation, write the
 * OUT fields back. A fault on the argument is -EFAULT; as on Xen, a fault
 * while writing the result back after the operation took effect is still
 * reported as -EFAULT (undoing it would be worse).
 */
import type { StructLayout, StructView, Fields } from '../public/layout.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_bind_ipi,
  EVTCHNOP_close, EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_bind_vcpu, EVTCHNOP_unmask, EVTCHNOP_reset,
  EVTCHNOP_bind_pirq, EVTCHNOP_init_control, EVTCHNOP_expand_array, EVTCHNOP_set_priority,
  EVTCHNSTAT_unbound, EVTCHNSTAT_interdomain, EVTCHNSTAT_virq,
  evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_bind_ipi, evtchn_close,
  evtchn_send, evtchn_status, evtchn_bind_vcpu, evtchn_unmask, evtchn_reset, evtchn_op,
} from '../public/event_channel.js';
import { ENOSYS, EPERM } from '../public/errno.js';
import { EFAULT_RC, guestAccess, i32Arg, ptrArg, type CallCtx, type HypercallHandler } from './hcall.js';
import type { EventChannels } from './evtchn.js';

/** Run one EVTCHNOP_* with its argument struct at `va` of the caller's memory. */
export function eventChannelOp(ev: EventChannels, c: CallCtx, cmd: number, va: number): number {
  // copy_from_guest: the whole struct must be readable before anything happens.
  const arg = <F extends Fields>(l: StructLayout<F>): StructView<F> => {
    c.mem.readBytes(va, l.size);
    return l.view(c.mem, va);
  };
  switch (cmd) {
    case EVTCHNOP_alloc_unbound: {
      const v = arg(evtchn_alloc_unbound);
      const port = ev.allocUnbound(c, v.get('dom'), v.get('remote_dom'));
      if (port < 0) return port;
      v.set('port', port);
      return 0;
    }
    case EVTCHNOP_bind_interdomain: {
      const v = arg(evtchn_bind_interdomain);
      const port = ev.bindInterdomain(c, v.get('remote_dom'), v.get('remote_port'));
      if (port < 0) return port;
      v.set('local_port', port);
      return 0;
    }
    case EVTCHNOP_bind_virq: {
      const v = arg(evtchn_bind_virq);
      // virq and vcpu are C ints in Xen's handler: huge values are negative there.
      const port = ev.bindVirq(c, v.get('virq') | 0, v.get('vcpu') | 0);
      if (port < 0) return port;
      v.set('port', port);
      return 0;
    }
    case EVTCHNOP_bind_ipi: {
      const v = arg(evtchn_bind_ipi);
      const port = ev.bindIpi(c, v.get('vcpu') | 0);
      if (port < 0) return port;
      v.set('port', port);
      return 0;
    }
    case EVTCHNOP_close:
      return ev.close(c, arg(evtchn_close).get('port'));
    case EVTCHNOP_send:
      return ev.send(c, arg(evtchn_send).get('port'));
    case EVTCHNOP_status: {
      const v = arg(evtchn_status);
      const st = ev.status(c, v.get('dom'), v.get('port'));
      if (typeof st === 'number') return st;
      v.set('status', st.status);
      v.set('vcpu', st.vcpu);
      const u = v.sub('u');
      if (st.status === EVTCHNSTAT_unbound) u.sub('unbound').set('dom', st.dom ?? 0);
      else if (st.status === EVTCHNSTAT_interdomain) {
        u.sub('interdomain').set('dom', st.dom ?? 0);
        u.sub('interdomain').set('port', st.port ?? 0);
      } else if (st.status === EVTCHNSTAT_virq) u.set('virq', st.virq ?? 0);
      return 0;
    }
    case EVTCHNOP_bind_vcpu: {
      const v = arg(evtchn_bind_vcpu);
      return ev.bindVcpu(c, v.get('port'), v.get('vcpu'));
    }
    case EVTCHNOP_unmask:
      return ev.unmask(c, arg(evtchn_unmask).get('port'));
    case EVTCHNOP_reset:
      return ev.reset(c, arg(evtchn_reset).get('dom'));
    case EVTCHNOP_bind_pirq:
      // No physical IRQs here: Xen says -EPERM to a domain without access to the pirq.
      return -EPERM;
    case EVTCHNOP_init_control:
    case EVTCHNOP_expand_array:
    case EVTCHNOP_set_priority:
      // FIFO ABI not provided: guests fall back to 2-level on -ENOSYS, as with old Xen.
      return -ENOSYS;
    default:
      return -ENOSYS;
  }
}

/** Handler for __HYPERVISOR_event_channel_op(int cmd, void *arg). */
export function makeEventChannelOp(ev: EventChannels): HypercallHandler {
  return (c, a1, a2) => {
    const va = ptrArg(a2);
    if (va === undefined) return EFAULT_RC;
    const cmd = i32Arg(a1);
    return guestAccess(() => eventChannelOp(ev, c, cmd, va));
  };
}

/** Handler for __HYPERVISOR_event_channel_op_compat(struct evtchn_op *op). */
export function makeEventChannelOpCompat(ev: EventChannels): HypercallHandler {
  const uOff = evtchn_op.offsetOf('u');
  return (c, a1) => {
    const va = ptrArg(a1);
    if (va === undefined) return EFAULT_RC;
    return guestAccess(() => eventChannelOp(ev, c, evtchn_op.view(c.mem, va).get('cmd') | 0, va + uOff));
  };
}

/*
 * xen/include/public/event_channel.h: the event channel hypercall
 * (`event_channel_op(cmd, arg)`), one struct per command.
 *
 * A port is a bit in shared_info.evtchn_pending / evtchn_mask (2-level ABI).
 * Ports connect two domains (interdomain), a domain and a VIRQ, or two
 * vCPUs (IPI); an "unbound" port waits for a named remote domain to bind.
 */
import { struct, union, record, array, u8, u32, u64, domid_t, evtchn_port_t } from './layout.js';

export { evtchn_port_t };

export const EVTCHNOP_bind_interdomain = 0;
export const EVTCHNOP_bind_virq = 1;
export const EVTCHNOP_bind_pirq = 2;
export const EVTCHNOP_close = 3;
export const EVTCHNOP_send = 4;
export const EVTCHNOP_status = 5;
export const EVTCHNOP_alloc_unbound = 6;
export const EVTCHNOP_bind_ipi = 7;
export const EVTCHNOP_bind_vcpu = 8;
export const EVTCHNOP_unmask = 9;
export const EVTCHNOP_reset = 10;
export const EVTCHNOP_init_control = 11;
export const EVTCHNOP_expand_array = 12;
export const EVTCHNOP_set_priority = 13;

/** Ports of the 2-level ABI on x86_64: 64 selector bits x 64 bits per word. */
export const EVTCHN_2L_NR_CHANNELS = 8 * 8 * 64;

/*
 * struct evtchn_alloc_unbound {
 *     domid_t dom, remote_dom;  // IN: owner (DOMID_SELF or, for dom0, any),
 *                               //     and the only domain that may bind it
 *     evtchn_port_t port;       // OUT
 * };
 */
export const evtchn_alloc_unbound = struct('struct evtchn_alloc_unbound', {
  dom: domid_t,
  remote_dom: domid_t,
  port: evtchn_port_t,
});

/*
 * struct evtchn_bind_interdomain {
 *     domid_t remote_dom;         // IN
 *     evtchn_port_t remote_port;  // IN: an unbound port allocated for us
 *     evtchn_port_t local_port;   // OUT
 * };
 */
export const evtchn_bind_interdomain = struct('struct evtchn_bind_interdomain', {
  remote_dom: domid_t,
  remote_port: evtchn_port_t,
  local_port: evtchn_port_t,
});

/*
 * struct evtchn_bind_virq {
 *     uint32_t virq;       // IN: enum virq (VIRQ_* in xen.ts)
 *     uint32_t vcpu;       // IN
 *     evtchn_port_t port;  // OUT
 * };
 */
export const evtchn_bind_virq = struct('struct evtchn_bind_virq', {
  virq: u32,
  vcpu: u32,
  port: evtchn_port_t,
});

/** evtchn_bind_pirq.flags: the IRQ may be shared with other domains. */
export const BIND_PIRQ__WILL_SHARE = 1;

/*
 * struct evtchn_bind_pirq {
 *     uint32_t pirq;       // IN
 *     uint32_t flags;      // IN: BIND_PIRQ__*
 *     evtchn_port_t port;  // OUT
 * };
 */
export const evtchn_bind_pirq = struct('struct evtchn_bind_pirq', {
  pirq: u32,
  flags: u32,
  port: evtchn_port_t,
});

/*
 * struct evtchn_bind_ipi {
 *     uint32_t vcpu;       // IN
 *     evtchn_port_t port;  // OUT
 * };
 */
export const evtchn_bind_ipi = struct('struct evtchn_bind_ipi', {
  vcpu: u32,
  port: evtchn_port_t,
});

/*
 * struct evtchn_close {
 *     evtchn_port_t port;  // IN
 * };
 */
export const evtchn_close = struct('struct evtchn_close', {
  port: evtchn_port_t,
});

/*
 * struct evtchn_send {
 *     evtchn_port_t port;  // IN: our end; the event is raised at the other
 * };
 */
export const evtchn_send = struct('struct evtchn_send', {
  port: evtchn_port_t,
});

/* evtchn_status.status */
/** Not in use. */
export const EVTCHNSTAT_closed = 0;
/** Waiting for the remote domain to bind. */
export const EVTCHNSTAT_unbound = 1;
/** Connected to a port of another (or the same) domain. */
export const EVTCHNSTAT_interdomain = 2;
export const EVTCHNSTAT_pirq = 3;
export const EVTCHNSTAT_virq = 4;
export const EVTCHNSTAT_ipi = 5;

const evtchn_status_unbound = struct('struct evtchn_status u.unbound', { dom: domid_t });
const evtchn_status_interdomain = struct('struct evtchn_status u.interdomain', {
  dom: domid_t,
  port: evtchn_port_t,
});
const evtchn_status_u = union('struct evtchn_status u', {
  unbound: record(evtchn_status_unbound),
  interdomain: record(evtchn_status_interdomain),
  pirq: u32,
  virq: u32,
});

/*
 * struct evtchn_status {
 *     domid_t  dom;            // IN
 *     evtchn_port_t port;      // IN
 *     uint32_t status;         // OUT: EVTCHNSTAT_*
 *     uint32_t vcpu;           // OUT: vCPU the port notifies
 *     union {
 *         struct { domid_t dom; } unbound;          // EVTCHNSTAT_unbound
 *         struct {
 *             domid_t dom;
 *             evtchn_port_t port;
 *         } interdomain;                            // EVTCHNSTAT_interdomain
 *         uint32_t pirq;                            // EVTCHNSTAT_pirq
 *         uint32_t virq;                            // EVTCHNSTAT_virq
 *     } u;
 * };
 */
export const evtchn_status = struct('struct evtchn_status', {
  dom: domid_t,
  port: evtchn_port_t,
  status: u32,
  vcpu: u32,
  u: record(evtchn_status_u),
});

/*
 * struct evtchn_bind_vcpu {
 *     evtchn_port_t port;  // IN
 *     uint32_t vcpu;       // IN: notify this vCPU from now on
 * };
 */
export const evtchn_bind_vcpu = struct('struct evtchn_bind_vcpu', {
  port: evtchn_port_t,
  vcpu: u32,
});

/*
 * struct evtchn_unmask {
 *     evtchn_port_t port;  // IN: clear the mask; re-raise if pending
 * };
 */
export const evtchn_unmask = struct('struct evtchn_unmask', {
  port: evtchn_port_t,
});

/*
 * struct evtchn_reset {
 *     domid_t dom;  // IN: close every port of this domain
 * };
 */
export const evtchn_reset = struct('struct evtchn_reset', {
  dom: domid_t,
});

/*
 * struct evtchn_init_control {
 *     uint64_t control_gfn;  // IN
 *     uint32_t offset;       // IN
 *     uint32_t vcpu;         // IN
 *     uint8_t link_bits;     // OUT
 *     uint8_t _pad[7];
 * };
 */
export const evtchn_init_control = struct('struct evtchn_init_control', {
  control_gfn: u64,
  offset: u32,
  vcpu: u32,
  link_bits: u8,
  _pad: array(u8, 7),
});

/*
 * struct evtchn_expand_array {
 *     uint64_t array_gfn;  // IN
 * };
 */
export const evtchn_expand_array = struct('struct evtchn_expand_array', {
  array_gfn: u64,
});

/*
 * struct evtchn_set_priority {
 *     evtchn_port_t port;  // IN
 *     uint32_t priority;   // IN
 * };
 */
export const evtchn_set_priority = struct('struct evtchn_set_priority', {
  port: evtchn_port_t,
  priority: u32,
});

const evtchn_op_u = union('struct evtchn_op u', {
  alloc_unbound: record(evtchn_alloc_unbound),
  bind_interdomain: record(evtchn_bind_interdomain),
  bind_virq: record(evtchn_bind_virq),
  bind_pirq: record(evtchn_bind_pirq),
  bind_ipi: record(evtchn_bind_ipi),
  close: record(evtchn_close),
  send: record(evtchn_send),
  status: record(evtchn_status),
  bind_vcpu: record(evtchn_bind_vcpu),
  unmask: record(evtchn_unmask),
});

/*
 * The argument of the old `event_channel_op_compat` hypercall:
 * struct evtchn_op {
 *     uint32_t cmd; // enum event_channel_op
 *     union {
 *         evtchn_alloc_unbound_t    alloc_unbound;
 *         evtchn_bind_interdomain_t bind_interdomain;
 *         evtchn_bind_virq_t        bind_virq;
 *         evtchn_bind_pirq_t        bind_pirq;
 *         evtchn_bind_ipi_t         bind_ipi;
 *         evtchn_close_t            close;
 *         evtchn_send_t             send;
 *         evtchn_status_t           status;
 *         evtchn_bind_vcpu_t        bind_vcpu;
 *         evtchn_unmask_t           unmask;
 *     } u;
 * };
 */
export const evtchn_op = struct('struct evtchn_op', {
  cmd: u32,
  u: record(evtchn_op_u),
});

/*
 * Event channel bookkeeping of the guest (NetBSD's arch/xen/include/evtchn.h
 * and the evtsource table of evtchn.c), all in guest memory.
 *
 * One `struct evtsource` per port, in a table allocated at boot
 * (es_sources, NR_EVENT_CHANNELS entries). It says who handles the port and
 * how the port was made, so that resume can make it again: a VIRQ is bound
 * again by number, an interdomain port is re-created by its driver (the
 * peer's port changes), an unbound port re-allocated for the same peer.
 *
 *   struct evtsource {
 *       void   (*ev_handler)(void *arg, evtchn_port_t port); // kernel symbol, 0: none
 *       void    *ev_arg;
 *       uint64_t ev_count;          // events delivered (evcnt)
 *       uint8_t  ev_type;           // EVTCHN_TYPE_*
 *       uint8_t  ev_flags;          // EVF_*
 *       domid_t  ev_remote_dom;     // interdomain / unbound: the peer domain
 *       uint32_t ev_remote_port;    // interdomain: the peer's port
 *       uint32_t ev_virq;           // VIRQ: its number
 *       uint32_t ev_vcpu;           // VIRQ / IPI: the vCPU it is bound to
 *       char     ev_name[16];       // for messages (intrname)
 *   };
 *
 *   struct evtchn_state {
 *       struct evtsource *es_sources;    // [NR_EVENT_CHANNELS]
 *       uint32_t es_nsources;            // entries of the table
 *       uint32_t es_nbound;              // ports with a binding recorded
 *       uint64_t es_upcalls;             // times the upcall ran
 *       uint64_t es_stray;               // events on ports without a handler
 *       uint32_t es_virq_to_port[MAXCPUS * NR_VIRQS]; // 0: not bound (port 0 is never valid)
 *       uint8_t  es_op[64];              // EVTCHNOP argument block
 *   };
 */
import { struct, array, u8, u16, u32, u64, char } from '../../../hypervisor/public/layout.js';
import { NR_VIRQS } from '../../../hypervisor/public/xen.js';
import { MAXCPUS } from './vmparam.js';

/**
 * Ports this kernel can handle. Xen hands out the lowest free port, so a
 * guest reaches this only with a thousand open channels; a port past it is
 * closed again and the bind fails with ENOSPC.
 */
export const NR_EVENT_CHANNELS = 1024;

export const EVSOURCE_NAMELEN = 16;

export const evtsource = struct('struct evtsource', {
  ev_handler: u64,
  ev_arg: u64,
  ev_count: u64,
  ev_type: u8,
  ev_flags: u8,
  ev_remote_dom: u16,
  ev_remote_port: u32,
  ev_virq: u32,
  ev_vcpu: u32,
  ev_name: array(char, EVSOURCE_NAMELEN),
});

/* ev_type: how the port was made. */
export const EVTCHN_TYPE_NONE = 0;
export const EVTCHN_TYPE_VIRQ = 1;
/** EVTCHNOP_alloc_unbound: waits for ev_remote_dom to bind it. */
export const EVTCHN_TYPE_UNBOUND = 2;
/** EVTCHNOP_bind_interdomain to (ev_remote_dom, ev_remote_port). */
export const EVTCHN_TYPE_INTERDOMAIN = 3;
/** A port the builder made for us (console, xenstore): known, not ours to re-create. */
export const EVTCHN_TYPE_PRESET = 4;

/* ev_flags */
/** The driver wants the port unmasked (resume unmasks it again). */
export const EVF_UNMASKED = 0x01;
/** events_suspend closed the port (a VIRQ); events_resume binds it again. */
export const EVF_SUSPENDED = 0x02;

export const evtchn_state = struct('struct evtchn_state', {
  es_sources: u64,
  es_nsources: u32,
  es_nbound: u32,
  es_upcalls: u64,
  es_stray: u64,
  es_virq_to_port: array(u32, MAXCPUS * NR_VIRQS),
  es_op: array(u8, 64),
});

/*
 * xenbus: the guest's structures, all in guest memory.
 *
 * One `struct xenbus_softc` (the softc of xenbus0) holds everything the
 * xenstore client remembers between two entries: where the store page is,
 * the request table, the queue of bytes still to write, the half-read
 * message, the registered watches, the jobs waiting for the xenbus thread,
 * and the devices found under `device/`. The smaller structs hang off it
 * in kmem.
 *
 *   struct xs_request {                  // one request, kmem, header + message
 *       struct tailq_entry rq_sendq;     // sc_sendq while bytes remain to write
 *       struct tailq_entry rq_owned;     // sc_owned while an lwp will collect it
 *       struct lwp *rq_owner;            // that lwp (NULL: nobody waits, freed on reply)
 *       uint32_t rq_state;               // XSRQ_*
 *       int32_t  rq_error;               // NetBSD errno once done
 *       uint32_t rq_slot;                // request table slot (XS_NOSLOT: none yet)
 *       uint32_t rq_req_id;              // id sent in xsd_sockmsg.req_id
 *       uint32_t rq_msglen;              // header + payload bytes
 *       uint32_t rq_written;             // bytes already in the ring
 *       uint32_t rq_rtype;               // reply: xsd_sockmsg.type
 *       uint32_t rq_rlen;                // reply: payload bytes
 *       char    *rq_reply;               // reply payload, kmem rq_rlen + 1, NUL-terminated
 *       uint64_t rq_cookie;              // caller's value, handed back with the result
 *       char     rq_msg[];               // struct xsd_sockmsg + payload
 *   };
 *
 *   struct xenbus_watch {                // kmem, sized for its path
 *       struct tailq_entry xw_list;      // sc_watches
 *       uint32_t xw_id;                  // the token, in decimal; never 0
 *       uint32_t xw_size;                // bytes allocated
 *       void   (*xw_func)(void *arg, int error);  // first step of the callback
 *       void    *xw_arg;
 *       char     xw_path[];
 *   };
 *
 *   struct xs_job {                      // work for the xenbus thread, kmem
 *       struct tailq_entry j_list;       // sc_jobs
 *       void   (*j_func)(void *arg, int error);
 *       void    *j_arg;
 *       uint32_t j_watch;                // watch that fired (0: a plain job)
 *       uint32_t j_size;                 // bytes allocated
 *       char     j_path[];               // the path that changed ("" for a job)
 *   };
 *
 *   struct xenbus_device {               // one device found under device/, kmem
 *       struct tailq_entry xbusd_list;   // sc_devices
 *       device_t xbusd_dev;              // the attached driver instance, or NULL
 *       void   (*xbusd_otherend_changed)(device_t, int state);
 *       uint32_t xbusd_id;               // the <id> of device/<type>/<id>
 *       uint32_t xbusd_otherend_id;      // backend domain
 *       uint32_t xbusd_otherend_watch;   // watch id on <otherend>/state, or 0
 *       uint32_t xbusd_state;            // last state we wrote (XenbusState)
 *       uint32_t xbusd_has_error;
 *       uint32_t xbusd_flags;
 *       char     xbusd_type[16];
 *       char     xbusd_path[64];         // "device/vbd/768"
 *       char     xbusd_otherend[128];    // "/local/domain/0/backend/vbd/1/768"
 *   };
 *
 *   struct xenbusdev_attach_args {       // aux of a driver attaching at xenbus0
 *       char     xa_type[16];
 *       uint32_t xa_id;
 *       uint32_t xa_otherend_id;
 *       struct xenbus_device *xa_xbusd;
 *   };
 */
import { struct, record, array, u8, u32, i32, u64, char } from '../../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { tailq_entry } from '../../../sys/sys/queue.js';
import { xsd_sockmsg } from '../../../hypervisor/public/io/xs_wire.js';
import { device_lookup, device_private } from '../../../sys/kern/subr_autoconf.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';

/** Slots of the request table: requests sent and waiting for their reply. */
export const XS_NREQ = 32;
/** rq_slot of a request that has no slot yet. */
export const XS_NOSLOT = 0xffff_ffff;
/** Watch events and jobs that may wait for the xenbus thread; more are dropped. */
export const XS_MAXJOBS = 256;

/* rq_state */
/** Queued: waiting for a table slot or ring space. */
export const XSRQ_QUEUED = 1;
/** Fully written, waiting for the reply. */
export const XSRQ_SENT = 2;
/** Reply in (or failed): the owner may collect it. */
export const XSRQ_DONE = 3;

/* sc_flags */
/** Connected to a store page and port. */
export const XBF_CONNECTED = 0x01;
/** xenstored broke the protocol: xenbus is off for good. */
export const XBF_DEAD = 0x02;
/** Suspended: requests queue up but are not written. */
export const XBF_SUSPENDED = 0x04;
/** The boot-time probe sequence has finished. */
export const XBF_BOOTED = 0x08;

export const XS_HDRSIZE = xsd_sockmsg.size;

export const xs_request = struct('struct xs_request', {
  rq_sendq: record(tailq_entry),
  rq_owned: record(tailq_entry),
  rq_owner: u64,
  rq_state: u32,
  rq_error: i32,
  rq_slot: u32,
  rq_req_id: u32,
  rq_msglen: u32,
  rq_written: u32,
  rq_rtype: u32,
  rq_rlen: u32,
  rq_reply: u64,
  rq_cookie: u64,
});
/** Offset of the message (header + payload) in a request. */
export const RQ_MSG = xs_request.size;

export const xenbus_watch = struct('struct xenbus_watch', {
  xw_list: record(tailq_entry),
  xw_id: u32,
  xw_size: u32,
  xw_func: u64,
  xw_arg: u64,
});
export const XW_PATH = xenbus_watch.size;

export const xs_job = struct('struct xs_job', {
  j_list: record(tailq_entry),
  j_func: u64,
  j_arg: u64,
  j_watch: u32,
  j_size: u32,
});
export const J_PATH = xs_job.size;

export const XBUSD_TYPELEN = 16;
export const XBUSD_PATHLEN = 64;
export const XBUSD_OTHERENDLEN = 128;

export const xenbus_device = struct('struct xenbus_device', {
  xbusd_list: record(tailq_entry),
  xbusd_dev: u64,
  xbusd_otherend_changed: u64,
  xbusd_id: u32,
  xbusd_otherend_id: u32,
  xbusd_otherend_watch: u32,
  xbusd_state: u32,
  xbusd_has_error: u32,
  xbusd_flags: u32,
  xbusd_type: array(char, XBUSD_TYPELEN),
  xbusd_path: array(char, XBUSD_PATHLEN),
  xbusd_otherend: array(char, XBUSD_OTHERENDLEN),
});

export const xenbusdev_attach_args = struct('struct xenbusdev_attach_args', {
  xa_type: array(char, XBUSD_TYPELEN),
  xa_id: u32,
  xa_otherend_id: u32,
  xa_xbusd: u64,
});

/** Longest message xenbus keeps for "why it stopped". */
export const XB_FAILMSG_LEN = 96;

/*
 *   struct xenbus_softc {
 *       device_t sc_dev;
 *       struct xenstore_domain_interface *sc_intf;  // store page (direct map)
 *       uint32_t sc_evtchn;              // store port
 *       uint32_t sc_flags;               // XBF_*
 *       uint32_t sc_nextgen;             // request id generation
 *       uint32_t sc_nsent;               // requests in the table
 *       uint32_t sc_nqueued;             // requests on sc_sendq
 *       uint32_t sc_nextwatch;           // last watch id handed out
 *       uint32_t sc_njobs;
 *       uint32_t sc_thread_lid;          // the xenbus thread (lwp id), 0 if none
 *       struct tailq_entry sc_sendq;     // requests with bytes still to write, FIFO
 *       struct tailq_entry sc_owned;     // requests an lwp will collect
 *       struct tailq_entry sc_watches;
 *       struct tailq_entry sc_jobs;
 *       struct tailq_entry sc_devices;
 *       struct xs_request *sc_table[XS_NREQ];   // slot -> request awaiting its reply
 *       uint8_t  sc_rhdr[16];            // the message being read: header so far
 *       uint32_t sc_rhdrgot;
 *       uint32_t sc_rgot;                // payload bytes so far
 *       char    *sc_rbody;               // payload buffer (kmem, len + 1), or NULL
 *       uint64_t sc_nin, sc_nout;        // messages read, requests written
 *       uint32_t sc_nbadreply;           // replies nobody asked for
 *       uint32_t sc_ndropped;            // events dropped (queue full, no memory)
 *       void   (*sc_suspend_hook)(void *, int); // what control/shutdown=suspend runs
 *       char    *sc_probe_types;         // probe chain: the listing of device/ (kmem)
 *       uint32_t sc_probe_typessize, sc_probe_ntypes, sc_probe_ti, sc_probe_ni;
 *       char    *sc_probe_ids;           // ... of device/<type>
 *       uint32_t sc_probe_idssize, sc_probe_nids;
 *       struct xenbus_device *sc_probe_xbusd;   // ... the device being probed
 *       uint32_t sc_device_watch;        // watch id on device/
 *       uint32_t sc_shutdown_watch;      // watch id on control/shutdown
 *       uint32_t sc_shutdown_tx, sc_shutdown_how, sc_shutdown_tries;  // shutdown chain
 *       char     sc_failmsg[XB_FAILMSG_LEN];   // why xenbus stopped
 *   };
 */
export const xenbus_softc = struct('struct xenbus_softc', {
  sc_dev: u64,
  sc_intf: u64,
  sc_evtchn: u32,
  sc_flags: u32,
  sc_nextgen: u32,
  sc_nsent: u32,
  sc_nqueued: u32,
  sc_nextwatch: u32,
  sc_njobs: u32,
  sc_thread_lid: u32,
  sc_sendq: record(tailq_entry),
  sc_owned: record(tailq_entry),
  sc_watches: record(tailq_entry),
  sc_jobs: record(tailq_entry),
  sc_devices: record(tailq_entry),
  sc_table: array(u64, XS_NREQ),
  sc_rhdr: array(u8, 16),
  sc_rhdrgot: u32,
  sc_rgot: u32,
  sc_rbody: u64,
  sc_nin: u64,
  sc_nout: u64,
  sc_nbadreply: u32,
  sc_ndropped: u32,
  sc_suspend_hook: u64,
  /* probe chain (xenbus_probe.ts) */
  sc_probe_types: u64,
  sc_probe_typessize: u32,
  sc_probe_ntypes: u32,
  sc_probe_ti: u32,
  sc_probe_ni: u32,
  sc_probe_ids: u64,
  sc_probe_idssize: u32,
  sc_probe_nids: u32,
  sc_probe_xbusd: u64,
  sc_device_watch: u32,
  /* shutdown chain (xenbus_shutdown.ts) */
  sc_shutdown_watch: u32,
  sc_shutdown_tx: u32,
  sc_shutdown_how: u32,
  sc_shutdown_tries: u32,
  sc_failmsg: array(char, XB_FAILMSG_LEN),
});

export type XenbusSoftcView = ReturnType<typeof xenbus_softc.view>;

/** Address of a member of the softc at `sc`. */
export function xb_addr(sc: number, name: keyof typeof xenbus_softc.fields & string): number {
  return sc + xenbus_softc.offsetOf(name);
}

/** The softc of xenbus0, or 0 before it attached. */
export function xenbus_softc_of(cpu: GuestCpu): number {
  const dev = device_lookup(cpu, 'xenbus', 0);
  return dev === 0 ? 0 : device_private(cpu, dev);
}

/*
 * The xenbus thread's frame (overlaid on its lwp's l_frame): the chain of
 * callback steps it is running, and scratch space the chain may use.
 *
 *   struct xenwatch_frame {
 *       void   (*xf_cont)(void *, int);  // next step of the running chain, or NULL
 *       void    *xf_arg;                 // argument every step of it gets
 *       struct xs_job *xf_job;           // job being run, freed when its chain ends
 *       uint64_t xf_scratch[XF_SCRATCH / 8];
 *   };
 */
export const XF_SCRATCH = 160;
export const xenwatch_frame = struct('struct xenwatch_frame', {
  xf_cont: u64,
  xf_arg: u64,
  xf_job: u64,
  xf_scratch: array(u64, XF_SCRATCH / 8),
});

/* Listed so the image's version hash covers this text (see kern_ksyms). */
export const xenbus_var_ksyms = ksymtab({ xb_addr, xenbus_softc_of });

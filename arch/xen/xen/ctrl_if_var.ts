/*
 * The guest's ctrl_if state (NetBSD's ctrl_if.c globals, Linux 2.4-xen's
 * ctrl_if.c), all in guest memory: the softc of ctrl_if0 and the request
 * records of guest -> dom0 messages.
 *
 *   struct ctrl_if_req {                  // one guest -> dom0 request (kmem)
 *       struct tailq_entry rq_list;       // on sc_txq while it waits for a slot
 *       struct tailq_entry rq_owned;      // on sc_owned while an lwp will collect it
 *       uint64_t rq_owner;                // that lwp; 0: freed when answered
 *       uint64_t rq_cont;                 // the owner's continuation
 *       uint32_t rq_state;                // CRQ_*
 *       int32_t  rq_error;                // 0, EIO (answer malformed), ENXIO (ctrl_if gone)
 *       uint32_t rq_idx;                  // tx index it went out at (CRQ_INRING, CRQ_DONE)
 *       uint32_t rq_pad;
 *       control_msg_t rq_msg;             // the request; once CRQ_DONE, dom0's answer
 *   };
 *
 *   struct ctrl_if_softc {
 *       device_t sc_dev;
 *       control_if_t *sc_page;            // the page in the direct map; 0: no ctrl_if
 *       uint64_t sc_pfn;                  // its PFN (the same after a restore)
 *       uint32_t sc_port;                 // our end of the event channel to dom0
 *       uint32_t sc_flags;                // CIF_*
 *       CONTROL_RING_IDX sc_tx_req_prod;  // tx_req_prod as we last wrote it
 *       CONTROL_RING_IDX sc_tx_resp_cons; // dom0's answers taken
 *       CONTROL_RING_IDX sc_rx_req_cons;  // dom0 requests answered (rx_resp_prod we wrote)
 *       uint32_t sc_txq_len;              // requests on sc_txq
 *       uint64_t sc_thread;               // the ctrl_if lwp (0: none)
 *       struct ctrl_if_req *sc_txslot[CONTROL_RING_SIZE]; // request in each tx slot
 *       struct tailq_entry sc_txq;        // requests waiting for a free slot, oldest first
 *       struct tailq_entry sc_owned;      // requests an lwp will collect, any state
 *       uint64_t sc_rxhand[256];          // receiver per message type (kernel symbol); 0: length-0 answer
 *       control_msg_t sc_rxmsg;           // the dom0 request being handled, edited into its answer
 *       uint64_t sc_tx_sent;              // requests put in the ring
 *       uint64_t sc_tx_answered;          // answers taken
 *       uint64_t sc_tx_waited;            // requests that found the ring full and waited
 *       uint32_t sc_tx_maxinflight;       // most requests in the ring at once
 *       uint32_t sc_tx_maxqueued;         // most requests waiting for a slot at once
 *       uint64_t sc_rx_handled;           // dom0 requests answered
 *       uint64_t sc_rx_unhandled;         // ... with length 0 because nobody handles the type
 *       uint64_t sc_notifies;             // events sent to dom0
 *       uint64_t sc_resumes;
 *       struct evtchn_status sc_status;   // EVTCHNOP_status argument block
 *       char     sc_broken[128];          // why ctrl_if was stopped ("" while it works)
 *   };
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { struct, record, array, u32, i32, u64, char } from '../../../hypervisor/public/layout.js';
import { control_msg, CONTROL_RING_SIZE } from '../../../hypervisor/public/domain_controller.js';
import { evtchn_status } from '../../../hypervisor/public/event_channel.js';
import { tailq_entry } from '../../../sys/sys/queue.js';
import { device_lookup, device_private } from '../../../sys/kern/subr_autoconf.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';

export const CTRL_IF_NTYPES = 256;
export const CTRL_IF_WHYLEN = 128;
/** Requests that may wait for a slot before ctrl_if_send_async says EAGAIN (blocking senders always queue). */
export const CTRL_IF_TXQ_MAX = 64;

export const ctrl_if_req = struct('struct ctrl_if_req', {
  rq_list: record(tailq_entry),
  rq_owned: record(tailq_entry),
  rq_owner: u64,
  rq_cont: u64,
  rq_state: u32,
  rq_error: i32,
  rq_idx: u32,
  rq_pad: u32,
  rq_msg: record(control_msg),
});

/* rq_state */
/** Waiting on sc_txq for a free slot. */
export const CRQ_QUEUED = 1;
/** In the tx ring, not answered yet. */
export const CRQ_INRING = 2;
/** Answered (or failed): rq_msg holds the answer, rq_error the verdict. */
export const CRQ_DONE = 3;

export const ctrl_if_softc = struct('struct ctrl_if_softc', {
  sc_dev: u64,
  sc_page: u64,
  sc_pfn: u64,
  sc_port: u32,
  sc_flags: u32,
  sc_tx_req_prod: u32,
  sc_tx_resp_cons: u32,
  sc_rx_req_cons: u32,
  sc_txq_len: u32,
  sc_thread: u64,
  sc_txslot: array(u64, CONTROL_RING_SIZE),
  sc_txq: record(tailq_entry),
  sc_owned: record(tailq_entry),
  sc_rxhand: array(u64, CTRL_IF_NTYPES),
  sc_rxmsg: record(control_msg),
  sc_tx_sent: u64,
  sc_tx_answered: u64,
  sc_tx_waited: u64,
  sc_tx_maxinflight: u32,
  sc_tx_maxqueued: u32,
  sc_rx_handled: u64,
  sc_rx_unhandled: u64,
  sc_notifies: u64,
  sc_resumes: u64,
  sc_status: record(evtchn_status),
  sc_broken: array(char, CTRL_IF_WHYLEN),
});

/* sc_flags */
/** The port has our handler and is unmasked: messages flow. */
export const CIF_CONNECTED = 0x01;
/** pmf suspended us: the port is masked, senders queue. */
export const CIF_SUSPENDED = 0x02;
/** dom0 broke the protocol (or the page/port made no sense): ctrl_if is off for good. */
export const CIF_BROKEN = 0x04;

export type CtrlIfSoftcView = ReturnType<typeof ctrl_if_softc.view>;

export function ctrl_if_view(cpu: GuestCpu, sc: number): CtrlIfSoftcView {
  return ctrl_if_softc.view(cpu.mem, sc);
}

/** ctrl_if0's softc, or 0 when the kernel has none. */
export function ctrl_if_softc_of(cpu: GuestCpu): number {
  const dev = device_lookup(cpu, 'ctrl_if', 0);
  return dev === 0 ? 0 : device_private(cpu, dev);
}

/** Address of a softc member (the wait channels are member addresses). */
export function cif_addr(sc: number, field: keyof typeof ctrl_if_softc.fields & string): number {
  return sc + ctrl_if_softc.offsetOf(field);
}

export function cif_setflag(cpu: GuestCpu, sc: number, set: number, clear = 0): void {
  const v = ctrl_if_view(cpu, sc);
  v.set('sc_flags', ((v.get('sc_flags') | set) & ~clear) >>> 0);
}

/* Listed so the image's version hash covers this text (and ctrl_if_softc_of is callable by symbol). */
export const ctrl_if_var_ksyms = ksymtab({ ctrl_if_view, ctrl_if_softc_of, cif_addr, cif_setflag });

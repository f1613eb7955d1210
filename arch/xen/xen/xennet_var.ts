/*
 * xennet: the softc of one Xen virtual network interface, in guest memory.
 *
 *   struct xennet_txreq {               // one per TX request id (= TX ring slots)
 *       struct mbuf *txr_m;             // the packet, on the id of its last slot; NULL otherwise
 *       uint32_t txr_gntref;            // grant of the slot's page; XN_NOREF: the id is free
 *       uint32_t txr_seq;               // submission order (requeued in it after a restore)
 *   };
 *
 *   struct xennet_rxreq {               // one per RX buffer
 *       uint8_t *rxr_page;              // the buffer page (direct map), kept for good
 *       uint32_t rxr_gntref;            // its (writable) grant while posted, XN_NOREF otherwise
 *       uint32_t rxr_posted;            // 1 while the backend owns it
 *   };
 *
 *   struct xennet_xenbus_softc {
 *       struct ifnet sc_if;             // first: the interface pointer is the softc
 *       device_t sc_dev;
 *       struct xenbus_device *sc_xbusd;
 *       netif_tx_sring_t *sc_tx_ring;   // ring pages (direct map)
 *       netif_rx_sring_t *sc_rx_ring;
 *       struct mbuf *sc_rx_m;           // frame being put together from more_data slots
 *       uint32_t sc_tx_ring_gntref, sc_rx_ring_gntref;   // XN_NOREF: none
 *       uint32_t sc_evtchn;             // our port (0: none)
 *       uint32_t sc_tx_prod_pvt, sc_tx_rsp_cons;         // FrontRing private indices
 *       uint32_t sc_rx_prod_pvt, sc_rx_rsp_cons;
 *       uint32_t sc_state;              // XN_STATE_*
 *       uint32_t sc_flags;              // XNF_*
 *       uint32_t sc_backend_id;
 *       uint32_t sc_step;               // connect chain: next node to write
 *       uint32_t sc_xstx;               // connect chain: its xenstore transaction
 *       uint32_t sc_generation;         // connections made so far
 *       uint32_t sc_txseq;              // next txr_seq
 *       uint32_t sc_tx_nfree;           // ids on sc_tx_free
 *       uint32_t sc_rx_nposted;         // buffers the backend holds
 *       uint32_t sc_ipaddr;             // address from xenstore or the command line (0: none)
 *       uint32_t sc_prefix;
 *       uint32_t sc_retries;            // connect chain: transaction restarts (EAGAIN)
 *       uint64_t sc_ntx_slots, sc_ntx_done, sc_nrx_frames, sc_nrx_dropped, sc_nrx_bad;
 *       uint64_t sc_nnotify, sc_nrequeued, sc_nintr;
 *       char     sc_failmsg[96];        // why the interface was disconnected
 *       uint16_t sc_tx_free[NET_TX_RING_SIZE];           // stack of free TX ids
 *       struct xennet_txreq sc_txreq[NET_TX_RING_SIZE];
 *       struct xennet_rxreq sc_rxreq[XENNET_RX_NBUF];
 *   };
 *
 * The xenstore nodes xennet reads and writes (io/netif.h names), frontend
 * directory device/vif/<id>/ and backend directory <backend>/:
 *
 *   toolstack  mac               "00:16:3e:xx:yy:zz": our hardware address (frontend dir)
 *              <backend>/ip      "10.0.0.2" or "10.0.0.2/24" (libxl writes the vif's ip= here);
 *                                the kernel command line's ip=<addr>[/<prefix>] wins for xennet0
 *   ours       tx-ring-ref       grant of the TX ring page        written in one transaction,
 *              rx-ring-ref       grant of the RX ring page        before state = Initialised
 *              event-channel     our unbound port, both rings
 *              request-rx-copy   1: the backend copies into our RX pages
 *              feature-rx-notify 1: we notify when we post RX buffers
 *              feature-sg        1: we take RX frames spanning buffers
 *              state             XenbusState (xenbus_switch_state)
 *   backend    feature-rx-copy   must be 1 (page flipping is not supported)
 *              state             watched (xenbus_watch_otherend)
 */
import { struct, record, array, u16, u32, u64, char } from '../../../hypervisor/public/layout.js';
import { NET_TX_RING_SIZE } from '../../../hypervisor/public/io/netif.js';
import { ifnet } from '../../../sys/net/if.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';

/** RX buffers (pages) posted to the backend: a quarter of the ring, 256 KiB. */
export const XENNET_RX_NBUF = 64;
export const XN_NOREF = 0xffff_ffff;
export const XN_FAILMSG_LEN = 96;

export const xennet_txreq = struct('struct xennet_txreq', {
  txr_m: u64,
  txr_gntref: u32,
  txr_seq: u32,
});

export const xennet_rxreq = struct('struct xennet_rxreq', {
  rxr_page: u64,
  rxr_gntref: u32,
  rxr_posted: u32,
});

export const xennet_xenbus_softc = struct('struct xennet_xenbus_softc', {
  sc_if: record(ifnet),
  sc_dev: u64,
  sc_xbusd: u64,
  sc_tx_ring: u64,
  sc_rx_ring: u64,
  sc_rx_m: u64,
  sc_tx_ring_gntref: u32,
  sc_rx_ring_gntref: u32,
  sc_evtchn: u32,
  sc_tx_prod_pvt: u32,
  sc_tx_rsp_cons: u32,
  sc_rx_prod_pvt: u32,
  sc_rx_rsp_cons: u32,
  sc_state: u32,
  sc_flags: u32,
  sc_backend_id: u32,
  sc_step: u32,
  sc_xstx: u32,
  sc_generation: u32,
  sc_txseq: u32,
  sc_tx_nfree: u32,
  sc_rx_nposted: u32,
  sc_ipaddr: u32,
  sc_prefix: u32,
  sc_retries: u32,
  sc_ntx_slots: u64,
  sc_ntx_done: u64,
  sc_nrx_frames: u64,
  sc_nrx_dropped: u64,
  sc_nrx_bad: u64,
  sc_nnotify: u64,
  sc_nrequeued: u64,
  sc_nintr: u64,
  sc_failmsg: array(char, XN_FAILMSG_LEN),
  sc_tx_free: array(u16, NET_TX_RING_SIZE),
  sc_txreq: array(record(xennet_txreq), NET_TX_RING_SIZE),
  sc_rxreq: array(record(xennet_rxreq), XENNET_RX_NBUF),
});

export type XennetSoftcView = ReturnType<typeof xennet_xenbus_softc.view>;

if (xennet_xenbus_softc.offsetOf('sc_if') !== 0) throw new Error('xennet: sc_if must come first (ifp == sc)');

/* sc_state */
/** Attached; no rings (never connected, or torn down). */
export const XN_STATE_DISCONNECTED = 0;
/** The xenbus handshake is running. */
export const XN_STATE_CONNECTING = 1;
/** Rings up, packets flow. */
export const XN_STATE_CONNECTED = 2;
/** xennet_xenbus_suspend ran: TX stopped, RX pages kept. */
export const XN_STATE_SUSPENDED = 3;
/** Disconnected for good: the backend misbehaved or the handshake failed. */
export const XN_STATE_DEAD = 4;
/** The backend closed the device; a backend that comes back is connected again. */
export const XN_STATE_CLOSED = 5;
export const XN_STATE_NAMES = Object.freeze(['disconnected', 'connecting', 'connected', 'suspended', 'dead', 'closed']);

/* sc_flags */
/** The MAC line has been printed. */
export const XNF_MAC_SHOWN = 0x01;
/** The ring pages could not be taken back from the previous backend: get new ones. */
export const XNF_RING_LOST = 0x02;
/** The address has been configured on the interface. */
export const XNF_ADDR_SET = 0x04;
/** Dropping the rest of a frame whose earlier slot was unusable. */
export const XNF_RX_DISCARD = 0x08;
/** A node write of the connect transaction failed: end it without committing. */
export const XNF_TX_FAILED = 0x10;
/** A connect chain is running on the xenbus thread. */
export const XNF_CHAIN_BUSY = 0x20;
/** The running chain must start over (a resume came while it ran). */
export const XNF_CHAIN_RESTART = 0x40;
/** Suspended in the middle of the handshake (not connected yet). */
export const XNF_SUSP_CONNECTING = 0x80;

export const SC_TXREQ = xennet_xenbus_softc.offsetOf('sc_txreq');
export const SC_RXREQ = xennet_xenbus_softc.offsetOf('sc_rxreq');
export const SC_TX_FREE = xennet_xenbus_softc.offsetOf('sc_tx_free');

export function xennet_txreq_addr(sc: number, id: number): number {
  return sc + SC_TXREQ + id * xennet_txreq.size;
}

export function xennet_rxreq_addr(sc: number, id: number): number {
  return sc + SC_RXREQ + id * xennet_rxreq.size;
}

export const xennet_var_ksyms = ksymtab({ xennet_txreq_addr, xennet_rxreq_addr });

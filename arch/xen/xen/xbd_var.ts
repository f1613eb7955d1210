/*
 * xbd: the softc of one Xen virtual block device, in guest memory.
 *
 *   struct xbd_shadow {                 // one per request id (= ring slots)
 *       struct buf *xs_bp;              // the buf this request serves; NULL: free
 *       uint32_t xs_seq;                // submission order: replay goes by it
 *       uint32_t xs_ngrant;             // segments whose grant is still ours to revoke
 *       uint64_t xs_va[11];             // the data pages, to grant them again after a restore
 *       blkif_request_t xs_req;         // the request as last sent (id = shadow index)
 *   };
 *
 *   struct xbd_xenbus_softc {
 *       struct dk_softc sc_dksc;        // the disk layer (dev/dksubr), first
 *       device_t sc_dev;
 *       struct xenbus_device *sc_xbusd;
 *       blkif_sring_t *sc_ring;         // the ring page (direct map); kept across connections
 *       uint32_t sc_ring_gntref;        // its grant to the backend (XBD_NOREF: none)
 *       uint32_t sc_evtchn;             // our port (0: none)
 *       uint32_t sc_req_prod_pvt;       // FrontRing private indices
 *       uint32_t sc_rsp_cons;
 *       uint32_t sc_state;              // XBD_STATE_*
 *       uint32_t sc_flags;              // XBDF_*
 *       uint32_t sc_handle;             // virtual-device: the handle of every request
 *       uint32_t sc_backend_id;         // backend domain
 *       uint64_t sc_sectors;            // disk size, 512-byte sectors (backend's `sectors`)
 *       uint32_t sc_secsize;            // backend's `sector-size`
 *       uint32_t sc_info;               // backend's `info` (VDISK_*)
 *       uint32_t sc_seq;                // next xs_seq
 *       uint32_t sc_nshadow;            // shadow entries in use
 *       uint32_t sc_generation;         // connections made so far
 *       uint32_t sc_gntgen;             // xengnt_generation of the grants and port we hold
 *       uint32_t sc_prev_state;         // sc_state when xbd_xenbus_suspend ran
 *       uint32_t sc_xstx;               // the connect chain's xenstore transaction
 *       uint32_t sc_step;               // next node the connect transaction writes
 *       uint32_t sc_retries;            // transaction restarts after EAGAIN
 *       int32_t  sc_txerr;              // first write error in the transaction
 *       uint64_t sc_nreq, sc_nrsp, sc_nreplayed, sc_nnotify;
 *       char     sc_failmsg[96];        // why the device was disconnected
 *       struct xbd_shadow sc_shadow[BLKIF_RING_SIZE];
 *   };
 *
 * The xenstore nodes xbd reads and writes (io/blkif.h names), frontend
 * directory device/vbd/<vdev>/ and backend directory <backend>/:
 *
 *   ours    ring-ref        grant of the ring page            written in a transaction
 *           event-channel   our unbound port                  with protocol, before
 *           protocol        "x86_64-abi"                      state = Initialised
 *           state           XenbusState (xenbus_switch_state)
 *   backend sectors         size in 512-byte sectors          read once the backend
 *           sector-size     bytes per logical sector          is Connected
 *           info            VDISK_* bits (VDISK_READONLY)
 *           feature-flush-cache   "1": BLKIF_OP_FLUSH_DISKCACHE works
 *           state           watched (otherend_changed)
 */
import { struct, record, array, u32, i32, u64, char } from '../../../hypervisor/public/layout.js';
import { blkif_request, BLKIF_RING_SIZE, BLKIF_MAX_SEGMENTS_PER_REQUEST } from '../../../hypervisor/public/io/blkif.js';
import { dk_softc } from '../../../dev/dksubr.js';

export const XBD_NSHADOW = BLKIF_RING_SIZE;
/** sc_ring_gntref / no grant held. */
export const XBD_NOREF = 0xffff_ffff;
export const XBD_FAILMSG_LEN = 96;

export const xbd_shadow = struct('struct xbd_shadow', {
  xs_bp: u64,
  xs_seq: u32,
  xs_ngrant: u32,
  xs_va: array(u64, BLKIF_MAX_SEGMENTS_PER_REQUEST),
  xs_req: record(blkif_request),
});

export const xbd_xenbus_softc = struct('struct xbd_xenbus_softc', {
  sc_dksc: record(dk_softc),
  sc_dev: u64,
  sc_xbusd: u64,
  sc_ring: u64,
  sc_ring_gntref: u32,
  sc_evtchn: u32,
  sc_req_prod_pvt: u32,
  sc_rsp_cons: u32,
  sc_state: u32,
  sc_flags: u32,
  sc_handle: u32,
  sc_backend_id: u32,
  sc_sectors: u64,
  sc_secsize: u32,
  sc_info: u32,
  sc_seq: u32,
  sc_nshadow: u32,
  sc_generation: u32,
  sc_gntgen: u32,
  sc_prev_state: u32,
  sc_xstx: u32,
  sc_step: u32,
  sc_retries: u32,
  sc_txerr: i32,
  sc_nreq: u64,
  sc_nrsp: u64,
  sc_nreplayed: u64,
  sc_nnotify: u64,
  sc_failmsg: array(char, XBD_FAILMSG_LEN),
  sc_shadow: array(record(xbd_shadow), XBD_NSHADOW),
});

export type XbdSoftcView = ReturnType<typeof xbd_xenbus_softc.view>;

export const SC_DKSC = xbd_xenbus_softc.offsetOf('sc_dksc');
export const SC_SHADOW = xbd_xenbus_softc.offsetOf('sc_shadow');
export const XS_REQ = xbd_shadow.offsetOf('xs_req');

/* sc_state */
/** Attached, never connected (or torn down to reconnect). */
export const XBD_STATE_DISCONNECTED = 0;
/** The xenbus handshake is running. */
export const XBD_STATE_CONNECTING = 1;
/** Ring up: requests flow. */
export const XBD_STATE_CONNECTED = 2;
/** xbd_xenbus_suspend ran: the queue is held, the shadow kept. */
export const XBD_STATE_SUSPENDED = 3;
/** Disconnected for good (hostile backend, failed handshake): every buf fails. */
export const XBD_STATE_DEAD = 4;
/** The backend closed the device: bufs wait, the shadow is kept for when it comes back. */
export const XBD_STATE_CLOSED = 5;
export const XBD_STATE_NAMES = Object.freeze(['disconnected', 'connecting', 'connected', 'suspended', 'dead', 'closed']);

/* sc_flags */
/** The backend's `info` has VDISK_READONLY. */
export const XBDF_READONLY = 0x01;
/** The backend offers BLKIF_OP_FLUSH_DISKCACHE. */
export const XBDF_FLUSH = 0x02;
/** The attach line and the disk geometry have been reported. */
export const XBDF_ATTACHED = 0x04;
/** The connect chain must read backend-id and backend again (after a restore they move). */
export const XBDF_REFRESH = 0x08;
/** The chain reading the backend's disk details is queued or running. */
export const XBDF_READING = 0x10;
/** The chain publishing the ring (xbd_publish) is queued or running. */
export const XBDF_PUBLISHING = 0x20;

export function xbd_shadow_addr(sc: number, i: number): number {
  return sc + SC_SHADOW + i * xbd_shadow.size;
}

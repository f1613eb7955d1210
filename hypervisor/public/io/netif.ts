/*
 * xen/include/public/io/netif.h: the network device rings (netfront/netback).
 *
 * Two shared rings: TX (guest sends: each request names a granted page,
 * offset and size) and RX (guest posts empty granted pages; the backend
 * fills one per response). A packet may span several slots (more_data),
 * and extra-info slots (netif_extra_info, same slot size) may follow.
 */
import { struct, union, record, array, u8, u16, i16, grant_ref_t } from '../layout.js';
import { sringLayout, constRingSize } from './ring.js';

/** Slots a backend must accept for one packet at least. */
export const XEN_NETIF_NR_SLOTS_MIN = 18;
/** Largest packet a TX request chain may carry. */
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

/* netif_tx_request.flags */
export const _NETTXF_csum_blank = 0;
/** The protocol checksum is not filled in (offload). */
export const NETTXF_csum_blank = 1 << _NETTXF_csum_blank;
export const _NETTXF_data_validated = 1;
/** The checksum has been checked. */
export const NETTXF_data_validated = 1 << _NETTXF_data_validated;
export const _NETTXF_more_data = 2;
/** The packet continues in the next request. */
export const NETTXF_more_data = 1 << _NETTXF_more_data;
export const _NETTXF_extra_info = 3;
/** A netif_extra_info slot follows this request. */
export const NETTXF_extra_info = 1 << _NETTXF_extra_info;

/*
 * struct netif_tx_request {
 *     grant_ref_t gref;   // page holding the data
 *     uint16_t offset;    // of the data in the page
 *     uint16_t flags;     // NETTXF_*
 *     uint16_t id;        // echoed in the response
 *     uint16_t size;      // first slot: whole packet; others: this slot
 * };
 */
export const netif_tx_request = struct('netif_tx_request_t', {
  gref: grant_ref_t,
  offset: u16,
  flags: u16,
  id: u16,
  size: u16,
});
export const netif_tx_request_t = netif_tx_request;

/* netif_extra_info.type */
export const XEN_NETIF_EXTRA_TYPE_NONE = 0;
export const XEN_NETIF_EXTRA_TYPE_GSO = 1;
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2;
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3;
export const XEN_NETIF_EXTRA_TYPE_HASH = 4;
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
/* netif_extra_info.flags */
export const _XEN_NETIF_EXTRA_FLAG_MORE = 0;
/** Another extra-info slot follows. */
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << _XEN_NETIF_EXTRA_FLAG_MORE;
/* netif_extra_info.u.gso.type */
export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

const netif_extra_info_gso = struct('struct netif_extra_info u.gso', {
  size: u16,
  type: u8,
  pad: u8,
  features: u16,
});
const netif_extra_info_mcast = struct('struct netif_extra_info u.mcast', {
  addr: array(u8, 6),
});
const netif_extra_info_hash = struct('struct netif_extra_info u.hash', {
  type: u8,
  algorithm: u8,
  value: array(u8, 4),
});
const netif_extra_info_u = union('struct netif_extra_info u', {
  gso: record(netif_extra_info_gso),
  mcast: record(netif_extra_info_mcast),
  hash: record(netif_extra_info_hash),
  pad: array(u16, 3),
});

/*
 * struct netif_extra_info {
 *     uint8_t type;    // XEN_NETIF_EXTRA_TYPE_*
 *     uint8_t flags;   // XEN_NETIF_EXTRA_FLAG_*
 *     union {
 *         struct {
 *             uint16_t size;     // GSO segment size
 *             uint8_t type;      // XEN_NETIF_GSO_TYPE_*
 *             uint8_t pad;
 *             uint16_t features;
 *         } gso;
 *         struct { uint8_t addr[6]; } mcast;
 *         struct {
 *             uint8_t type;
 *             uint8_t algorithm;
 *             uint8_t value[4];
 *         } hash;
 *         uint16_t pad[3];
 *     } u;
 * };
 */
export const netif_extra_info = struct('struct netif_extra_info', {
  type: u8,
  flags: u8,
  u: record(netif_extra_info_u),
});
export const netif_extra_info_t = netif_extra_info;

/*
 * struct netif_tx_response {
 *     uint16_t id;
 *     int16_t  status;   // NETIF_RSP_*
 * };
 */
export const netif_tx_response = struct('netif_tx_response_t', {
  id: u16,
  status: i16,
});
export const netif_tx_response_t = netif_tx_response;

/*
 * struct netif_rx_request {
 *     uint16_t    id;        // Echoed in response message
 *     uint16_t    pad;
 *     grant_ref_t gref;      // empty page for the backend to fill
 * };
 */
export const netif_rx_request = struct('netif_rx_request_t', {
  id: u16,
  pad: u16,
  gref: grant_ref_t,
});
export const netif_rx_request_t = netif_rx_request;

/* netif_rx_response.flags */
export const _NETRXF_data_validated = 0;
export const NETRXF_data_validated = 1 << _NETRXF_data_validated;
export const _NETRXF_csum_blank = 1;
export const NETRXF_csum_blank = 1 << _NETRXF_csum_blank;
export const _NETRXF_more_data = 2;
export const NETRXF_more_data = 1 << _NETRXF_more_data;
export const _NETRXF_extra_info = 3;
export const NETRXF_extra_info = 1 << _NETRXF_extra_info;
export const _NETRXF_gso_prefix = 4;
/** Deprecated. */
export const NETRXF_gso_prefix = 1 << _NETRXF_gso_prefix;

/*
 * struct netif_rx_response {
 *     uint16_t id;       // from the request
 *     uint16_t offset;   // of the data in the page
 *     uint16_t flags;    // NETRXF_*
 *     int16_t  status;   // > 0: bytes received; <= 0: NETIF_RSP_*
 * };
 */
export const netif_rx_response = struct('netif_rx_response_t', {
  id: u16,
  offset: u16,
  flags: u16,
  status: i16,
});
export const netif_rx_response_t = netif_rx_response;

/** DEFINE_RING_TYPES(netif_tx, struct netif_tx_request, struct netif_tx_response) */
export const netif_tx_sring = sringLayout('netif_tx', record(netif_tx_request), record(netif_tx_response));
export const netif_tx_sring_t = netif_tx_sring;
/** DEFINE_RING_TYPES(netif_rx, struct netif_rx_request, struct netif_rx_response) */
export const netif_rx_sring = sringLayout('netif_rx', record(netif_rx_request), record(netif_rx_response));
export const netif_rx_sring_t = netif_rx_sring;
/** `__CONST_RING_SIZE(netif_tx, 4096)`: 256 slots. */
export const NET_TX_RING_SIZE = constRingSize(record(netif_tx_request), record(netif_tx_response), 4096);
/** `__CONST_RING_SIZE(netif_rx, 4096)`: 256 slots. */
export const NET_RX_RING_SIZE = constRingSize(record(netif_rx_request), record(netif_rx_response), 4096);

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
/** No response: the slot answered an extra-info request. */
export const NETIF_RSP_NULL = 1;

// ---------------------------------------------------------------------------
// xenstore nodes of a vif. Frontend directory: /local/domain/<domU>/device/vif/<n>/
// Backend directory: /local/domain/<dom0>/backend/vif/<domU>/<n>/

/* Both directories. */
export const NETIF_NODE_STATE = 'state';
export const NETIF_NODE_BACKEND = 'backend';
export const NETIF_NODE_BACKEND_ID = 'backend-id';
export const NETIF_NODE_FRONTEND = 'frontend';
export const NETIF_NODE_FRONTEND_ID = 'frontend-id';
/** "aa:bb:cc:dd:ee:ff" (written by the toolstack on both sides). */
export const NETIF_NODE_MAC = 'mac';
export const NETIF_NODE_HANDLE = 'handle';

/* Frontend, written by the toolstack. */
export const NETIF_NODE_TRUSTED = 'trusted';
export const NETIF_NODE_MTU = 'mtu';

/* Frontend, written by the frontend before Connected. */
/** Grant reference of the TX ring page. */
export const NETIF_NODE_TX_RING_REF = 'tx-ring-ref';
/** Grant reference of the RX ring page. */
export const NETIF_NODE_RX_RING_REF = 'rx-ring-ref';
/** One port for both rings... */
export const NETIF_NODE_EVENT_CHANNEL = 'event-channel';
/** ...or, with feature-split-event-channels, one per ring. */
export const NETIF_NODE_EVENT_CHANNEL_TX = 'event-channel-tx';
export const NETIF_NODE_EVENT_CHANNEL_RX = 'event-channel-rx';
/** "1": the frontend sets rx req_event and expects notifications. */
export const NETIF_NODE_FEATURE_RX_NOTIFY = 'feature-rx-notify';
/*
 * The next two groups are not spelled out in netif.h but are what netfront
 * and netback (Linux, NetBSD) have always exchanged.
 */
/** "1": the backend copies into the RX pages (the only mode xenport supports). */
export const NETIF_NODE_REQUEST_RX_COPY = 'request-rx-copy';
export const NETIF_NODE_FEATURE_SG = 'feature-sg';
export const NETIF_NODE_FEATURE_GSO_TCPV4 = 'feature-gso-tcpv4';
export const NETIF_NODE_FEATURE_GSO_TCPV6 = 'feature-gso-tcpv6';
export const NETIF_NODE_FEATURE_NO_CSUM_OFFLOAD = 'feature-no-csum-offload';
export const NETIF_NODE_FEATURE_IPV6_CSUM_OFFLOAD = 'feature-ipv6-csum-offload';
export const NETIF_NODE_REQUEST_MULTICAST_CONTROL = 'request-multicast-control';
export const NETIF_NODE_MULTI_QUEUE_NUM_QUEUES = 'multi-queue-num-queues';
export const NETIF_NODE_CTRL_RING_REF = 'ctrl-ring-ref';
export const NETIF_NODE_EVENT_CHANNEL_CTRL = 'event-channel-ctrl';

/* Backend, written by the backend. */
export const NETIF_NODE_FEATURE_SPLIT_EVENT_CHANNELS = 'feature-split-event-channels';
export const NETIF_NODE_FEATURE_RX_COPY = 'feature-rx-copy';
export const NETIF_NODE_FEATURE_RX_FLIP = 'feature-rx-flip';
export const NETIF_NODE_FEATURE_MULTICAST_CONTROL = 'feature-multicast-control';
export const NETIF_NODE_FEATURE_DYNAMIC_MULTICAST_CONTROL = 'feature-dynamic-multicast-control';
export const NETIF_NODE_FEATURE_CTRL_RING = 'feature-ctrl-ring';
export const NETIF_NODE_MULTI_QUEUE_MAX_QUEUES = 'multi-queue-max-queues';
/** "0": link down; "1" or absent: link up. */
export const NETIF_NODE_CARRIER = 'carrier';

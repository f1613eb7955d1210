/*
 * xen/include/public/io/blkif.h: the block device ring (blkfront/blkback).
 *
 * The frontend grants one ring page (a `blkif` shared ring: requests and
 * responses in the same slots) and the data pages of each request; the
 * backend maps them, does the I/O, and answers in the slot of the request.
 * Sectors are always 512 bytes here, whatever the disk's sector-size.
 */
import { struct, record, array, u8, u16, i16, u64, grant_ref_t } from '../layout.js';
import { sringLayout, constRingSize } from './ring.js';

/** `#define blkif_vdev_t uint16_t` */
export const blkif_vdev_t = u16;
/** `#define blkif_sector_t uint64_t` */
export const blkif_sector_t = u64;

export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
/** Write, ordered after every earlier request (feature-barrier). */
export const BLKIF_OP_WRITE_BARRIER = 2;
/** Flush the disk's write cache (feature-flush-cache); may carry no data. */
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
export const BLKIF_OP_RESERVED_1 = 4;
export const BLKIF_OP_DISCARD = 5;
export const BLKIF_OP_INDIRECT = 6;

/** Data pages one direct request can name. */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;

/** Bytes of the unit sector_number and first/last_sect count in. */
export const XEN_BLKIF_SECTOR_SIZE = 512;

/*
 * struct blkif_request_segment {
 *     grant_ref_t gref;              // granted data page
 *     uint8_t     first_sect, last_sect; // 512-byte sectors in the page, inclusive
 * };
 */
export const blkif_request_segment = struct('struct blkif_request_segment', {
  gref: grant_ref_t,
  first_sect: u8,
  last_sect: u8,
});

/*
 * struct blkif_request {
 *     uint8_t        operation;    // BLKIF_OP_???
 *     uint8_t        nr_segments;  // number of segments
 *     blkif_vdev_t   handle;       // only for read/write requests
 *     uint64_t       id;           // private guest value, echoed in resp
 *     blkif_sector_t sector_number;// start sector idx on disk (r/w only)
 *     struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
 * };
 */
export const blkif_request = struct('blkif_request_t', {
  operation: u8,
  nr_segments: u8,
  handle: blkif_vdev_t,
  id: u64,
  sector_number: blkif_sector_t,
  seg: array(record(blkif_request_segment), BLKIF_MAX_SEGMENTS_PER_REQUEST),
});
export const blkif_request_t = blkif_request;

/** blkif_request_discard.flag: erase securely (if discard-secure). */
export const BLKIF_DISCARD_SECURE = 1 << 0;

/*
 * struct blkif_request_discard {
 *     uint8_t        operation;    // BLKIF_OP_DISCARD
 *     uint8_t        flag;         // BLKIF_DISCARD_SECURE or zero
 *     blkif_vdev_t   handle;
 *     uint64_t       id;
 *     blkif_sector_t sector_number;
 *     uint64_t       nr_sectors;
 * };
 */
export const blkif_request_discard = struct('blkif_request_discard_t', {
  operation: u8,
  flag: u8,
  handle: blkif_vdev_t,
  id: u64,
  sector_number: blkif_sector_t,
  nr_sectors: u64,
});

/*
 * struct blkif_request_indirect {
 *     uint8_t        operation;    // BLKIF_OP_INDIRECT
 *     uint8_t        indirect_op;  // BLKIF_OP_{READ/WRITE}
 *     uint16_t       nr_segments;
 *     uint64_t       id;
 *     blkif_sector_t sector_number;
 *     blkif_vdev_t   handle;
 *     grant_ref_t    indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
 * };
 */
export const blkif_request_indirect = struct('blkif_request_indirect_t', {
  operation: u8,
  indirect_op: u8,
  nr_segments: u16,
  id: u64,
  sector_number: blkif_sector_t,
  handle: blkif_vdev_t,
  indirect_grefs: array(grant_ref_t, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
});

/*
 * struct blkif_response {
 *     uint64_t        id;              // copied from request
 *     uint8_t         operation;       // copied from request
 *     int16_t         status;          // BLKIF_RSP_???
 * };
 */
export const blkif_response = struct('blkif_response_t', {
  id: u64,
  operation: u8,
  status: i16,
});
export const blkif_response_t = blkif_response;

/** Not supported (barrier/flush/discard the backend cannot do). */
export const BLKIF_RSP_EOPNOTSUPP = -2;
/** Failed (the backend's -EIO). */
export const BLKIF_RSP_ERROR = -1;
export const BLKIF_RSP_OKAY = 0;

/** DEFINE_RING_TYPES(blkif, struct blkif_request, struct blkif_response) */
export const blkif_sring = sringLayout('blkif', record(blkif_request), record(blkif_response));
export const blkif_sring_t = blkif_sring;
/** `__CONST_RING_SIZE(blkif, 4096)`: 32 slots. */
export const BLKIF_RING_SIZE = constRingSize(record(blkif_request), record(blkif_response), 4096);

/* `info` node bits (backend -> frontend). */
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/* io/protocols.h: values of the frontend's `protocol` node. */
export const XEN_IO_PROTO_ABI_X86_32 = 'x86_32-abi';
export const XEN_IO_PROTO_ABI_X86_64 = 'x86_64-abi';
export const XEN_IO_PROTO_ABI_ARM = 'arm-abi';
/** Ours: every xenport guest is x86_64. */
export const XEN_IO_PROTO_ABI_NATIVE = XEN_IO_PROTO_ABI_X86_64;

// ---------------------------------------------------------------------------
// xenstore nodes of a vbd. Frontend directory: /local/domain/<domU>/device/vbd/<vdev>/
// Backend directory: /local/domain/<dom0>/backend/vbd/<domU>/<vdev>/

/* Both directories. */
/** XenbusState* as a decimal string. */
export const BLKIF_NODE_STATE = 'state';
/** Frontend: path of the backend directory. */
export const BLKIF_NODE_BACKEND = 'backend';
export const BLKIF_NODE_BACKEND_ID = 'backend-id';
/** Backend: path of the frontend directory. */
export const BLKIF_NODE_FRONTEND = 'frontend';
export const BLKIF_NODE_FRONTEND_ID = 'frontend-id';

/* Backend, written by the toolstack (private to backend and toolstack). */
/** "r" or "w": access granted to the frontend. */
export const BLKIF_NODE_MODE = 'mode';
/** What to attach (for us: the host path of the raw image file). */
export const BLKIF_NODE_PARAMS = 'params';
/** "file", "phy" or "tap". */
export const BLKIF_NODE_TYPE = 'type';
export const BLKIF_NODE_PHYSICAL_DEVICE = 'physical-device';
export const BLKIF_NODE_PHYSICAL_DEVICE_PATH = 'physical-device-path';
export const BLKIF_NODE_DIRECT_IO_SAFE = 'direct-io-safe';

/* Backend, written by the backend before Connected. */
/** Disk size in 512-byte sectors. */
export const BLKIF_NODE_SECTORS = 'sectors';
/** Logical sector size in bytes. */
export const BLKIF_NODE_SECTOR_SIZE = 'sector-size';
export const BLKIF_NODE_PHYSICAL_SECTOR_SIZE = 'physical-sector-size';
/** VDISK_* bits. */
export const BLKIF_NODE_INFO = 'info';
/** "1": BLKIF_OP_WRITE_BARRIER is supported. */
export const BLKIF_NODE_FEATURE_BARRIER = 'feature-barrier';
/** "1": BLKIF_OP_FLUSH_DISKCACHE is supported. */
export const BLKIF_NODE_FEATURE_FLUSH_CACHE = 'feature-flush-cache';
export const BLKIF_NODE_FEATURE_DISCARD = 'feature-discard';
export const BLKIF_NODE_FEATURE_PERSISTENT = 'feature-persistent';
export const BLKIF_NODE_FEATURE_MAX_INDIRECT_SEGMENTS = 'feature-max-indirect-segments';
export const BLKIF_NODE_MAX_RING_PAGE_ORDER = 'max-ring-page-order';
export const BLKIF_NODE_MULTI_QUEUE_MAX_QUEUES = 'multi-queue-max-queues';
export const BLKIF_NODE_DISCARD_ENABLE = 'discard-enable';
export const BLKIF_NODE_DISCARD_ALIGNMENT = 'discard-alignment';
export const BLKIF_NODE_DISCARD_GRANULARITY = 'discard-granularity';
export const BLKIF_NODE_DISCARD_SECURE = 'discard-secure';

/* Frontend, written by the toolstack. */
/** The vdev number (e.g. 51712 for xvda). */
export const BLKIF_NODE_VIRTUAL_DEVICE = 'virtual-device';
/** "disk" or "cdrom". */
export const BLKIF_NODE_DEVICE_TYPE = 'device-type';
export const BLKIF_NODE_TRUSTED = 'trusted';

/* Frontend, written by the frontend before Initialised. */
/** Grant reference of the single-page ring. */
export const BLKIF_NODE_RING_REF = 'ring-ref';
/** `ring-ref%u`: page `i` of a multi-page ring (then `ring-ref` is absent). */
export const blkifRingRefNode = (i: number): string => `ring-ref${i}`;
export const BLKIF_NODE_RING_PAGE_ORDER = 'ring-page-order';
export const BLKIF_NODE_NUM_RING_PAGES = 'num-ring-pages';
/** The frontend's end of the event channel. */
export const BLKIF_NODE_EVENT_CHANNEL = 'event-channel';
/** XEN_IO_PROTO_ABI_*. */
export const BLKIF_NODE_PROTOCOL = 'protocol';
export const BLKIF_NODE_MULTI_QUEUE_NUM_QUEUES = 'multi-queue-num-queues';
export const BLKIF_NODE_FEATURE_LARGE_SECTOR_SIZE = 'feature-large-sector-size';

/*
 * xen/include/public/io/xs_wire.h: the xenstore wire protocol.
 *
 * Every message, on a domain's store ring or on the unix socket, is a
 * 16-byte header followed by `len` bytes of payload (strings separated and
 * terminated by NUL as each request type defines).
 */
import { struct, array, u32, char } from '../layout.js';

export const XS_CONTROL = 0;
/** Old name of XS_CONTROL, kept by xs_wire.h. */
export const XS_DEBUG = XS_CONTROL;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
/* 20 was XS_RESTRICT, now unused. */
export const XS_RESET_WATCHES = 21;
export const XS_DIRECTORY_PART = 22;
/** Number of valid types. */
export const XS_TYPE_COUNT = 23;
/** Guaranteed to remain an invalid type. */
export const XS_INVALID = 0xffff;

/** Names of the request types, indexed by type (as xenstored prints them). */
export const XS_TYPE_NAMES: readonly string[] = Object.freeze([
  'CONTROL', 'DIRECTORY', 'READ', 'GET_PERMS', 'WATCH', 'UNWATCH',
  'TRANSACTION_START', 'TRANSACTION_END', 'INTRODUCE', 'RELEASE',
  'GET_DOMAIN_PATH', 'WRITE', 'MKDIR', 'RM', 'SET_PERMS', 'WATCH_EVENT',
  'ERROR', 'IS_DOMAIN_INTRODUCED', 'RESUME', 'SET_TARGET', 'RESTRICT',
  'RESET_WATCHES', 'DIRECTORY_PART',
]);

/*
 * struct xsd_errors { int errnum; const char *errstring; };
 * XSD_ERRORS: the only errors xenstored sends, by name, in this order.
 */
export const XSD_ERRORS: readonly (readonly [number, string])[] = Object.freeze([
  [22, 'EINVAL'],
  [13, 'EACCES'],
  [17, 'EEXIST'],
  [21, 'EISDIR'],
  [2, 'ENOENT'],
  [12, 'ENOMEM'],
  [28, 'ENOSPC'],
  [5, 'EIO'],
  [39, 'ENOTEMPTY'],
  [38, 'ENOSYS'],
  [30, 'EROFS'],
  [16, 'EBUSY'],
  [11, 'EAGAIN'],
  [106, 'EISCONN'],
  [7, 'E2BIG'],
  [1, 'EPERM'],
] as const);

/*
 * struct xsd_sockmsg {
 *     uint32_t type;  // XS_???
 *     uint32_t req_id;// Request identifier, echoed in daemon's response.
 *     uint32_t tx_id; // Transaction id (0 if not related to a transaction).
 *     uint32_t len;   // Length of data following this.
 *     // Generally followed by nul-terminated string(s).
 * };
 */
export const xsd_sockmsg = struct('struct xsd_sockmsg', {
  type: u32,
  req_id: u32,
  tx_id: u32,
  len: u32,
});

/** Inter-domain shared memory communications. */
export const XENSTORE_RING_SIZE = 1024;
/** `typedef uint32_t XENSTORE_RING_IDX;` */
export const XENSTORE_RING_IDX = u32;
/** Masks a free-running index into the ring. */
export const MASK_XENSTORE_IDX = (idx: number): number => idx & (XENSTORE_RING_SIZE - 1);

/*
 * struct xenstore_domain_interface {
 *     char req[XENSTORE_RING_SIZE]; // Requests to xenstore daemon.
 *     char rsp[XENSTORE_RING_SIZE]; // Replies and async watch events.
 *     XENSTORE_RING_IDX req_cons, req_prod;
 *     XENSTORE_RING_IDX rsp_cons, rsp_prod;
 *     uint32_t server_features; // Bitmap of features supported by the server
 *     uint32_t connection;
 *     uint32_t error;
 * };
 */
export const xenstore_domain_interface = struct('struct xenstore_domain_interface', {
  req: array(char, XENSTORE_RING_SIZE),
  rsp: array(char, XENSTORE_RING_SIZE),
  req_cons: XENSTORE_RING_IDX,
  req_prod: XENSTORE_RING_IDX,
  rsp_cons: XENSTORE_RING_IDX,
  rsp_prod: XENSTORE_RING_IDX,
  server_features: u32,
  connection: u32,
  error: u32,
});

/** Violating this is very bad. See docs/misc/xenstore.txt. */
export const XENSTORE_PAYLOAD_MAX = 4096;
/** Violating these just gets you an error back. */
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/* The ability to reconnect a ring. */
export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
/* The presence of the "error" field in the ring page. */
export const XENSTORE_SERVER_FEATURE_ERROR = 2;

/* Valid values for the connection field. */
export const XENSTORE_CONNECTED = 0;
export const XENSTORE_RECONNECT = 1;

/* Valid values for the error field. */
export const XENSTORE_ERROR_NONE = 0;
export const XENSTORE_ERROR_COMM = 1;
export const XENSTORE_ERROR_RINGIDX = 2;
export const XENSTORE_ERROR_PROTO = 3;

/*
 * Xen 2.0's xen/include/public/io/domain_controller.h: the control
 * interface (ctrl_if) between a guest and the domain controller in dom0.
 *
 * Not in Xen 3+ (xenstore replaced it); xenport keeps it as one of the
 * three ways to ask a guest to suspend (ARCHITECTURE §5, §6). Xen 2.0 put
 * control_if_t at offset 2048 of shared_info; our shared_info has the
 * modern layout, so the builder gives ctrl_if a page of its own and passes
 * `ctrl_if=<pfn>,<port>` on the command line.
 *
 * Each direction is a ring of 8 fixed-size messages. The guest produces
 * requests on tx_ring and the controller answers in the same slots
 * (tx_resp_prod); the controller sends on rx_ring and the guest answers
 * there (rx_resp_prod). Responses echo type, subtype and id.
 */
import { struct, record, array, u8, u32 } from './layout.js';

/** Bytes of payload in one message. */
export const CONTROL_MSG_PAYLOAD = 60;

/*
 * typedef struct {
 *     u8 type;     //  0: CMSG_*, echoed in response
 *     u8 subtype;  //  1: echoed in response
 *     u8 id;       //  2: echoed in response
 *     u8 length;   //  3: number of bytes in 'msg'
 *     u8 msg[60];  //  4: type-specific message data
 * } control_msg_t; // 64 bytes
 */
export const control_msg = struct('control_msg_t', {
  type: u8,
  subtype: u8,
  id: u8,
  length: u8,
  msg: array(u8, CONTROL_MSG_PAYLOAD),
});
export const control_msg_t = control_msg;

export const CONTROL_RING_SIZE = 8;
/** `typedef u32 CONTROL_RING_IDX;` free-running, wraps at 2^32. */
export const CONTROL_RING_IDX = u32;
/** `MASK_CONTROL_IDX(i)`: slot of a free-running index. */
export const MASK_CONTROL_IDX = (idx: number): number => (idx >>> 0) & (CONTROL_RING_SIZE - 1);

/*
 * typedef struct {
 *     control_msg_t tx_ring[CONTROL_RING_SIZE];   //    0: guest -> controller
 *     control_msg_t rx_ring[CONTROL_RING_SIZE];   //  512: controller -> guest
 *     CONTROL_RING_IDX tx_req_prod, tx_resp_prod; // 1024, 1028
 *     CONTROL_RING_IDX rx_req_prod, rx_resp_prod; // 1032, 1036
 * } control_if_t; // 1040 bytes
 */
export const control_if = struct('control_if_t', {
  tx_ring: array(record(control_msg), CONTROL_RING_SIZE),
  rx_ring: array(record(control_msg), CONTROL_RING_SIZE),
  tx_req_prod: CONTROL_RING_IDX,
  tx_resp_prod: CONTROL_RING_IDX,
  rx_req_prod: CONTROL_RING_IDX,
  rx_resp_prod: CONTROL_RING_IDX,
});
export const control_if_t = control_if;

/* Message types (control_msg_t.type). */
export const CMSG_CONSOLE = 0;
export const CMSG_BLKIF_BE = 1;
export const CMSG_BLKIF_FE = 2;
export const CMSG_NETIF_BE = 3;
export const CMSG_NETIF_FE = 4;
export const CMSG_SHUTDOWN = 6;
export const CMSG_MEM_REQUEST = 7;

/* CMSG_CONSOLE subtypes. */
/** Console bytes in msg[0..length). */
export const CMSG_CONSOLE_DATA = 0;

/* CMSG_SHUTDOWN subtypes (controller -> guest). */
/** Shut down cleanly, then SCHEDOP_shutdown(SHUTDOWN_poweroff). */
export const CMSG_SHUTDOWN_POWEROFF = 0;
/** Shut down cleanly, then SHUTDOWN_reboot. */
export const CMSG_SHUTDOWN_REBOOT = 1;
/** Prepare for save, then SHUTDOWN_suspend. */
export const CMSG_SHUTDOWN_SUSPEND = 2;
/** msg[0] is a SysRq key. */
export const CMSG_SHUTDOWN_SYSRQ = 3;

/* CMSG_MEM_REQUEST subtypes. */
/** Ask the guest to balloon to `target` pages. */
export const CMSG_MEM_REQUEST_SET = 0;

/*
 * typedef struct {
 *     u32 target;  // 0: OUT: target memory reservation in pages
 *     u32 status;  // 4: IN: result
 * } mem_request_t; // 8 bytes
 */
export const mem_request = struct('mem_request_t', {
  target: u32,
  status: u32,
});

/*
 * The kernel message buffer (<sys/msgbuf.h>): what dmesg shows. A ring of
 * bytes after a small header, at a fixed place in the data segment so that
 * it survives save/restore like every other byte of the kernel, and so a
 * debugger (or the toolstack) can find it.
 *
 *   struct kern_msgbuf {
 *       long msg_magic;   // MSG_MAGIC
 *       long msg_bufx;    // write pointer
 *       long msg_bufr;    // oldest byte still in the ring
 *       long msg_bufs;    // size of msg_bufc
 *       char msg_bufc[];  // the ring
 *   };
 *
 * When the ring is full the oldest byte is dropped (msg_bufr moves on), so
 * the bytes from msg_bufr up to msg_bufx are always the most recent
 * msg_bufs - 1 bytes written.
 */
import { struct, u64 } from '../../hypervisor/public/layout.js';

export const kern_msgbuf = struct('struct kern_msgbuf', {
  msg_magic: u64,
  msg_bufx: u64,
  msg_bufr: u64,
  msg_bufs: u64,
});

export const MSG_MAGIC = 0x063061;
/** Offset of msg_bufc. */
export const MSGBUF_HDRSIZE = kern_msgbuf.size;

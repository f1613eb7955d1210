/*
 * The on-disk format of the `blk` workload's blocks (wl_blk.ts): what the
 * guest writes, what it checks when it reads a block back, and what a host
 * test checks in the image file. Pure functions over bytes, no guest state.
 *
 * A block is `size` bytes (a multiple of 512), starting at a 512-byte
 * sector `blkno` of the disk: a 32-byte header, then the payload.
 *
 *   struct blk_hdr {            // little-endian
 *       uint32_t bh_magic;      // BLK_MAGIC, "XPBK"
 *       uint32_t bh_size;       // bytes in the block, header included
 *       uint64_t bh_seq;        // sequence number of the write (1, 2, ...)
 *       uint64_t bh_blkno;      // the block's first sector on the disk
 *       uint32_t bh_seed;       // the workload's seed (blk_seed=)
 *       uint32_t bh_cksum;      // CRC-32 (IEEE, zlib's) of the payload
 *   };
 *
 * The payload is 32-bit little-endian words of xorshift32, started from a
 * hash of (seed, seq, blkno): a block written twice never holds the same
 * bytes, and a block found at the wrong place, or an older version of it,
 * is told apart from a good one by its header alone.
 */
import { struct, u32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';

export const blk_hdr = struct('struct blk_hdr', {
  bh_magic: u32,
  bh_size: u32,
  bh_seq: u64,
  bh_blkno: u64,
  bh_seed: u32,
  bh_cksum: u32,
});

/** "XPBK" as little-endian bytes. */
export const BLK_MAGIC = 0x4b425058;
export const BLK_HDRLEN = blk_hdr.size;
export const BLK_SECTOR = 512;

const O_MAGIC = blk_hdr.offsetOf('bh_magic');
const O_SIZE = blk_hdr.offsetOf('bh_size');
const O_SEQ = blk_hdr.offsetOf('bh_seq');
const O_BLKNO = blk_hdr.offsetOf('bh_blkno');
const O_SEED = blk_hdr.offsetOf('bh_seed');
const O_CKSUM = blk_hdr.offsetOf('bh_cksum');
const TWO32 = 2 ** 32;

export interface BlkHeader {
  readonly magic: number;
  readonly size: number;
  readonly seq: number;
  readonly blkno: number;
  readonly seed: number;
  readonly cksum: number;
}

/** CRC-32 (IEEE 802.3, reflected, as zlib's crc32) of `len` bytes of `b` from `off`. */
export function blk_crc32(b: Uint8Array, off: number, len: number): number {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  let crc = 0xffffffff;
  for (let i = off, end = off + len; i < end; i++) crc = table[(crc ^ b[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function blk_fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The payload generator's first state for (seed, seq, blkno); never 0. */
export function blk_rng_start(seed: number, seq: number, blkno: number): number {
  let x = blk_fmix32((seed ^ 0x5bd1e995) >>> 0);
  x = blk_fmix32((x ^ (seq >>> 0)) >>> 0);
  x = blk_fmix32((x ^ Math.floor(seq / TWO32) ^ 0x27d4eb2f) >>> 0);
  x = blk_fmix32((x ^ (blkno >>> 0)) >>> 0);
  x = blk_fmix32((x ^ Math.floor(blkno / TWO32) ^ 0x165667b1) >>> 0);
  return x === 0 ? 0x6d2b79f5 : x;
}

/** Write the block (header and payload) for (seed, seq, blkno) into `b` at `off`. */
export function blk_fill(b: Uint8Array, off: number, size: number, seed: number, seq: number, blkno: number): void {
  const dv = new DataView(b.buffer, b.byteOffset + off, size);
  let x = blk_rng_start(seed, seq, blkno);
  for (let j = BLK_HDRLEN; j < size; j += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    dv.setUint32(j, x, true);
  }
  dv.setUint32(O_MAGIC, BLK_MAGIC, true);
  dv.setUint32(O_SIZE, size, true);
  dv.setBigUint64(O_SEQ, BigInt(seq), true);
  dv.setBigUint64(O_BLKNO, BigInt(blkno), true);
  dv.setUint32(O_SEED, seed >>> 0, true);
  dv.setUint32(O_CKSUM, blk_crc32(b, off + BLK_HDRLEN, size - BLK_HDRLEN), true);
}

/** The block for (seed, seq, blkno), `size` bytes. */
export function blk_block(seed: number, seq: number, blkno: number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  blk_fill(b, 0, size, seed, seq, blkno);
  return b;
}

/** The header of the block at `off` of `b` (whatever it holds). */
export function blk_header(b: Uint8Array, off: number): BlkHeader {
  const dv = new DataView(b.buffer, b.byteOffset + off, BLK_HDRLEN);
  return {
    magic: dv.getUint32(O_MAGIC, true),
    size: dv.getUint32(O_SIZE, true),
    seq: Number(dv.getBigUint64(O_SEQ, true)),
    blkno: Number(dv.getBigUint64(O_BLKNO, true)),
    seed: dv.getUint32(O_SEED, true),
    cksum: dv.getUint32(O_CKSUM, true),
  };
}

/** Is the block at `off` all zeroes (never written)? */
export function blk_is_zero(b: Uint8Array, off: number, size: number): boolean {
  for (let i = off, end = off + size; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Check the block at `off` of `b` against what write `seq` of sector
 * `blkno` put there: '' when it is that block, else why not, in words.
 */
export function blk_verify(b: Uint8Array, off: number, size: number, seed: number, seq: number, blkno: number): string {
  const h = blk_header(b, off);
  if (h.magic !== BLK_MAGIC) {
    return blk_is_zero(b, off, size) ? 'all zeroes' : `bad magic ${blk_hex8(h.magic)}`;
  }
  if (h.size !== size) return `size ${h.size}, expected ${size}`;
  if (h.blkno !== blkno) return `holds sector ${h.blkno}'s block`;
  if (h.seq !== seq) return `holds write ${h.seq}, expected write ${seq}`;
  if (h.seed !== seed >>> 0) return `seed ${h.seed}, expected ${seed >>> 0}`;
  const crc = blk_crc32(b, off + BLK_HDRLEN, size - BLK_HDRLEN);
  const sum = crc === h.cksum ? '' : `payload checksum ${blk_hex8(crc)}, header says ${blk_hex8(h.cksum)}`;
  const dv = new DataView(b.buffer, b.byteOffset + off, size);
  let x = blk_rng_start(seed, seq, blkno);
  for (let j = BLK_HDRLEN; j < size; j += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const have = dv.getUint32(j, true);
    if (have !== x) return `${sum === '' ? '' : `${sum}; `}payload word at byte ${j} is ${blk_hex8(have)}, expected ${blk_hex8(x)}`;
  }
  return sum;
}

function blk_hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

export const wl_blk_block_ksyms = ksymtab({
  blk_crc32, blk_fmix32, blk_rng_start, blk_fill, blk_block, blk_header, blk_is_zero, blk_verify, blk_hex8,
});

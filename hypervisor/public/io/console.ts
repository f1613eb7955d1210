/*
 * xen/include/public/io/console.h: the PV console ring page.
 *
 * Two byte rings in one page: `in` (backend -> guest, keyboard) and `out`
 * (guest -> backend, screen), each with free-running 32-bit indices.
 */
import { struct, array, u32, char } from '../layout.js';

/** `typedef uint32_t XENCONS_RING_IDX;` */
export const XENCONS_RING_IDX = u32;

/** Sizes of the two rings (powers of two). */
export const XENCONS_IN_SIZE = 1024;
export const XENCONS_OUT_SIZE = 2048;

/**
 * `MASK_XENCONS_IDX(idx, ring)`: a free-running index into the ring, where
 * `ringSize` is sizeof(ring) (XENCONS_IN_SIZE or XENCONS_OUT_SIZE).
 */
export const MASK_XENCONS_IDX = (idx: number, ringSize: number): number => (idx >>> 0) & (ringSize - 1);

/*
 * struct xencons_interface {
 *     char in[1024];
 *     char out[2048];
 *     XENCONS_RING_IDX in_cons, in_prod;
 *     XENCONS_RING_IDX out_cons, out_prod;
 * };
 */
export const xencons_interface = struct('struct xencons_interface', {
  in: array(char, XENCONS_IN_SIZE),
  out: array(char, XENCONS_OUT_SIZE),
  in_cons: XENCONS_RING_IDX,
  in_prod: XENCONS_RING_IDX,
  out_cons: XENCONS_RING_IDX,
  out_prod: XENCONS_RING_IDX,
});

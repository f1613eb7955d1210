/*
 * dom0's side of a guest's console page (`struct xencons_interface`, see
 * hypervisor/public/io/console.ts): two byte rings with free-running u32
 * indices. `out` carries guest -> dom0 (the screen): the guest produces
 * (out_prod), dom0 consumes (out_cons). `in` carries dom0 -> guest (the
 * keyboard): dom0 produces (in_prod), the guest consumes (in_cons).
 *
 * Every index is read from the page each time, as Xen's xenconsoled does,
 * so a guest that reinitialises its page is followed. The page is hostile:
 * a producer more than a ring's size ahead of its consumer is an error
 * value, never a throw and never a read outside the ring.
 */
import type { ByteMem } from '../../public/layout.js';
import { MASK_XENCONS_IDX, XENCONS_IN_SIZE, XENCONS_OUT_SIZE, xencons_interface } from '../../public/io/console.js';
import type { Outcome } from './env.js';

const OUT_AT = xencons_interface.offsetOf('out');
const IN_AT = xencons_interface.offsetOf('in');

const EMPTY = new Uint8Array(0);

export class ConsoleRingPage {
  constructor(private readonly mem: ByteMem) {}

  private view() {
    return xencons_interface.view(this.mem, 0);
  }

  /** Take everything in `out` and advance out_cons past it. */
  takeOutput(): Outcome<Uint8Array> {
    const v = this.view();
    const cons = v.get('out_cons');
    const prod = v.get('out_prod');
    const avail = (prod - cons) >>> 0;
    if (avail > XENCONS_OUT_SIZE) return badIndices('out', prod, cons, XENCONS_OUT_SIZE);
    if (avail === 0) return { ok: true, value: EMPTY };
    const bytes = this.copyOut(MASK_XENCONS_IDX(cons, XENCONS_OUT_SIZE), avail);
    // Consume exactly what was read: the guest may have produced more since.
    v.set('out_cons', (cons + avail) >>> 0);
    return { ok: true, value: bytes };
  }

  /** Put as much of `data` into `in` as there is room for; the count written. */
  putInput(data: Uint8Array): Outcome<number> {
    const v = this.view();
    const cons = v.get('in_cons');
    const prod = v.get('in_prod');
    const used = (prod - cons) >>> 0;
    if (used > XENCONS_IN_SIZE) return badIndices('in', prod, cons, XENCONS_IN_SIZE);
    const n = Math.min(XENCONS_IN_SIZE - used, data.length);
    if (n === 0) return { ok: true, value: 0 };
    const start = MASK_XENCONS_IDX(prod, XENCONS_IN_SIZE);
    const first = Math.min(n, XENCONS_IN_SIZE - start);
    this.mem.writeBytes(IN_AT + start, data.subarray(0, first));
    if (first < n) this.mem.writeBytes(IN_AT, data.subarray(first, n));
    // Bytes before the index: the guest must never see in_prod ahead of the data.
    v.set('in_prod', (prod + n) >>> 0);
    return { ok: true, value: n };
  }

  private copyOut(start: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const first = Math.min(len, XENCONS_OUT_SIZE - start);
    out.set(this.mem.readBytes(OUT_AT + start, first), 0);
    if (first < len) out.set(this.mem.readBytes(OUT_AT, len - first), first);
    return out;
  }
}

function badIndices(ring: 'in' | 'out', prod: number, cons: number, size: number): Outcome<never> {
  return {
    ok: false,
    error: `${ring}_prod ${prod} is ${(prod - cons) >>> 0} bytes past ${ring}_cons ${cons} (ring holds ${size})`,
  };
}

/*
 * Helpers for the dom0 network tests: a clock the test moves by hand, a
 * port that records what the bridge delivers, hex <-> bytes, and a seeded
 * random source for the hostile-input tests.
 */
import type { BridgePort, NetClock } from '../../hypervisor/dom0/net/bridge.js';

export class FakeClock implements NetClock {
  t = 0;
  now(): number {
    return this.t;
  }
  advance(ns: number): void {
    this.t += ns;
  }
}

export class RecordingPort implements BridgePort {
  readonly frames: Uint8Array[] = [];
  constructor(readonly name: string) {}
  deliver(frame: Uint8Array): void {
    this.frames.push(frame);
  }
  take(): Uint8Array[] {
    return this.frames.splice(0);
  }
}

/** Hex with optional spaces/newlines to bytes. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0) throw new Error(`odd hex string ${s}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => parseInt(h, 16));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** mulberry32: small, seeded, good enough to shake parsers. Shared with the frame allocator (hypervisor/xen/frametable.ts). */
export { mulberry32 as seededRandom } from '../../hypervisor/xen/frametable.js';

export function randomBytes(rand: () => number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
}

/*
 * What blkback and netback share: the registry of one backend's devices
 * (one per frontend domain and devid, in creation order), their teardown,
 * and the poll scheduling that serves every device with work.
 */
import type { DomId } from '../public/types.js';

/** A vbd or a vif, as the registry sees it. */
export interface BackendDevice {
  readonly frontendDomid: DomId;
  readonly devid: number;
  /** Connected and kicked: poll() has something to look at. */
  readonly hasWork: boolean;
  poll(budget: number): number;
  /** Disconnect and let go of what the device holds, for good. */
  close(): void;
}

/** The hooks a backend passes to each of its devices. */
export interface BackendHooks<D> {
  /** A device has work: call poll() soon, between guest entries. */
  readonly schedule?: () => void;
  /** A device failed by itself: publish its error and Closing. */
  readonly onStateChange?: (device: D) => void;
}

/** The backend's hooks as a device's options (`onWork`, `onStateChange`), leaving out the absent ones. */
export function deviceHooks<D>(h: BackendHooks<D>): { onWork?: () => void; onStateChange?: (device: D) => void } {
  return {
    ...(h.schedule === undefined ? {} : { onWork: h.schedule }),
    ...(h.onStateChange === undefined ? {} : { onStateChange: h.onStateChange }),
  };
}

const key = (domid: number, devid: number): string => `${domid}/${devid}`;

export abstract class BackendRegistry<D extends BackendDevice> {
  private readonly devices = new Map<string, D>();

  /** `defaultBudget`: what one poll of one device may do when poll() is given no budget. */
  protected constructor(private readonly defaultBudget: number) {}

  get(frontendDomid: DomId, devid: number): D | undefined {
    return this.devices.get(key(frontendDomid, devid));
  }

  /** Every device, in creation order. */
  list(): D[] {
    return [...this.devices.values()];
  }

  /** Close one device and forget it. False if there was none. */
  destroy(frontendDomid: DomId, devid: number): boolean {
    const k = key(frontendDomid, devid);
    const d = this.devices.get(k);
    if (d === undefined) return false;
    d.close();
    this.devices.delete(k);
    return true;
  }

  /** Close every device of a domain (destroyed, saved, or migrated away). */
  destroyDomain(frontendDomid: DomId): number {
    let n = 0;
    for (const d of this.list()) if (d.frontendDomid === frontendDomid && this.destroy(d.frontendDomid, d.devid)) n++;
    return n;
  }

  /** Some connected device has been kicked and not polled since. */
  hasWork(): boolean {
    for (const d of this.devices.values()) if (d.hasWork) return true;
    return false;
  }

  /**
   * Poll every device with work once, `budget` each at most, in creation
   * order. Returns the work done (requests, packets). A device left with
   * work asks for another poll through `schedule`.
   */
  poll(budget: number = this.defaultBudget): number {
    let n = 0;
    for (const d of this.list()) if (d.hasWork) n += d.poll(budget);
    return n;
  }

  /** Poll until no device has work (tests, benches, a machine draining before save). */
  drain(budget: number = this.defaultBudget, maxRounds = 1_000_000): number {
    let n = 0;
    for (let i = 0; i < maxRounds && this.hasWork(); i++) n += this.poll(budget);
    return n;
  }

  /** A device for this domain and devid exists already. */
  protected has(frontendDomid: DomId, devid: number): boolean {
    return this.devices.has(key(frontendDomid, devid));
  }

  /** Register a new device (after has() said there was none). */
  protected add(device: D): void {
    this.devices.set(key(device.frontendDomid, device.devid), device);
  }
}

/*
 * blkback: dom0's block backend, the set of vbds of every guest.
 *
 * This is what the machine and the xenbus wiring hold:
 *
 *   const bb = new Blkback({ host, schedule: () => machine.defer(() => bb.poll()) });
 *   bb.create({ frontendDomid, devid, target: params, readOnly: mode === 'r' })
 *       -> the vbd (state 'waiting': publish InitWait and vbd.connectNodes())
 *   vbd.connect({ ringRef, eventChannel, protocol })   frontend Initialised
 *   ...frontend notifies -> vbd.kick() -> schedule() -> bb.poll()
 *   vbd.disconnect()                                    frontend Closing/Closed
 *   bb.destroy(domid, devid) / bb.destroyDomain(domid)  device or domain gone
 *
 * `onStateChange` reports a vbd that failed by itself (garbage ring
 * indices): write its `error` and switch the backend to Closing.
 *
 * An image is served to one writer at a time: opening an image for writing
 * that another vbd has open (in any mode), or for reading while another
 * vbd writes it, is refused, as Xen's hotplug scripts do.
 */
import createDebug from 'debug';
import { DiskImage, type DiskError } from './disk.js';
import { DEFAULT_POLL_BUDGET, Vbd, type VbdState, type VbdStats } from './vbd.js';
import type { BackendHost } from '../backend-host.js';
import type { DomId } from '../../public/types.js';
import { BackendRegistry, deviceHooks } from '../backend-core.js';

const log = createDebug('dom0:blkback');

export interface BlkbackOptions {
  readonly host: BackendHost;
  /**
   * A vbd has work: call poll() soon, between guest entries. Called once
   * per vbd each time it goes from idle to kicked (a poll that finds
   * nothing to do is harmless).
   */
  readonly schedule?: () => void;
  /** A vbd failed by itself: publish its error and Closing. */
  readonly onStateChange?: (vbd: Vbd) => void;
}

/** One disk to serve, as the toolstack wrote it (`params`, `mode`); an xl DiskSpec fits. */
export interface VbdSpec {
  readonly frontendDomid: DomId;
  readonly devid: number;
  /** `PATH` or `file:PATH`. */
  readonly target: string;
  readonly readOnly: boolean;
}

export type CreateError =
  | { readonly kind: 'disk'; readonly disk: DiskError; readonly message: string }
  | { readonly kind: 'exists' | 'in-use'; readonly message: string };

export type CreateResult = { readonly ok: true; readonly value: Vbd } | { readonly ok: false; readonly error: CreateError };

/** A row of `xl block-list`-like output and of the bench. */
export interface VbdInfo {
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly path: string;
  readonly readOnly: boolean;
  readonly sectors: number;
  readonly state: VbdState;
  readonly error: string | undefined;
  readonly stats: Readonly<VbdStats>;
}

export class Blkback extends BackendRegistry<Vbd> {
  constructor(private readonly opts: BlkbackOptions) {
    super(DEFAULT_POLL_BUDGET);
  }

  /** Open the image and create the vbd, waiting for its frontend. */
  create(spec: VbdSpec): CreateResult {
    if (this.has(spec.frontendDomid, spec.devid)) return { ok: false, error: { kind: 'exists', message: `vbd d${spec.frontendDomid}/${spec.devid} already exists` } };
    const disk = DiskImage.open(spec.target, { readOnly: spec.readOnly });
    if (!disk.ok) return { ok: false, error: { kind: 'disk', disk: disk.error, message: disk.error.message } };
    const clash = this.list().find(
      (v) => v.disk.identity === disk.value.identity && !(v.disk.readOnly && spec.readOnly));
    if (clash !== undefined) {
      disk.value.close();
      const message = `disk image ${disk.value.path} is already in use by ${clash.name}` +
        ` (${clash.disk.readOnly ? 'read-only' : 'writable'}); it can be shared read-only only`;
      return { ok: false, error: { kind: 'in-use', message } };
    }
    const vbd = new Vbd({
      frontendDomid: spec.frontendDomid,
      devid: spec.devid,
      disk: disk.value,
      host: this.opts.host,
      ...deviceHooks(this.opts),
    });
    this.add(vbd);
    log.enabled && log('%s created on %s (%d sectors%s)', vbd.name, disk.value.path, disk.value.sectors, spec.readOnly ? ', read-only' : '');
    return { ok: true, value: vbd };
  }

  info(): VbdInfo[] {
    return this.list().map((v) => ({
      frontendDomid: v.frontendDomid,
      devid: v.devid,
      path: v.disk.path,
      readOnly: v.disk.readOnly,
      sectors: v.disk.sectors,
      state: v.state,
      error: v.error,
      stats: v.stats,
    }));
  }
}

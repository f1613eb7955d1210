/*
 * netback: dom0's network backend, the set of vifs of every guest.
 *
 * This is what the machine and the xenbus wiring hold:
 *
 *   const host = machineBackendHost(machine);          // shared with blkback
 *   const nb = new Netback({ host, schedule: () => machine.defer(() => nb.poll()) });
 *   nb.create({ frontendDomid, devid, mac, bridge: net.bridge(vif.bridge) })
 *       -> the vif, on the bridge, state 'waiting':
 *          write vif.backendNodes() and publish InitWait
 *   parseFrontendNodes(read)                    frontend Initialised/Connected
 *   vif.connect(params)                          -> Connected, or failed + error
 *   ...frontend notifies, or the bridge delivers -> vif.kick() -> schedule() -> nb.poll()
 *   vif.disconnect()                             frontend Closing/Closed
 *   nb.destroy(domid, devid) / nb.destroyDomain(domid)   device or domain gone
 *
 * `onStateChange` reports a vif that failed by itself (garbage indices, an
 * undelimitable TX chain): write its `error` and switch the backend to
 * Closing. The vif's name (`vif<domid>.<devid>`) is its bridge port name
 * and the name Dom0Network.openForwards takes.
 */
import createDebug from 'debug';
import { parseMac } from '../net/addr.js';
import type { DomId } from '../../public/types.js';
import { DEFAULT_POLL_BUDGET, Vif, type BridgeAttach, type VifState, type VifStats } from './vif.js';
import type { BackendHost } from '../backend-host.js';
import { BackendRegistry, deviceHooks } from '../backend-core.js';

const log = createDebug('dom0:netback');

export interface NetbackOptions {
  readonly host: BackendHost;
  /**
   * A vif has work: call poll() soon, between guest entries. Called once
   * per vif each time it goes from idle to kicked (a poll that finds
   * nothing to do is harmless).
   */
  readonly schedule?: () => void;
  /** A vif failed by itself: publish its error and Closing. */
  readonly onStateChange?: (vif: Vif) => void;
  /** RX queue bounds of every vif (defaults in vif.ts). */
  readonly rxQueueFrames?: number;
  readonly rxQueueBytes?: number;
}

/** One vif to serve, as the toolstack wrote it. */
export interface VifCreateSpec {
  readonly frontendDomid: DomId;
  readonly devid: number;
  /** "aa:bb:cc:dd:ee:ff" */
  readonly mac: string;
  /** The bridge to plug into (Dom0Network.bridge(name)). */
  readonly bridge: BridgeAttach;
}

export type VifCreateError = { readonly kind: 'exists' | 'bad-mac' | 'bad-devid'; readonly message: string };
export type VifCreateResult = { readonly ok: true; readonly value: Vif } | { readonly ok: false; readonly error: VifCreateError };

/** A row of `xl network-list`-like output and of the bench. */
export interface VifInfo {
  readonly name: string;
  readonly frontendDomid: DomId;
  readonly devid: number;
  readonly mac: string;
  readonly state: VifState;
  readonly error: string | undefined;
  readonly rxQueued: number;
  readonly stats: Readonly<VifStats>;
}

export class Netback extends BackendRegistry<Vif> {
  constructor(private readonly opts: NetbackOptions) {
    super(DEFAULT_POLL_BUDGET);
  }

  /** Create the vif and plug it into its bridge, waiting for its frontend. */
  create(spec: VifCreateSpec): VifCreateResult {
    const name = `vif${spec.frontendDomid}.${spec.devid}`;
    if (this.has(spec.frontendDomid, spec.devid)) return { ok: false, error: { kind: 'exists', message: `${name} already exists` } };
    if (!(Number.isInteger(spec.devid) && spec.devid >= 0 && spec.devid <= 0xffff))
      return { ok: false, error: { kind: 'bad-devid', message: `${name}: handle ${spec.devid} is not 0..65535` } };
    if (parseMac(spec.mac) === undefined) return { ok: false, error: { kind: 'bad-mac', message: `${name}: "${spec.mac}" is not a MAC address` } };
    const vif = new Vif({
      frontendDomid: spec.frontendDomid,
      devid: spec.devid,
      mac: spec.mac.toLowerCase(),
      host: this.opts.host,
      bridge: spec.bridge,
      ...(this.opts.rxQueueFrames === undefined ? {} : { rxQueueFrames: this.opts.rxQueueFrames }),
      ...(this.opts.rxQueueBytes === undefined ? {} : { rxQueueBytes: this.opts.rxQueueBytes }),
      ...deviceHooks(this.opts),
    });
    this.add(vif);
    log.enabled && log('%s created (mac %s)', vif.name, vif.mac);
    return { ok: true, value: vif };
  }

  info(): VifInfo[] {
    return this.list().map((v) => ({
      name: v.name,
      frontendDomid: v.frontendDomid,
      devid: v.devid,
      mac: v.mac,
      state: v.state,
      error: v.error,
      rxQueued: v.rxQueueLength,
      stats: v.stats,
    }));
  }
}

/*
 * Which xenstore requests are protocol steps worth a trace record, and
 * what the record says. xenstored hands every request to its `onRequest`
 * hook; the host feeds them through an XsRequestTracer whose sink is the
 * machine's trace (xenstored itself knows nothing of the hypervisor).
 *
 *   request (from)                        record: domain, event, detail
 *   XS_INTRODUCE / XS_RESUME / XS_RELEASE  the domain named; mfn and port
 *   XS_WATCH, XS_RESET_WATCHES (a domain)  that domain; path and token
 *   XS_WRITE of, relative to a domain's home /local/domain/N:
 *     device/<type>/<id>/state            N; "device/vbd/51712/state = 4 (Connected)"
 *     control/shutdown                    N; the value, and who wrote it
 *     device/suspend/event-channel        N; the port
 *     data/...                            N; only the first one after each
 *                                         XS_INTRODUCE / XS_RESUME (the
 *                                         workload is running); later ones
 *                                         are not traced
 *   XS_WRITE of /local/domain/0/backend/<type>/N/<id>/state
 *                                         N; "backend vbd/51712 state = 4 (Connected)"
 *
 * Everything else (reads, directory listings, transactions, dom0's own
 * watches, every further data/ write) is left out.
 */
import {
  XS_INTRODUCE, XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_WATCH, XS_WRITE,
} from '../../public/io/xs_wire.js';
import { atoi, firstArgAndRest, latin1, nulTerminated, oneArg, type XsMsg } from './wire.js';

/** Where records go: the domain the step is about, the event, a detail. */
export type XsTraceSink = (domid: number, event: string, detail: string) => void;

const STATE_NAMES = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];

const HOME = /^\/local\/domain\/(\d+)\/(.*)$/;
const BACKEND_STATE = /^\/local\/domain\/0\/backend\/([^/]+)\/(\d+)\/([^/]+)\/state$/;
const FRONTEND_STATE = /^device\/[^/]+\/[^/]+\/state$/;
/** Longest value a detail quotes. */
const VALUE_MAX = 40;

function stateText(v: string): string {
  const name = /^\d+$/.test(v) ? STATE_NAMES[Number(v)] : undefined;
  return name === undefined ? JSON.stringify(v) : `${v} (${name})`;
}

export class XsRequestTracer {
  /** Domains whose first data/ write since their last introduce/resume was traced. */
  private readonly dataSeen = new Set<number>();

  constructor(private readonly sink: XsTraceSink) {}

  /** A request from domain `from` (0: dom0 or a host client). */
  observe(from: number, msg: XsMsg): void {
    switch (msg.type) {
      case XS_INTRODUCE: {
        const [dom, mfn, port] = nulTerminated(msg.payload);
        const domid = atoi(dom ?? '') >>> 0;
        this.dataSeen.delete(domid);
        this.sink(domid, 'XS_INTRODUCE', `mfn ${mfn ?? '?'}, port ${port ?? '?'}`);
        return;
      }
      case XS_RESUME:
      case XS_RELEASE: {
        const domid = atoi(oneArg(msg.payload) ?? '') >>> 0;
        this.dataSeen.delete(domid);
        this.sink(domid, msg.type === XS_RESUME ? 'XS_RESUME' : 'XS_RELEASE', from === 0 ? '' : `by d${from}`);
        return;
      }
      case XS_WATCH: {
        if (from === 0) return;
        const [path, token] = nulTerminated(msg.payload);
        this.sink(from, 'XS_WATCH', `${path ?? ''} token ${JSON.stringify(token ?? '')}`);
        return;
      }
      case XS_RESET_WATCHES:
        if (from !== 0) this.sink(from, 'XS_RESET_WATCHES', '');
        return;
      case XS_WRITE:
        this.write(from, msg.payload);
        return;
      default:
        return;
    }
  }

  private write(from: number, payload: Uint8Array): void {
    const w = firstArgAndRest(payload);
    if (w === undefined) return;
    const value = latin1(w.rest.subarray(0, VALUE_MAX + 1));
    const shown = value.length > VALUE_MAX ? `${JSON.stringify(value.slice(0, VALUE_MAX))}...` : JSON.stringify(value);
    const be = BACKEND_STATE.exec(w.arg);
    if (be !== null) {
      this.sink(Number(be[2]), 'XS_WRITE', `backend ${be[1]}/${be[3]} state = ${stateText(value)}`);
      return;
    }
    const home = HOME.exec(w.arg);
    const domid = home === null ? from : Number(home[1]);
    // A relative path is relative to the writer's home; dom0's relative writes are its own.
    const rel = home === null ? (w.arg.startsWith('/') ? undefined : w.arg) : home[2]!;
    if (rel === undefined || domid === 0) return;
    const by = from === domid ? '' : ` (by d${from})`;
    if (FRONTEND_STATE.test(rel) && !rel.startsWith('device/suspend/')) {
      this.sink(domid, 'XS_WRITE', `${rel} = ${stateText(value)}${by}`);
    } else if (rel === 'control/shutdown' || rel === 'device/suspend/event-channel') {
      this.sink(domid, 'XS_WRITE', `${rel} = ${shown}${by}`);
    } else if (rel.startsWith('data/') && from === domid && !this.dataSeen.has(domid)) {
      this.dataSeen.add(domid);
      this.sink(domid, 'XS_WRITE', `${rel} = ${shown} (first data/ write; later ones are not traced)`);
    }
  }
}

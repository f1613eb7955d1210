/*
 * netback's xenstore nodes (io/netif.h names), the ones it writes and the
 * ones it reads, in one place. The xenbus wiring does the reading and
 * writing; these functions only say what.
 *
 * Backend directory /local/domain/0/backend/vif/<domid>/<handle>/, written
 * before the backend switches to InitWait (backendNodes):
 *
 *   mac                          the guest's MAC, as the toolstack gave it
 *   handle                       the vif's number (<handle> above)
 *   feature-sg                   1: TX packets may chain slots (more_data)
 *   feature-rx-copy              1: the backend copies into RX buffers
 *   feature-rx-flip              0: no page flipping
 *   feature-gso-tcpv4, -tcpv6    0: no GSO
 *   feature-ipv6-csum-offload    0
 *   feature-split-event-channels 0: one port for both rings
 *   feature-multicast-control    0
 *   feature-ctrl-ring            0
 *   (multi-queue-max-queues is not written: one queue)
 *
 * Frontend directory /local/domain/<domid>/device/vif/<handle>/, read when
 * the frontend reaches Initialised or Connected (parseFrontendNodes):
 *
 *   tx-ring-ref, rx-ring-ref     grant references of the two ring pages
 *   event-channel                the frontend's unbound port, for both rings
 *   request-rx-copy              must be 1 (copy is the only RX mode)
 *   feature-rx-notify            must be 1: the frontend notifies when it
 *                                posts RX buffers (Linux requires it too)
 *   feature-sg                   1: the frontend takes RX frames spanning
 *                                buffers; absent or 0: frames over one
 *                                page are dropped
 *   multi-queue-num-queues       absent or 1 (one queue is offered)
 *   event-channel-tx/-rx         refused without event-channel (split
 *                                event channels are not offered)
 */
import {
  NETIF_NODE_CTRL_RING_REF, NETIF_NODE_EVENT_CHANNEL, NETIF_NODE_EVENT_CHANNEL_TX, NETIF_NODE_FEATURE_CTRL_RING,
  NETIF_NODE_FEATURE_GSO_TCPV4, NETIF_NODE_FEATURE_GSO_TCPV6, NETIF_NODE_FEATURE_IPV6_CSUM_OFFLOAD,
  NETIF_NODE_FEATURE_MULTICAST_CONTROL, NETIF_NODE_FEATURE_RX_COPY, NETIF_NODE_FEATURE_RX_FLIP,
  NETIF_NODE_FEATURE_RX_NOTIFY, NETIF_NODE_FEATURE_SG, NETIF_NODE_FEATURE_SPLIT_EVENT_CHANNELS, NETIF_NODE_HANDLE,
  NETIF_NODE_MAC, NETIF_NODE_MULTI_QUEUE_NUM_QUEUES, NETIF_NODE_REQUEST_RX_COPY, NETIF_NODE_RX_RING_REF,
  NETIF_NODE_TX_RING_REF,
} from '../../public/io/netif.js';
import { err, ok, type Outcome } from '../backend-host.js';

/** What the frontend published, parsed: what Vif.connect takes. */
export interface VifConnectParams {
  /** `tx-ring-ref` */
  readonly txRingRef: number;
  /** `rx-ring-ref` */
  readonly rxRingRef: number;
  /** `event-channel`: the frontend's port. */
  readonly eventChannel: number;
  /** `request-rx-copy` = 1. Connect refuses false. */
  readonly requestRxCopy: boolean;
  /** `feature-rx-notify` = 1. Connect refuses false. */
  readonly rxNotify: boolean;
  /** `feature-sg` = 1: RX frames may span buffers. Default false. */
  readonly sg?: boolean;
}

/** What the backend offers: the features this engine implements. */
export const NETBACK_FEATURES = Object.freeze({ sg: true, rxCopy: true, rxFlip: false });

/** The backend directory's nodes, written before InitWait. */
export function backendNodes(vif: { readonly mac: string; readonly handle: number }): Readonly<Record<string, string>> {
  return Object.freeze({
    [NETIF_NODE_MAC]: vif.mac,
    [NETIF_NODE_HANDLE]: String(vif.handle),
    [NETIF_NODE_FEATURE_SG]: NETBACK_FEATURES.sg ? '1' : '0',
    [NETIF_NODE_FEATURE_RX_COPY]: NETBACK_FEATURES.rxCopy ? '1' : '0',
    [NETIF_NODE_FEATURE_RX_FLIP]: NETBACK_FEATURES.rxFlip ? '1' : '0',
    [NETIF_NODE_FEATURE_GSO_TCPV4]: '0',
    [NETIF_NODE_FEATURE_GSO_TCPV6]: '0',
    [NETIF_NODE_FEATURE_IPV6_CSUM_OFFLOAD]: '0',
    [NETIF_NODE_FEATURE_SPLIT_EVENT_CHANNELS]: '0',
    [NETIF_NODE_FEATURE_MULTICAST_CONTROL]: '0',
    [NETIF_NODE_FEATURE_CTRL_RING]: '0',
  });
}

const U32 = /^[0-9]{1,10}$/;

function u32Node(read: (node: string) => string | undefined, node: string): Outcome<number> {
  const s = read(node);
  if (s === undefined) return err(`${node} is missing`);
  const t = s.trim();
  const n = U32.test(t) ? Number(t) : NaN;
  if (!(n <= 0xffff_ffff)) return err(`${node} = "${s}" is not a 32-bit unsigned number`);
  return ok(n);
}

/** A boolean feature node: "1" true, absent or "0" false, anything else an error. */
function flagNode(read: (node: string) => string | undefined, node: string): Outcome<boolean> {
  const s = read(node)?.trim();
  if (s === undefined || s === '' || s === '0') return ok(false);
  if (s === '1') return ok(true);
  return err(`${node} = "${s}" is neither 0 nor 1`);
}

/**
 * Read and check the frontend's nodes. `read(node)` gives the value of a
 * node of the frontend's directory, or undefined when it does not exist.
 * Never throws: a bad or missing node is an error naming it, for the
 * backend's `error` node.
 */
export function parseFrontendNodes(read: (node: string) => string | undefined): Outcome<VifConnectParams> {
  const tx = u32Node(read, NETIF_NODE_TX_RING_REF);
  if (!tx.ok) return tx;
  const rx = u32Node(read, NETIF_NODE_RX_RING_REF);
  if (!rx.ok) return rx;
  if (read(NETIF_NODE_EVENT_CHANNEL) === undefined && read(NETIF_NODE_EVENT_CHANNEL_TX) !== undefined)
    return err(`${NETIF_NODE_EVENT_CHANNEL_TX} given without ${NETIF_NODE_EVENT_CHANNEL}: split event channels are not offered`);
  const evtchn = u32Node(read, NETIF_NODE_EVENT_CHANNEL);
  if (!evtchn.ok) return evtchn;
  const copy = flagNode(read, NETIF_NODE_REQUEST_RX_COPY);
  if (!copy.ok) return copy;
  if (!copy.value) return err(`${NETIF_NODE_REQUEST_RX_COPY} must be 1: this backend only copies into RX buffers (${NETIF_NODE_FEATURE_RX_FLIP} = 0)`);
  const notify = flagNode(read, NETIF_NODE_FEATURE_RX_NOTIFY);
  if (!notify.ok) return notify;
  if (!notify.value) return err(`${NETIF_NODE_FEATURE_RX_NOTIFY} must be 1: the frontend must notify when it posts RX buffers`);
  const sg = flagNode(read, NETIF_NODE_FEATURE_SG);
  if (!sg.ok) return sg;
  const queues = read(NETIF_NODE_MULTI_QUEUE_NUM_QUEUES)?.trim();
  if (queues !== undefined && queues !== '1') return err(`${NETIF_NODE_MULTI_QUEUE_NUM_QUEUES} = "${queues}": one queue is offered`);
  if (read(NETIF_NODE_CTRL_RING_REF) !== undefined) return err(`${NETIF_NODE_CTRL_RING_REF} given: ${NETIF_NODE_FEATURE_CTRL_RING} is not offered`);
  return ok({ txRingRef: tx.value, rxRingRef: rx.value, eventChannel: evtchn.value, requestRxCopy: true, rxNotify: true, sg: sg.value });
}

/*
 * The two kinds of device dom0 serves, as the xenbus driver (driver.ts)
 * sees them: how to open the engine from the backend directory, which
 * frontend nodes to read, and how to connect.
 *
 * vbd (blkback, io/blkif.h). Opened from `params` (the image: `PATH` or
 * `file:PATH`; `phy:` and the like are refused), `mode` (r or w) and
 * `type` (file). The frontend publishes `ring-ref`, `event-channel` and
 * optionally `protocol` (only the native x86_64-abi is served); a
 * multi-page ring (`ring-page-order`, `num-ring-pages`, `ring-ref0`...) or
 * more than one queue is refused, since neither `max-ring-page-order` nor
 * `multi-queue-max-queues` is offered.
 *
 * vif (netback, io/netif.h). Opened from `mac` and `bridge` (the bridge is
 * made on first use, Dom0Network.bridge); the frontend's nodes are those
 * netback/nodes.ts parses.
 */
import {
  BLKIF_NODE_EVENT_CHANNEL, BLKIF_NODE_MODE, BLKIF_NODE_MULTI_QUEUE_NUM_QUEUES, BLKIF_NODE_NUM_RING_PAGES,
  BLKIF_NODE_PARAMS, BLKIF_NODE_PROTOCOL, BLKIF_NODE_RING_PAGE_ORDER, BLKIF_NODE_RING_REF, BLKIF_NODE_TYPE,
  blkifRingRefNode,
} from '../../public/io/blkif.js';
import {
  NETIF_NODE_CTRL_RING_REF, NETIF_NODE_EVENT_CHANNEL, NETIF_NODE_EVENT_CHANNEL_RX, NETIF_NODE_EVENT_CHANNEL_TX,
  NETIF_NODE_FEATURE_RX_NOTIFY, NETIF_NODE_FEATURE_SG, NETIF_NODE_MAC, NETIF_NODE_MULTI_QUEUE_NUM_QUEUES,
  NETIF_NODE_REQUEST_RX_COPY, NETIF_NODE_RX_RING_REF, NETIF_NODE_TX_RING_REF,
} from '../../public/io/netif.js';
import { domid as toDomId } from '../../public/types.js';
import { err, ok, type Outcome } from '../../dom0/backend-host.js';
import type { Blkback } from '../../dom0/blkback/blkback.js';
import { imagePath } from '../../dom0/blkback/disk.js';
import type { ConnectParams } from '../../dom0/blkback/vbd.js';
import type { Netback } from '../../dom0/netback/netback.js';
import { parseFrontendNodes, type VifConnectParams } from '../../dom0/netback/nodes.js';
import type { BridgeAttach } from '../../dom0/netback/vif.js';
import type { BackendEngine, BackendKind, NodeReader } from './driver.js';
import type { DeviceRef } from './nodes.js';

/** The bridge a vif goes on when its backend names none. */
export const DEFAULT_BRIDGE = 'xenbr0';

const U32 = /^[0-9]{1,10}$/;

function u32(read: NodeReader, node: string): Outcome<number> {
  const s = read(node);
  if (s === undefined) return err(`${node} is missing`);
  const n = U32.test(s.trim()) ? Number(s.trim()) : NaN;
  return n <= 0xffff_ffff ? ok(n) : err(`${node} = "${s}" is not a 32-bit unsigned number`);
}

/** The frontend's blkif nodes, checked: what Vbd.connect takes. Never throws. */
export function parseBlkFrontendNodes(read: NodeReader): Outcome<ConnectParams> {
  for (const multi of [BLKIF_NODE_RING_PAGE_ORDER, BLKIF_NODE_NUM_RING_PAGES]) {
    const v = read(multi)?.trim();
    if (v !== undefined && v !== '0' && v !== '1') return err(`${multi} = "${v}": multi-page rings are not offered`);
  }
  if (read(BLKIF_NODE_RING_REF) === undefined && read(blkifRingRefNode(0)) !== undefined) {
    return err(`${blkifRingRefNode(0)} given without ${BLKIF_NODE_RING_REF}: multi-page rings are not offered`);
  }
  const queues = read(BLKIF_NODE_MULTI_QUEUE_NUM_QUEUES)?.trim();
  if (queues !== undefined && queues !== '1') return err(`${BLKIF_NODE_MULTI_QUEUE_NUM_QUEUES} = "${queues}": one queue is offered`);
  const ring = u32(read, BLKIF_NODE_RING_REF);
  if (!ring.ok) return ring;
  const port = u32(read, BLKIF_NODE_EVENT_CHANNEL);
  if (!port.ok) return port;
  const protocol = read(BLKIF_NODE_PROTOCOL);
  return ok(protocol === undefined ? { ringRef: ring.value, eventChannel: port.value } : { ringRef: ring.value, eventChannel: port.value, protocol });
}

const BLK_FRONTEND_NODES = Object.freeze([
  BLKIF_NODE_RING_REF, blkifRingRefNode(0), BLKIF_NODE_EVENT_CHANNEL, BLKIF_NODE_PROTOCOL,
  BLKIF_NODE_RING_PAGE_ORDER, BLKIF_NODE_NUM_RING_PAGES, BLKIF_NODE_MULTI_QUEUE_NUM_QUEUES,
]);

/** blkback behind the xenbus driver. */
export function vbdKind(blkback: Blkback): BackendKind {
  return {
    kind: 'vbd',
    backendNodes: [BLKIF_NODE_PARAMS, BLKIF_NODE_MODE, BLKIF_NODE_TYPE],
    open(ref: DeviceRef, read: NodeReader): Outcome<BackendEngine> {
      const params = read(BLKIF_NODE_PARAMS);
      if (params === undefined || params === '') return err(`${BLKIF_NODE_PARAMS} is missing: no disk image named`);
      const mode = read(BLKIF_NODE_MODE) ?? 'w';
      if (mode !== 'r' && mode !== 'w') return err(`${BLKIF_NODE_MODE} = "${mode}" is neither r nor w`);
      const type = read(BLKIF_NODE_TYPE);
      if (type !== undefined && type !== 'file') return err(`${BLKIF_NODE_TYPE} = "${type}": only file images are served`);
      const path = imagePath(params);
      if (!path.ok) return err(path.error);
      const frontendDomid = toDomId(ref.frontendDomid);
      const made = blkback.create({ frontendDomid, devid: ref.devid, target: params, readOnly: mode === 'r' });
      if (!made.ok) return err(made.error.message);
      const vbd = made.value;
      let current: ConnectParams | undefined;
      return ok({
        featureNodes: () => vbd.connectNodes(),
        frontendNodes: BLK_FRONTEND_NODES,
        connect(r: NodeReader): Outcome<void> {
          const p = parseBlkFrontendNodes(r);
          if (!p.ok) return p;
          const c = vbd.connect(p.value);
          if (!c.ok) return err(`connect refused: ${c.error}`);
          current = p.value;
          return ok(undefined);
        },
        sameConnection(r: NodeReader): boolean {
          const p = parseBlkFrontendNodes(r);
          return vbd.state === 'connected' && current !== undefined && p.ok &&
            p.value.ringRef === current.ringRef && p.value.eventChannel === current.eventChannel;
        },
        disconnect: () => vbd.disconnect(),
        destroy: () => {
          blkback.destroy(frontendDomid, ref.devid);
        },
        get failure() {
          return vbd.state === 'failed' ? vbd.error : undefined;
        },
      });
    },
  };
}

const NET_FRONTEND_NODES = Object.freeze([
  NETIF_NODE_TX_RING_REF, NETIF_NODE_RX_RING_REF, NETIF_NODE_EVENT_CHANNEL, NETIF_NODE_EVENT_CHANNEL_TX,
  NETIF_NODE_EVENT_CHANNEL_RX, NETIF_NODE_REQUEST_RX_COPY, NETIF_NODE_FEATURE_RX_NOTIFY, NETIF_NODE_FEATURE_SG,
  NETIF_NODE_MULTI_QUEUE_NUM_QUEUES, NETIF_NODE_CTRL_RING_REF,
]);

/** netback behind the xenbus driver; `bridge(name)` is Dom0Network.bridge. */
export function vifKind(netback: Netback, bridge: (name: string) => BridgeAttach): BackendKind {
  return {
    kind: 'vif',
    backendNodes: [NETIF_NODE_MAC, 'bridge'],
    open(ref: DeviceRef, read: NodeReader): Outcome<BackendEngine> {
      const mac = read(NETIF_NODE_MAC);
      if (mac === undefined) return err(`${NETIF_NODE_MAC} is missing`);
      const bridgeName = read('bridge') ?? DEFAULT_BRIDGE;
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(bridgeName)) return err(`bridge = "${bridgeName}" is not a bridge name`);
      const frontendDomid = toDomId(ref.frontendDomid);
      const made = netback.create({ frontendDomid, devid: ref.devid, mac, bridge: bridge(bridgeName) });
      if (!made.ok) return err(made.error.message);
      const vif = made.value;
      let current: VifConnectParams | undefined;
      return ok({
        featureNodes: () => vif.backendNodes(),
        frontendNodes: NET_FRONTEND_NODES,
        connect(r: NodeReader): Outcome<void> {
          const p = parseFrontendNodes(r);
          if (!p.ok) return p;
          const c = vif.connect(p.value);
          if (!c.ok) return err(`connect refused: ${c.error}`);
          current = p.value;
          return ok(undefined);
        },
        sameConnection(r: NodeReader): boolean {
          const p = parseFrontendNodes(r);
          return vif.state === 'connected' && current !== undefined && p.ok && p.value.txRingRef === current.txRingRef &&
            p.value.rxRingRef === current.rxRingRef && p.value.eventChannel === current.eventChannel;
        },
        disconnect: () => vif.disconnect(),
        destroy: () => {
          netback.destroy(frontendDomid, ref.devid);
        },
        get failure() {
          return vif.state === 'failed' ? vif.error : undefined;
        },
      });
    },
  };
}

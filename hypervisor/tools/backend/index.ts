/*
 * dom0's xenbus backend driver and the toolstack's device adding: what
 * connects a domain's disks and vifs to blkback and netback.
 *
 *   nodes.ts    paths, device numbers, the nodes libxl writes
 *   devices.ts  the toolstack's half (xl create / destroy)
 *   driver.ts   the xenbus half: watches, the handshake, errors
 *   kinds.ts    vbd (blkback) and vif (netback) behind the driver
 *   dom0.ts     everything wired once for a machine
 */
export {
  DEVICE_KINDS, BACKEND_DOMID, backendRoot, backendDomainDir, backendPath, frontendKindDir, frontendPath, deviceKey,
  deviceName, parseBackendPath, vdevToDevid, vbdNodes, vifNodes, frontendPerms, backendPerms,
  type DeviceKind, type DeviceRef, type DeviceNodes, type NodeValues, type BackendPathParts,
} from './nodes.js';
export { DeviceAdder, vifName, type DeviceAdderDeps, type DeviceSet } from './devices.js';
export {
  BackendDriver, type BackendDriverOptions, type BackendEngine, type BackendKind, type DeviceStatus, type NodeReader,
} from './driver.js';
export { vbdKind, vifKind, parseBlkFrontendNodes, DEFAULT_BRIDGE } from './kinds.js';
export { Dom0Backends, NET_TICK_NS, PING_TIMEOUT_NS, type Dom0BackendsOptions, type NetworkInfo } from './dom0.js';

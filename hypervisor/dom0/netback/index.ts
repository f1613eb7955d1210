/*
 * dom0's network backend: vifs that connect a frontend's netif rings to a
 * bridge port. netback.ts says how the machine and the xenbus wiring use
 * it; the machine host it shares with blkback is ../backend-host.ts.
 */
export { Netback, type NetbackOptions, type VifCreateSpec, type VifCreateResult, type VifCreateError, type VifInfo } from './netback.js';
export {
  Vif, DEFAULT_POLL_BUDGET, DEFAULT_RX_QUEUE_FRAMES, DEFAULT_RX_QUEUE_BYTES,
  type VifState, type VifStats, type VifOptions, type VifRingsAt, type BridgeAttach,
} from './vif.js';
export { backendNodes, parseFrontendNodes, NETBACK_FEATURES, type VifConnectParams } from './nodes.js';
export { MachineBackendHost, MachineGrantIo, machineBackendHost, type BackendHost, type MachineBackendDeps } from '../backend-host.js';
export { NetBackRing, NETIF_TX_GEOMETRY, NETIF_RX_GEOMETRY } from './transport.js';
export { TX_MAX_SLOTS, TX_FATAL_SLOTS, TX_MAX_EXTRAS, parseTxPacket, type TxParse, type TxPacket } from './wire.js';
export { benchNetback, type NetBenchOptions, type NetBenchResult, type NetBenchCase } from './bench.js';

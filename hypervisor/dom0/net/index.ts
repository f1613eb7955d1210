/*
 * dom0's network, the parts that do not touch Xen rings: packet formats,
 * the software bridge, dom0's own address on it, heartbeats, and host UDP
 * port forwarding. netback plugs its vifs into a Bridge as BridgePorts.
 */
export { type Mac, type Ipv4, parseMac, formatMac, parseIpv4, formatIpv4 } from './addr.js';
export {
  Bridge, DEFAULT_AGEING_NS, type BridgeOptions, type BridgePort, type BridgeLink, type NetClock,
  type PortCounters, type GratuitousArpEvent, type PortMoveEvent, type FdbEntry,
} from './bridge.js';
export {
  Dom0Endpoint, DOM0_MAC, DOM0_IP, DOM0_PREFIX_LENGTH, type Dom0EndpointOptions, type PingResult,
  type SendResult, type NetError, type UdpMessage, type UdpHandler, type UdpBinding, type ArpEntry, type EndpointCounters,
} from './endpoint.js';
export { HeartbeatMonitor, HEARTBEAT_PORT, type HeartbeatSource } from './heartbeat.js';
export { UdpForwarder, UdpForwardError, FORWARD_BIND_ADDRESS, type UdpForwarderOptions, type ForwardMapping, type ForwardCounters } from './forward.js';
export { EchoGuest, type EchoGuestOptions } from './echo-guest.js';
export { benchUdpForward, type UdpForwardBenchResult } from './udp-bench.js';
export { Dom0Network, type Dom0NetworkOptions } from './network.js';
export * from './ether.js';
export * from './ip.js';

/*
 * Heartbeats: the guest workload sends a small UDP datagram to dom0 at a
 * fixed interval; dom0 counts them per source IP. A restored or migrated
 * guest that kept running shows up as the same source IP whose count
 * keeps growing, with a gap of about the downtime between two beats.
 */
import type { Dom0Endpoint, UdpBinding, UdpMessage } from './endpoint.js';

/** Default dom0 UDP port for heartbeats. */
export const HEARTBEAT_PORT = 7777;

export interface HeartbeatSource {
  readonly ip: string;
  readonly count: number;
  readonly firstNs: number;
  readonly lastNs: number;
  /** Largest gap between two consecutive beats (ns). */
  readonly maxGapNs: number;
  /** The last beat's payload as text (invalid UTF-8 replaced). */
  readonly lastPayload: string;
}

type Mutable = { -readonly [K in keyof HeartbeatSource]: HeartbeatSource[K] };

export class HeartbeatMonitor {
  private readonly binding: UdpBinding;
  private readonly sources = new Map<string, Mutable>();
  private readonly listeners = new Set<(m: UdpMessage, s: HeartbeatSource) => void>();
  private readonly decoder = new TextDecoder();

  constructor(endpoint: Dom0Endpoint, port = HEARTBEAT_PORT) {
    this.binding = endpoint.bindUdp(port, (m) => this.record(m));
  }

  get port(): number {
    return this.binding.port;
  }

  /** Beats seen from `ip` (0 if none). */
  count(ip: string): number {
    return this.sources.get(ip)?.count ?? 0;
  }

  source(ip: string): HeartbeatSource | undefined {
    const s = this.sources.get(ip);
    return s ? { ...s } : undefined;
  }

  all(): HeartbeatSource[] {
    return [...this.sources.values()].map((s) => ({ ...s }));
  }

  /** Call `fn` on every beat; returns the unsubscribe. */
  onBeat(fn: (m: UdpMessage, s: HeartbeatSource) => void): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }

  private record(m: UdpMessage): void {
    let s = this.sources.get(m.srcIp);
    if (!s) {
      s = { ip: m.srcIp, count: 0, firstNs: m.timeNs, lastNs: m.timeNs, maxGapNs: 0, lastPayload: '' };
      this.sources.set(m.srcIp, s);
    } else {
      s.maxGapNs = Math.max(s.maxGapNs, m.timeNs - s.lastNs);
    }
    s.count++;
    s.lastNs = m.timeNs;
    s.lastPayload = this.decoder.decode(m.payload);
    const snapshot = { ...s };
    for (const fn of [...this.listeners]) fn(m, snapshot);
  }

  close(): void {
    this.binding.close();
  }
}

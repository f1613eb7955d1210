/*
 * What a dom0 service that serves one shared page per guest needs from the
 * machine: map the guest's page, bind dom0 to the guest's event channel,
 * signal the guest, and a place to report a guest that broke the protocol.
 *
 * xenconsoled and the ctrl_if domain controller both take this env; the
 * machine implements it once (a foreign map of the frame, EVTCHNOP
 * bind_interdomain as dom0 plus its dom0 event routing, EVTCHNOP_send).
 * `bindEventChannel` has the shape blkback's host uses, so one
 * implementation can serve every backend. Tests implement it over plain
 * page buffers.
 *
 * Requirement on implementations, for live migration: writes into the
 * mapped page must go through the machine's one write path
 * (MachineMemory.frameMem does) so log-dirty mode sees them.
 */
import type { ByteMem } from '../../public/layout.js';
import type { DomId, EvtchnPort, Mfn } from '../../public/types.js';

/** A value or why not. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** dom0's end of an interdomain event channel to one guest. */
export interface EventBinding {
  /** Signal the guest (EVTCHNOP_send on dom0's end). */
  notify(): void;
  /** EVTCHNOP_close: `onEvent` is not called any more. Called once. */
  close(): void;
}

export interface GuestLinkEnv {
  /** dom0's mapping of machine frame `mfn`, which must belong to `domid` (a foreign map). */
  mapGuestFrame(domid: DomId, mfn: Mfn): Outcome<ByteMem>;
  /**
   * Bind a new dom0 port to the guest's unbound `remotePort`. `onEvent`
   * runs each time the guest signals; the machine calls it between guest
   * entries, never inside one.
   */
  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<EventBinding>;
  /** A line for the machine's log (`xl dmesg`): a guest broke a protocol, a log file failed. */
  report?(line: string): void;
}

/** Outcome of connecting a service to a guest's page. */
export type Dom0Result = { readonly ok: true } | { readonly ok: false; readonly error: string };

export const dom0Ok: Dom0Result = Object.freeze({ ok: true });

export function dom0Error(error: string): Dom0Result {
  return { ok: false, error };
}

/*
 * xen/include/public/io/xenbus.h: the states of a split driver, as written
 * (decimal) to each end's `state` node. Frontend and backend step through
 * them in turn: Initialising -> InitWait -> Initialised -> Connected ->
 * Closing -> Closed.
 */

export const XenbusStateUnknown = 0;
export const XenbusStateInitialising = 1;
/** Early setup done; waiting for the peer (or hotplug scripts). */
export const XenbusStateInitWait = 2;
/** Ring and port published; waiting for the peer to connect. */
export const XenbusStateInitialised = 3;
export const XenbusStateConnected = 4;
/** Going away (unplug or error). */
export const XenbusStateClosing = 5;
export const XenbusStateClosed = 6;
export const XenbusStateReconfiguring = 7;
export const XenbusStateReconfigured = 8;

/** `enum xenbus_state` */
export type XenbusState =
  | typeof XenbusStateUnknown
  | typeof XenbusStateInitialising
  | typeof XenbusStateInitWait
  | typeof XenbusStateInitialised
  | typeof XenbusStateConnected
  | typeof XenbusStateClosing
  | typeof XenbusStateClosed
  | typeof XenbusStateReconfiguring
  | typeof XenbusStateReconfigured;

/** Names for logs, indexed by state. */
export const XENBUS_STATE_NAMES: readonly string[] = Object.freeze([
  'Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected',
  'Closing', 'Closed', 'Reconfiguring', 'Reconfigured',
]);

/** Parse a `state` node's value; undefined for anything but 0..8 in decimal. */
export function parseXenbusState(s: string): XenbusState | undefined {
  if (!/^[0-8]$/.test(s)) return undefined;
  return Number(s) as XenbusState;
}

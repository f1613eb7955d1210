/*
 * ctrl_if messages on the wire: `control_msg_t` slots of a `control_if_t`
 * page (hypervisor/public/domain_controller.ts). Reading a slot never
 * throws: a `length` beyond the 60-byte payload is an error value.
 *
 * Xen 2.0 conventions kept here:
 *  - a response is written into the ring slot of the request it answers,
 *    echoing type, subtype and id; `length` is the response payload;
 *  - a message type nobody handles is answered with `length = 0` (the
 *    guest's default handler and the domain controller both do this);
 *  - id 0xFF from a guest means "no callback wanted" (it is echoed anyway).
 */
import type { ByteMem } from '../../public/layout.js';
import {
  CMSG_BLKIF_BE, CMSG_BLKIF_FE, CMSG_CONSOLE, CMSG_MEM_REQUEST, CMSG_NETIF_BE, CMSG_NETIF_FE, CMSG_SHUTDOWN,
  CMSG_SHUTDOWN_POWEROFF, CMSG_SHUTDOWN_REBOOT, CMSG_SHUTDOWN_SUSPEND, CMSG_SHUTDOWN_SYSRQ,
  CONTROL_MSG_PAYLOAD, MASK_CONTROL_IDX, control_if,
} from '../../public/domain_controller.js';

/** A control message as dom0 handles it (a copy, never a window onto the page). */
export interface CtrlMsg {
  readonly type: number;
  readonly subtype: number;
  readonly id: number;
  /** msg[0..length). */
  readonly payload: Uint8Array;
}

export type CtrlRing = 'tx_ring' | 'rx_ring';

export type SlotRead =
  | { readonly ok: true; readonly msg: CtrlMsg }
  | { readonly ok: false; readonly error: string; readonly header: Omit<CtrlMsg, 'payload'> };

/** A `control_if_t` at `base` of a page: its indices and its two rings of 8 slots. */
export class CtrlIfPage {
  constructor(
    readonly mem: ByteMem,
    readonly base: number,
  ) {}

  view() {
    return control_if.view(this.mem, this.base);
  }

  /** Read the message in the slot of free-running index `idx`. */
  readSlot(ring: CtrlRing, idx: number): SlotRead {
    const s = this.view().sub(ring, MASK_CONTROL_IDX(idx));
    const header = { type: s.get('type'), subtype: s.get('subtype'), id: s.get('id') };
    const length = s.get('length');
    if (length > CONTROL_MSG_PAYLOAD) return { ok: false, error: `length ${length} > ${CONTROL_MSG_PAYLOAD}`, header };
    const payload = length === 0 ? new Uint8Array(0) : this.mem.readBytes(s.addr('msg'), length);
    return { ok: true, msg: { ...header, payload } };
  }

  /** Write `msg` into the slot of free-running index `idx` (payload clipped to 60 bytes, rest zeroed). */
  writeSlot(ring: CtrlRing, idx: number, msg: CtrlMsg): void {
    const s = this.view().sub(ring, MASK_CONTROL_IDX(idx));
    const len = Math.min(msg.payload.length, CONTROL_MSG_PAYLOAD);
    s.set('type', msg.type & 0xff);
    s.set('subtype', msg.subtype & 0xff);
    s.set('id', msg.id & 0xff);
    s.set('length', len);
    const body = new Uint8Array(CONTROL_MSG_PAYLOAD);
    body.set(msg.payload.subarray(0, len));
    this.mem.writeBytes(s.addr('msg'), body);
  }
}

/** The guest's "no response callback" id. */
export const CTRL_ID_NONE = 0xff;

/** What dom0 may ask of a guest with CMSG_SHUTDOWN. */
export type ShutdownKind = 'poweroff' | 'reboot' | 'suspend' | 'sysrq';

export const SHUTDOWN_SUBTYPE: Readonly<Record<ShutdownKind, number>> = Object.freeze({
  poweroff: CMSG_SHUTDOWN_POWEROFF,
  reboot: CMSG_SHUTDOWN_REBOOT,
  suspend: CMSG_SHUTDOWN_SUSPEND,
  sysrq: CMSG_SHUTDOWN_SYSRQ,
});

const TYPE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [CMSG_CONSOLE]: 'CONSOLE',
  [CMSG_BLKIF_BE]: 'BLKIF_BE',
  [CMSG_BLKIF_FE]: 'BLKIF_FE',
  [CMSG_NETIF_BE]: 'NETIF_BE',
  [CMSG_NETIF_FE]: 'NETIF_FE',
  [CMSG_SHUTDOWN]: 'SHUTDOWN',
  [CMSG_MEM_REQUEST]: 'MEM_REQUEST',
});

/** `CMSG_SHUTDOWN/2` style name of a message, for logs. */
export function msgName(m: { readonly type: number; readonly subtype: number }): string {
  return `CMSG_${TYPE_NAMES[m.type] ?? `type${m.type}`}/${m.subtype}`;
}

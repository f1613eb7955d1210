/*
 * Save and restore for tests and benches, the way the toolstack does them
 * (`xl save`, `xl restore`: MachineHost.writeImage, MachineHost.restoreBytes
 * and adoptRestored), with the image in memory instead of a file:
 *
 *   suspended(h, d)                 the domain is in SHUTDOWN_suspend
 *   saveBytes(h, d, opts)           image of a suspended domain (its full
 *                                   xl.cfg, name and uuid), then the domain
 *                                   destroyed as `xl save` destroys it
 *   saveToBytes(h, d, opts)         the same, and both image checkers pass it
 *   restoreBytes(h, bytes, opts)    `xl restore` of it: nodes, XS_INTRODUCE,
 *                                   console, ctrl_if, devices from the config,
 *                                   unpause; the new domid
 *
 * Asking the guest to suspend is the test's business (it picks the path and
 * the moment).
 */
import type { MachineHost, RestoreBytesOptions, WriteImageOptions } from '../../hypervisor/tools/machine/host.js';
import { assertValidImage } from './verify-image.js';

/** Shut down with SHUTDOWN_suspend (and not resumed yet). */
export function suspended(h: MachineHost, domid: number): boolean {
  return h.isSuspended(domid);
}

/**
 * `xl save` of suspended domain `domid` of `h` into memory: the image as
 * MachineHost.save writes its file, then the domain is destroyed (its
 * devices, nodes and console go with it).
 */
export async function saveBytes(h: MachineHost, domid: number, opts: WriteImageOptions = {}): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await h.writeImage(domid, (c) => {
    chunks.push(c.slice());
  }, opts);
  await h.destroy(domid);
  return new Uint8Array(Buffer.concat(chunks));
}

export interface SaveToBytesOptions extends WriteImageOptions {
  /** Names the image if a checker refuses it (default `image of d<domid>`). */
  readonly what?: string;
}

/** saveBytes, then our checker and Xen's verify-stream-v2 must both accept the image. */
export async function saveToBytes(h: MachineHost, domid: number, opts: SaveToBytesOptions = {}): Promise<Uint8Array> {
  const { what = `image of d${domid}`, ...write } = opts;
  const bytes = await saveBytes(h, domid, write);
  await assertValidImage(bytes, what);
  return bytes;
}

/** `xl restore` of `bytes` into `h` (MachineHost.restoreBytes): the new domain's id. */
export async function restoreBytes(h: MachineHost, bytes: Uint8Array, opts: RestoreBytesOptions = {}): Promise<number> {
  return (await h.restoreBytes(bytes, opts)).domid;
}

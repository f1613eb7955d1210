/*
 * Where a split device lives in xenstore, and what the toolstack writes
 * there when it adds one (libxl__device_disk_add / libxl__device_nic_add
 * through libxl__device_generic_add).
 *
 * Frontend directory /local/domain/N/device/<kind>/<devid>, the guest's
 * (owner N, dom0 may read), and backend directory
 * /local/domain/0/backend/<kind>/N/<devid>, dom0's (the guest may read):
 *
 *   vbd frontend  backend, backend-id, state = 1 (Initialising),
 *                 virtual-device (the devid), device-type = disk
 *   vbd backend   frontend, frontend-id, params (host path of the image),
 *                 mode (r | w), type = file, dev (the vdev, xvda),
 *                 state = 1, online = 1, removable = 0, bootable = 1
 *   vif frontend  backend, backend-id, state = 1, handle, mac
 *   vif backend   frontend, frontend-id, mac, bridge, handle, state = 1,
 *                 online = 1, ip (only when the vif has ip=)
 *
 * The guest finds its address in the vif's backend `ip` node, as libxl
 * writes a vif's ip= and as xennet reads it (arch/xen/xen/xennet_var.ts);
 * a kernel command line `ip=` wins over it in the guest.
 *
 * Device numbers: a vif's devid is its index in the config's vif list; a
 * vbd's is the vdev encoded as Xen does (docs/misc/vbd-interface.txt):
 * xvd disks 0..15 as (202 << 8) | (disk << 4) | partition, so xvda is
 * 51712; disks from 16 on as (1 << 28) | (disk << 8) | partition.
 */
import type { DiskSpec, VifSpec } from '../xl/config.js';

export type DeviceKind = 'vbd' | 'vif';
export const DEVICE_KINDS: readonly DeviceKind[] = Object.freeze(['vbd', 'vif']);

/** One split device: which kind, whose, which number. */
export interface DeviceRef {
  readonly kind: DeviceKind;
  readonly frontendDomid: number;
  readonly devid: number;
}

/** The backend domain: dom0 serves every device here. */
export const BACKEND_DOMID = 0;

export const backendRoot = (kind: DeviceKind): string => `/local/domain/${BACKEND_DOMID}/backend/${kind}`;
export const backendDomainDir = (kind: DeviceKind, domid: number): string => `${backendRoot(kind)}/${domid}`;
export const backendPath = (d: DeviceRef): string => `${backendDomainDir(d.kind, d.frontendDomid)}/${d.devid}`;
export const frontendKindDir = (kind: DeviceKind, domid: number): string => `/local/domain/${domid}/device/${kind}`;
export const frontendPath = (d: DeviceRef): string => `${frontendKindDir(d.kind, d.frontendDomid)}/${d.devid}`;
export const deviceKey = (d: DeviceRef): string => `${d.kind}/${d.frontendDomid}/${d.devid}`;
/** How logs and errors name a device: `vbd d3/51712`. */
export const deviceName = (d: DeviceRef): string => `${d.kind} d${d.frontendDomid}/${d.devid}`;

/** A path under /local/domain/0/backend/<kind>, cut into its parts (undefined: not ours). */
export interface BackendPathParts {
  readonly kind: DeviceKind;
  readonly domid?: number;
  readonly devid?: number;
  /** Below the device directory (a node of it). */
  readonly node?: string;
}

const NUM = /^(0|[1-9][0-9]{0,9})$/;

export function parseBackendPath(path: string): BackendPathParts | undefined {
  const prefix = `/local/domain/${BACKEND_DOMID}/backend/`;
  if (!path.startsWith(prefix)) return undefined;
  const [kind, dom, dev, ...rest] = path.slice(prefix.length).split('/');
  if (kind !== 'vbd' && kind !== 'vif') return undefined;
  if (dom === undefined || dom === '') return { kind };
  if (!NUM.test(dom)) return undefined;
  const domid = Number(dom);
  if (dev === undefined || dev === '') return { kind, domid };
  if (!NUM.test(dev)) return undefined;
  const devid = Number(dev);
  return rest.length === 0 ? { kind, domid, devid } : { kind, domid, devid, node: rest.join('/') };
}

const XVD_MAJOR = 202;
/** Disks 0..15 fit the xvd major's minor numbers; later ones use the extended form. */
const XVD_SHORT_DISKS = 16;
const XVD_SHORT_PARTITIONS = 16;
const XVD_EXTENDED = 1 << 28;
const XVD_EXTENDED_PARTITIONS = 256;
const XVD_EXTENDED_DISKS = 1 << 20;

/**
 * The devid of a Xen PV disk name (`xvda`, `xvdb3`, `xvdaa`), or undefined
 * for anything else. Letters count from a as 0, bijective base 26 (xvdz is
 * 25, xvdaa 26); digits name a partition.
 */
export function vdevToDevid(vdev: string): number | undefined {
  const m = /^xvd([a-z]+)([1-9][0-9]*)?$/.exec(vdev);
  if (!m) return undefined;
  let disk = 0;
  for (const c of m[1]!) {
    disk = disk * 26 + (c.charCodeAt(0) - 96);
    if (disk > XVD_EXTENDED_DISKS) return undefined;
  }
  disk -= 1;
  const part = m[2] === undefined ? 0 : Number(m[2]);
  if (disk < XVD_SHORT_DISKS && part < XVD_SHORT_PARTITIONS) return (XVD_MAJOR << 8) | (disk << 4) | part;
  if (disk >= XVD_EXTENDED_DISKS || part >= XVD_EXTENDED_PARTITIONS) return undefined;
  return XVD_EXTENDED | (disk << 8) | part;
}

/** Values of one device directory, by node name. */
export type NodeValues = Readonly<Record<string, string>>;

/** What the toolstack writes for one device: both directories and their owners. */
export interface DeviceNodes {
  readonly ref: DeviceRef;
  readonly frontend: NodeValues;
  readonly backend: NodeValues;
}

const INITIALISING = '1';

function common(ref: DeviceRef): { frontend: Record<string, string>; backend: Record<string, string> } {
  return {
    frontend: { backend: backendPath(ref), 'backend-id': String(BACKEND_DOMID), state: INITIALISING },
    backend: { frontend: frontendPath(ref), 'frontend-id': String(ref.frontendDomid), state: INITIALISING, online: '1' },
  };
}

/** The nodes of a disk; `devid` from vdevToDevid. */
export function vbdNodes(domid: number, devid: number, disk: DiskSpec): DeviceNodes {
  const ref: DeviceRef = { kind: 'vbd', frontendDomid: domid, devid };
  const c = common(ref);
  return {
    ref,
    frontend: { ...c.frontend, 'virtual-device': String(devid), 'device-type': 'disk' },
    backend: {
      ...c.backend,
      params: disk.target,
      mode: disk.readOnly ? 'r' : 'w',
      type: 'file',
      dev: disk.vdev,
      removable: '0',
      bootable: '1',
    },
  };
}

/** The nodes of the vif at index `devid` of the config's list. */
export function vifNodes(domid: number, devid: number, vif: VifSpec): DeviceNodes {
  const ref: DeviceRef = { kind: 'vif', frontendDomid: domid, devid };
  const c = common(ref);
  const backend: Record<string, string> = { ...c.backend, mac: vif.mac, bridge: vif.bridge, handle: String(devid) };
  if (vif.ip !== undefined) backend['ip'] = vif.ip;
  return { ref, frontend: { ...c.frontend, handle: String(devid), mac: vif.mac }, backend };
}

/** Permissions: the frontend directory is the guest's (dom0 reads); the backend one dom0's (the guest reads). */
export const frontendPerms = (domid: number): readonly string[] => [`n${domid}`, `r${BACKEND_DOMID}`];
export const backendPerms = (domid: number): readonly string[] => [`n${BACKEND_DOMID}`, `r${domid}`];

/*
 * The xenstore side of building a domain: the nodes libxl writes for a
 * new PV guest (libxl__domain_make, libxl__build_post, the console
 * frontend), all in one transaction, then XS_INTRODUCE so that xenstored
 * attaches the store ring and fires @introduceDomain.
 *
 * Permissions follow libxl. The domain's directory and most of what is in
 * it are dom0's, readable by the guest (`n0 rN`); the nodes the guest must
 * write are the guest's own (`nN`): control/shutdown (it acks a request
 * by writing ""), control/feature-* (it advertises what it handles),
 * control/sysrq, device/suspend/event-channel, data, drivers, feature,
 * attr, error. The console directory is the guest's (frontend state),
 * with the values it must not change (port, ring-ref, ...) read-only.
 *
 * Nodes written (N = domid, U = uuid):
 *   /local/domain/N/{name,domid,vm}
 *   /local/domain/N/memory/{static-max,target,videoram}
 *   /local/domain/N/cpu/<i>/availability
 *   /local/domain/N/control/{shutdown,feature-poweroff,feature-reboot,
 *        feature-suspend,sysrq,platform-feature-multiprocessor-suspend,
 *        platform-feature-xs_reset_watches}
 *   /local/domain/N/device/suspend/event-channel = ""
 *   /local/domain/N/{data,drivers,feature,attr,error}
 *   /local/domain/N/store/{port,ring-ref}
 *   /local/domain/N/console/{port,ring-ref,type,output,limit}
 *   /vm/U/{uuid,name,start_time}
 *   /libxl/N/{type,kernel}
 * Device nodes (vbd, vif, frontend and backend) are written by
 * tools/backend/devices.ts once the domain is introduced.
 */
import { XsError, type XsClient } from '../xenstored/client.js';
import { BuildError } from './errors.js';

export interface DomainNodes {
  readonly domid: number;
  readonly name: string;
  readonly uuid: string;
  readonly kernel: string;
  readonly vcpus: number;
  readonly targetKb: number;
  readonly maxMemKb: number;
  readonly storeMfn: number;
  readonly storePort: number;
  readonly consoleMfn: number;
  readonly consolePort: number;
  /** console/output: "pty" in xl; here where xenconsoled writes the log ("file:<path>"). */
  readonly consoleOutput: string;
  /** Unix seconds, for /vm/U/start_time. */
  readonly startTime: number;
}

/** xenconsoled's default per-console buffer limit, as libxl writes it. */
const CONSOLE_LIMIT = 1048576;
const TX_RETRIES = 64;

export const domainPath = (domid: number): string => `/local/domain/${domid}`;
export const vmPath = (uuid: string): string => `/vm/${uuid}`;
export const libxlPath = (domid: number): string => `/libxl/${domid}`;

/** Run `body` in a transaction, retrying when the commit conflicts (EAGAIN). */
export async function inTransaction(xs: XsClient, body: (tx: number) => Promise<void>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const tx = await xs.transactionStart();
    try {
      await body(tx);
    } catch (e) {
      await xs.transactionEnd(tx, false).catch(() => undefined);
      throw e;
    }
    try {
      await xs.transactionEnd(tx, true);
      return;
    } catch (e) {
      if (!(e instanceof XsError && e.code === 'EAGAIN') || attempt >= TX_RETRIES) throw e;
    }
  }
}

async function rmIfThere(xs: XsClient, path: string, tx = 0): Promise<void> {
  try {
    await xs.rm(path, tx);
  } catch (e) {
    if (!(e instanceof XsError && e.code === 'ENOENT')) throw e;
  }
}

/** Write every node of a new domain (one transaction). A BuildError ('xenstore') on failure. */
export async function writeDomainNodes(xs: XsClient, n: DomainNodes): Promise<void> {
  const dom = domainPath(n.domid);
  const vm = vmPath(n.uuid);
  const ro = ['n0', `r${n.domid}`];
  const rw = [`n${n.domid}`];
  try {
    await inTransaction(xs, async (tx) => {
      const node = async (path: string, value: string, perms: readonly string[]): Promise<void> => {
        await xs.write(path, value, tx);
        await xs.setPerms(path, perms, tx);
      };
      await rmIfThere(xs, dom, tx);
      await rmIfThere(xs, vm, tx);
      await rmIfThere(xs, libxlPath(n.domid), tx);
      await node(dom, '', ro);
      await node(vm, '', ro);
      await node(libxlPath(n.domid), '', ['n0']);
      await node(`${dom}/vm`, vm, ro);
      await node(`${dom}/name`, n.name, ro);
      await node(`${dom}/domid`, String(n.domid), ro);
      for (const dir of ['cpu', 'memory', 'device', 'device/suspend', 'control']) await node(`${dom}/${dir}`, '', ro);
      for (const own of [
        'control/shutdown', 'control/feature-poweroff', 'control/feature-reboot', 'control/feature-suspend', 'control/sysrq',
        'device/suspend/event-channel', 'data', 'drivers', 'feature', 'attr', 'error',
      ]) {
        await node(`${dom}/${own}`, '', rw);
      }
      await node(`${dom}/control/platform-feature-multiprocessor-suspend`, '1', ro);
      await node(`${dom}/control/platform-feature-xs_reset_watches`, '1', ro);
      await node(`${dom}/memory/static-max`, String(n.maxMemKb), ro);
      await node(`${dom}/memory/target`, String(n.targetKb), ro);
      await node(`${dom}/memory/videoram`, '0', ro);
      for (let i = 0; i < n.vcpus; i++) await node(`${dom}/cpu/${i}/availability`, 'online', ro);
      await node(`${dom}/store`, '', ro);
      await node(`${dom}/store/port`, String(n.storePort), ro);
      await node(`${dom}/store/ring-ref`, String(n.storeMfn), ro);
      await node(`${dom}/console`, '', rw);
      await node(`${dom}/console/port`, String(n.consolePort), ro);
      await node(`${dom}/console/ring-ref`, String(n.consoleMfn), ro);
      await node(`${dom}/console/type`, 'xenconsoled', ro);
      await node(`${dom}/console/output`, n.consoleOutput, ro);
      await node(`${dom}/console/limit`, String(CONSOLE_LIMIT), ro);
      await node(`${vm}/uuid`, n.uuid, ro);
      await node(`${vm}/name`, n.name, ro);
      await node(`${vm}/start_time`, String(n.startTime), ro);
      await node(`${libxlPath(n.domid)}/type`, 'pv', ['n0']);
      await node(`${libxlPath(n.domid)}/kernel`, n.kernel, ['n0']);
    });
  } catch (e) {
    throw new BuildError('xenstore', `writing the nodes of domain ${n.domid}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** XS_INTRODUCE: xenstored attaches the store ring; @introduceDomain fires. */
export async function introduceDomain(xs: XsClient, domid: number, storeMfn: number, storePort: number): Promise<void> {
  try {
    await xs.introduce(domid, storeMfn, storePort);
  } catch (e) {
    throw new BuildError('introduce', `XS_INTRODUCE of domain ${domid}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Remove what writeDomainNodes wrote (libxl's xs_rm of the domain's paths at destroy). */
export async function removeDomainNodes(xs: XsClient, domid: number, uuid: string): Promise<void> {
  await rmIfThere(xs, domainPath(domid));
  await rmIfThere(xs, vmPath(uuid));
  await rmIfThere(xs, libxlPath(domid));
}

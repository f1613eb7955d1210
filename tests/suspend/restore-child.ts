/*
 * Run by restore.test.ts in a fresh Node process: restore the image file
 * named in argv[2] into a new machine host (kernel linked afresh here),
 * let the guest resume, ping it through xenstore, and print what happened
 * as JSON. Nothing of the saving process survives here but the file.
 */
import { readFileSync } from 'node:fs';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { suspendImage } from './workloads.js';
import { MiB, consoleText, node, restoreInto } from './fixture.js';

const file = process.argv[2];
if (file === undefined) throw new Error('usage: restore-child IMAGE');
const image = suspendImage();
const h = await MachineHost.create({ machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: 4242, tscKhz: 2_700_000 }, images: [image] });
let result: Record<string, unknown> = {};
try {
  const domid = await restoreInto(h, new Uint8Array(readFileSync(file)), 'child', image);
  const dom = domainPath(domid);
  const run = async (cond: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 100; i++) {
      if (h.m.runUntil(cond, 100_000) === 'done' || cond()) return true;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return cond();
  };
  const resumed = await run(() => /^susp: resumed kind=2 /m.test(consoleText(h, domid)));
  await h.xs.write(`${dom}/data/ping`, 'from-a-new-process');
  const pong = await run(() => node(h, `${dom}/data/pong`) === 'from-a-new-process');
  result = { resumed, pong, console: consoleText(h, domid), bugs: h.m.log.bugs.length };
} finally {
  await h.close();
}
process.stdout.write(JSON.stringify(result));

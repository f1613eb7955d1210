/*
 * The netbsd image through the real toolstack: MachineHost's `xl create`
 * (the libxc-like builder, xenstored, xenconsoled, the ctrl_if domain
 * controller) instead of the in-test builder. The console transcript is
 * xenconsoled's log, where console_io output and the ring meet.
 */
import test from 'ava';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { BOOT_COMPLETE } from '../../arch/xen/x86/machdep.js';

const MiB = 2 ** 20;

function cfg(name: string, memory: number): DomainConfig {
  return {
    name, kernel: 'netbsd', memory, vcpus: 1, extra: '-v', disks: [], vifs: [],
    onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'preserve',
  };
}

test('xl create boots the netbsd image: the console log shows the whole boot', async (t) => {
  const h = await MachineHost.create({ machine: { memoryBytes: 128 * MiB, clock: 'simulated', scrambleSeed: 3 }, images: [netbsdImage] });
  t.teardown(() => h.close());
  const b = await h.create(cfg('nb1', 32));
  const log = (): string => Buffer.from(h.consoled.tail(b.domid as never)).toString('latin1');
  for (let i = 0; i < 100 && !log().includes(BOOT_COMPLETE); i++) {
    h.m.runUntil(() => log().includes(BOOT_COMPLETE), 20_000);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const out = log();
  t.true(out.includes(BOOT_COMPLETE), out);
  // In the guest's order: the early lines go through console_io, the later
  // ones through the ring, all within one entry; the log must interleave them
  // as the guest printed them.
  let at = -1;
  for (const w of ['NetBSD/xen', 'total memory = 32 MB', 'mainbus0 (root)', 'hypervisor0 at mainbus0', 'xencons0 at hypervisor0: Xen Virtual Console Driver', 'xen_clock:', BOOT_COMPLETE]) {
    const i = out.indexOf(w);
    t.true(i >= 0, `log has "${w}"`);
    t.true(i > at, `"${w}" comes after the line before it, as the guest printed it:\n${out}`);
    at = i;
  }
  t.true(out.includes(`command line: -v ctrl_if=${b.layout.ctrlIfPfn},${b.ctrlIfPort}`), 'the kernel read the ctrl_if page and port off its command line');
  t.is(h.m.domain(b.domid)!.crash, null);
  t.deepEqual(h.m.log.bugs, []);
});

/*
 * End to end: the real netbsd image booted by `xl create` (MachineHost)
 * with a disk and a vif; its xbd and xennet drivers do the handshake with
 * dom0's backends over the real xenstored, grant tables and event
 * channels, and dom0 pings the guest at the address the toolstack gave it.
 */
import test from 'ava';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { BOOT_COMPLETE } from '../../arch/xen/x86/machdep.js';
import { config } from './builder-fixture.js';
import { disk, diskImage, vif } from './backend-fixture.js';

const MiB = 2 ** 20;

test('netbsd with a disk and a vif: xbd0 and xennet0 reach Connected, and dom0 pings the guest', async (t) => {
  const h = await MachineHost.create({ machine: { memoryBytes: 128 * MiB, clock: 'simulated', scrambleSeed: 3 }, images: [netbsdImage] });
  t.teardown(() => h.close());
  const b = await h.create(config('nb', { kernel: 'netbsd', memory: 32, extra: '-v', disks: [disk(diskImage(t, 2048))], vifs: [vif('00:16:3e:00:00:31', '10.0.0.31')] }));
  const log = (): string => Buffer.from(h.consoled.tail(b.domid as never)).toString('latin1');
  const states = (): string[] => h.backends.driver.status().map((d) => `${d.kind} ${d.state}`);
  const node = (path: string): string | undefined => {
    const n = lookup(h.xenstored.state.root, path);
    return n === undefined ? undefined : latin1(n.value);
  };
  const fe = `/local/domain/${b.domid}/device`;
  const both = (): boolean => states().join() === 'vbd Connected,vif Connected' &&
    node(`${fe}/vbd/51712/state`) === '4' && node(`${fe}/vif/0/state`) === '4';
  const run = async (cond: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 300 && !cond(); i++) {
      h.m.runUntil(cond, 20_000);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (!cond()) t.fail(`never saw ${what}; backends: ${states().join(', ')}; console:\n${log()}`);
  };
  await run(() => log().includes(BOOT_COMPLETE) && both(), 'both devices Connected');
  await h.backends.driver.settled();
  t.is(await h.xs.read(`${fe}/vbd/51712/state`), '4', 'xbd0 says Connected');
  t.is(await h.xs.read(`${fe}/vif/0/state`), '4', 'xennet0 says Connected');
  t.is(await h.xs.read(`/local/domain/0/backend/vbd/${b.domid}/51712/state`), '4');
  t.is(await h.xs.read(`/local/domain/0/backend/vif/${b.domid}/0/state`), '4');
  t.regex(log(), /xbd0 at xenbus0 id 51712: Xen Virtual Block Device Interface/);
  t.regex(log(), /xennet0: address 10\.0\.0\.31\/24/, 'the guest took its address from the backend\'s ip node');

  let answer: Awaited<ReturnType<MachineHost['ping']>> | undefined;
  void h.ping(b.domid).then((r) => {
    answer = r;
  });
  await run(() => answer !== undefined, 'the answer to the ping');
  t.like(answer, { ip: '10.0.0.31', result: { ok: true, seq: 1 } });
  t.is(h.m.domain(b.domid)?.crash, null);
  t.deepEqual(h.m.log.bugs, []);
});

/*
 * CMSG_SHUTDOWN over ctrl_if, from the toolstack (MachineHost.shutdown is
 * what `xl shutdown --ctrl-if` runs) and from the domain controller
 * directly; and ctrl_if across a suspend that the toolstack cancels
 * (`xl save -c`): the same domain, the same port.
 */
import test from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { fastResume } from '../../hypervisor/tools/save/index.js';
import { host, boot, config, consoleText, drive } from './fixture.js';

test('xl shutdown --ctrl-if: the guest answers CMSG_SHUTDOWN_POWEROFF and powers off', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-off', ''));
  let done = false;
  const p = h.shutdown(b.domid, 'ctrl_if', true).then(() => {
    done = true;
  });
  await drive(t, h, () => done, 'the shutdown to complete');
  await p;
  const info = h.m.xc.getDomainInfo(b.domid);
  t.is(info?.shutdownReason, SHUTDOWN_poweroff);
  t.regex(consoleText(h, b.domid), /ctrl_if0: poweroff requested\n/);
  t.deepEqual(h.m.log.bugs, []);
});

test('xl shutdown -w --ctrl-if with on_poweroff = destroy: the domain is gone', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-gone', '', { onPoweroff: 'destroy' }));
  let done = false;
  const p = h.shutdown(b.domid, 'ctrl_if', true).then(() => {
    done = true;
  });
  await drive(t, h, () => done, 'the domain destroyed');
  await p;
  t.is(h.m.domain(b.domid), undefined);
});

test('CMSG_SHUTDOWN_REBOOT: answered, then SHUTDOWN_reboot', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-reboot', ''));
  const r = await (async () => {
    let out: Awaited<ReturnType<typeof h.controller.sendShutdown>> | undefined;
    void h.controller.sendShutdown(toDomId(b.domid), 'reboot').then((x) => {
      out = x;
    });
    await drive(t, h, () => out !== undefined && h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the answer and the shutdown');
    return out;
  })();
  t.true(r?.ok);
  t.is(h.m.xc.getDomainInfo(b.domid)?.shutdownReason, SHUTDOWN_reboot);
  t.regex(consoleText(h, b.domid), /ctrl_if0: reboot requested\n/);
});

test('CMSG_SHUTDOWN_SUSPEND: answered, the domain suspends; after a cancelled suspend ctrl_if serves again on the same port', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-suspend', 'workload=clock'));
  const d = toDomId(b.domid);
  const before = h.controller.state(d);
  let answered = false;
  void h.controller.sendShutdown(d, 'suspend').then((r) => {
    answered = r.ok;
  });
  await drive(t, h, () => answered && h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the answer and the suspend');
  t.is(h.m.xc.getDomainInfo(b.domid)?.shutdownReason, SHUTDOWN_suspend);
  t.regex(consoleText(h, b.domid), /ctrl_if0: suspend requested\n/);

  fastResume(h.m, b.domid);
  h.domainResumed(b.domid);
  await drive(t, h, () => consoleText(h, b.domid).includes('resumed in the same domain'), 'the resume');
  let again = false;
  void h.controller.sendShutdown(d, 'sysrq', 'r').then((r) => {
    again = r.ok;
  });
  await drive(t, h, () => again, 'an answer after the resume');
  t.regex(consoleText(h, b.domid), /ctrl_if0: sysrq r\n/);
  const after = h.controller.state(d);
  t.is(after?.state === 'connected' ? after.port : -1, before?.state === 'connected' ? before.port : -2, 'the same port');
  t.false(consoleText(h, b.domid).includes('ctrl_if disabled'));
  t.deepEqual(h.m.log.bugs, []);
});

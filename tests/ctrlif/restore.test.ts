/*
 * ctrl_if across a real save and restore on one machine: the guest is
 * asked to suspend through ctrl_if itself, saved (hypervisor/tools/save)
 * and restored into a new domain; the toolstack's part is in
 * restore-fixture.ts.
 */
import test from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { host, boot, config, consoleText, drive, node } from './fixture.js';
import { ctrlIfSaveRestore } from './restore-fixture.js';

test('save after a ctrl_if suspend, restore: ctrl_if resumes on the port the command line names now; dom0 is answered again', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-save', 'workload=clock'));
  const r = await ctrlIfSaveRestore(t, h, b, true);
  t.not(r.ctrlIfPort, b.ctrlIfPort, 'a port the guest has not seen');
  const n = r.domid;
  await drive(t, h, () => consoleText(h, n).includes('ctrl_if0: resumed on event channel'), 'ctrl_if back');
  t.regex(consoleText(h, n), new RegExp(`ctrl_if0: resumed on event channel ${r.ctrlIfPort}\\n`));
  let again = false;
  void h.controller.sendShutdown(toDomId(n), 'sysrq', 'k').then((x) => {
    again = x.ok;
  });
  await drive(t, h, () => again, 'an answer from the restored guest');
  t.regex(consoleText(h, n), /ctrl_if0: sysrq k\n/);
  t.false(consoleText(h, n).includes('ctrl_if disabled'));
  // The clock workload carried on in the new domain, publishing under its new home.
  await drive(t, h, () => Number(node(h, `/local/domain/${n}/data/workload/clock/ticks`) ?? 0) > 100, 'the clock workload after the restore');
  t.is(node(h, `/local/domain/${n}/data/workload/clock/backwards`), '0');
  t.deepEqual(h.m.log.bugs, []);
});

test('two saves and restores in a row: ctrl_if follows each new port', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-twice', ''));
  const r1 = await ctrlIfSaveRestore(t, h, b, false);
  await drive(t, h, () => consoleText(h, r1.domid).includes('ctrl_if0: resumed on event channel'), 'the first resume');
  const rec = { ...b, domid: r1.domid };
  const r2 = await ctrlIfSaveRestore(t, h, rec, true);
  await drive(t, h, () => consoleText(h, r2.domid).includes('ctrl_if0: resumed on event channel'), 'the second resume');
  t.regex(consoleText(h, r2.domid), new RegExp(`ctrl_if0: resumed on event channel ${r2.ctrlIfPort}\\n`));
  let ok = false;
  void h.controller.sendShutdown(toDomId(r2.domid), 'sysrq', 'q').then((x) => {
    ok = x.ok;
  });
  await drive(t, h, () => ok, 'an answer after two restores');
});

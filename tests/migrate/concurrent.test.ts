/*
 * One domain, one way out at a time: while `xl save` has a domain (asking
 * it to suspend, writing its image), a second save or a migration of it is
 * refused at once with one line, and the first one finishes untouched;
 * once it is over, the domain can be saved again. (Two would fight over the
 * guest's suspend and the log-dirty mode.) In-process, simulated clock.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { migrateDomain } from '../../hypervisor/tools/machine/migrate.js';
import { ToolstackError } from '../../hypervisor/tools/machine/host.js';
import { tempDir, e2eHost, guestConfig, boot } from '../e2e/fixture.js';

test('while a save has the domain, a second save and a migration are refused; the first completes, and the domain can be saved again', async (t) => {
  const dir = tempDir(t, 'xenport-concurrent-');
  const h = await e2eHost(t);
  const { domid } = await boot(t, h, guestConfig({ name: 'busy', extra: 'workload=clock', memory: 32 }));

  const first = h.save(domid, join(dir, 'first.img'), { checkpoint: true });
  const second = await t.throwsAsync(h.save(domid, join(dir, 'second.img')), { instanceOf: ToolstackError });
  t.is(second?.message, `domain busy (${domid}) is in the middle of a save; try again when it is over`);
  const migration = await t.throwsAsync(migrateDomain(h, domid, { host: '127.0.0.1', port: 9 }), { instanceOf: ToolstackError });
  t.is(migration?.message, `domain busy (${domid}) is in the middle of a save; try again when it is over`);

  const done = await first;
  t.is(done.outcome, 'resumed', 'the first save went on untouched');
  t.true(existsSync(join(dir, 'first.img')));
  t.false(existsSync(join(dir, 'second.img')), 'the refused save wrote nothing');

  // At once: the guest may still be resuming from the first save's -c;
  // it carries out a request that lands then once the resume is over.
  const again = await h.save(domid, join(dir, 'again.img'));
  t.is(again.outcome, 'destroyed', 'the claim ended with the first save');
});

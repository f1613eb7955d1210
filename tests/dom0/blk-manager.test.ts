import test from 'ava';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { BLKIF_OP_READ, BLKIF_OP_WRITE } from '../../hypervisor/public/io/blkif.js';
import { Blkback } from '../../hypervisor/dom0/blkback/blkback.js';
import { LoopbackHost } from '../../hypervisor/dom0/blkback/loopback.js';
import { domid } from '../../hypervisor/public/types.js';
import { FRONT, XVDA, exchange, makeImage, pages, rig, tempDir } from './blk-fixture.js';

test('create reports a missing image as a disk error naming the path', (t) => {
  const bb = new Blkback({ host: new LoopbackHost() });
  const p = path.join(tempDir(t), 'gone.img');
  const r = bb.create({ frontendDomid: FRONT, devid: XVDA, target: `file:${p}`, readOnly: false });
  t.false(r.ok);
  if (!r.ok) {
    t.is(r.error.kind, 'disk');
    t.is(r.error.message, `disk image ${p} does not exist`);
  }
  t.deepEqual(bb.list(), []);
});

test('one vbd per (domain, devid)', (t) => {
  const dir = tempDir(t);
  const bb = new Blkback({ host: new LoopbackHost() });
  t.true(bb.create({ frontendDomid: FRONT, devid: XVDA, target: makeImage(dir, 4, 'a.img'), readOnly: false }).ok);
  const again = bb.create({ frontendDomid: FRONT, devid: XVDA, target: makeImage(dir, 4, 'b.img'), readOnly: false });
  t.false(again.ok);
  if (!again.ok) t.is(again.error.kind, 'exists');
});

test('an image has one writer at a time; readers may share it', (t) => {
  const dir = tempDir(t);
  const img = makeImage(dir, 4);
  const link = path.join(dir, 'alias.img');
  fs.symlinkSync(img, link);
  const bb = new Blkback({ host: new LoopbackHost() });
  t.true(bb.create({ frontendDomid: domid(1), devid: XVDA, target: img, readOnly: true }).ok);
  t.true(bb.create({ frontendDomid: domid(2), devid: XVDA, target: img, readOnly: true }).ok, 'two readers');
  const w = bb.create({ frontendDomid: domid(3), devid: XVDA, target: `file:${link}`, readOnly: false });
  t.false(w.ok, 'a writer while readers hold it, even under another name');
  if (!w.ok) {
    t.is(w.error.kind, 'in-use');
    t.regex(w.error.message, /already in use by vbd d1\/51712 \(read-only\)/);
  }
  bb.destroyDomain(domid(1));
  bb.destroyDomain(domid(2));
  t.true(bb.create({ frontendDomid: domid(3), devid: XVDA, target: img, readOnly: false }).ok, 'alone, it may write');
  const r = bb.create({ frontendDomid: domid(4), devid: XVDA, target: img, readOnly: true });
  t.false(r.ok, 'no reader while it is written');
});

test('destroyDomain closes every vbd of that domain only, and unmaps their rings', (t) => {
  const a = rig(t, { domid: 5 });
  const b = rig(t, { share: a, domid: 5, devid: XVDA + 16, port: 6 });
  const c = rig(t, { share: a, domid: 6 });
  t.is(a.host.mappedRings, 3);
  t.is(a.bb.destroyDomain(domid(5)), 2);
  t.is(a.vbd.state, 'closed');
  t.is(b.vbd.state, 'closed');
  t.true(a.vbd.disk.isClosed);
  t.is(a.host.mappedRings, 1);
  t.deepEqual(a.bb.list(), [c.vbd]);
  const { segments } = pages(c.front, 1);
  t.is(exchange(c, [{ operation: BLKIF_OP_READ, id: 1n, sector: 0, segments }])[0]?.status, 0, 'd6 still served');
  t.false(a.bb.destroy(domid(5), XVDA), 'already gone');
});

test('info lists each vbd with its state and counters', (t) => {
  const r = rig(t, { sectors: 32 });
  const w = pages(r.front, 2);
  exchange(r, [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 0, segments: w.segments },
    { operation: BLKIF_OP_READ, id: 2n, sector: 0, segments: w.segments.slice(0, 1) },
    { operation: 77, id: 3n },
  ]);
  const [row] = r.bb.info();
  t.like(row, {
    frontendDomid: FRONT, devid: XVDA, path: r.image, readOnly: false, sectors: 32, state: 'connected', error: undefined,
    stats: { requests: 3, reads: 1, writes: 1, flushes: 0, sectorsRead: 8, sectorsWritten: 16, errors: 1, connects: 1 },
  });
});

test('a kick asks the machine for a poll; hasWork tells it whether one is due', (t) => {
  const r = rig(t, { connect: false });
  t.false(r.bb.hasWork());
  t.true(r.vbd.connect(r.front.connectParams()).ok);
  t.is(r.schedules, 1, 'connect looks at the ring once');
  t.true(r.bb.hasWork());
  t.is(r.bb.poll(), 0);
  t.false(r.bb.hasWork());
  const { segments } = pages(r.front, 1);
  r.front.queue({ operation: BLKIF_OP_READ, id: 1n, sector: 0, segments });
  t.true(r.front.push(), 'the backend asked to be notified of the next request');
  t.is(r.schedules, 2);
  t.is(r.bb.poll(), 1);
});

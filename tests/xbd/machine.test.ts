/*
 * xbd against the real blkback on a real machine (see machine-fixture.ts):
 * the attach line, data on the host file after a flush, a read-only disk,
 * a hostile backend, and the replay hazard across a suspend/resume of the
 * driver with requests answered but not yet consumed.
 */
import test, { type ExecutionContext } from 'ava';
import { blkif_sring, blkif_response, BLKIF_OP_READ } from '../../hypervisor/public/io/blkif.js';
import { EIO, ENXIO } from '../../sys/sys/errno.js';
import { EROFS } from '../../dev/dksubr.js';
import { SRING_HEADER_SIZE } from '../../hypervisor/public/io/ring.js';
import type { DomId } from '../../hypervisor/public/types.js';
import { DiskWorld, DEVID, firstDiff } from './machine-fixture.js';
import { rwPattern, p0, RW_BLKNO, RW_NBLKS, REPLAY_B, REPLAY_D } from './workloads.js';

test('xbd0 attaches with its size; data written and flushed is in the host file and reads back', async (t) => {
  const w = await DiskWorld.create(t, { workload: 'xbdrw' });
  await w.until('xbdrw: done');
  const con = w.console();
  t.regex(con, new RegExp(`xbd0 at xenbus0 id ${DEVID}: Xen Virtual Block Device Interface`));
  t.regex(con, /xbd0: 1 MB, 512 bytes\/sect x 2048 sectors/);
  t.regex(con, /xbdtest: xbd0 connected, 2048 sectors, flush/);
  t.regex(con, /xbdrw: write 0\n/);
  t.regex(con, /xbdrw: flush 0\n/);
  t.regex(con, /xbdrw: read 0, data matches/);
  t.regex(con, /xbdrw: untouched blocks read 0, as the host wrote them/);
  const file = w.readImage(RW_BLKNO, RW_NBLKS);
  const want = new Uint8Array(RW_NBLKS * 512).map((_, j) => rwPattern(j));
  t.is(firstDiff(file, want), '', 'the written blocks are in the image file');
  t.is(firstDiff(w.readImage(RW_BLKNO + RW_NBLKS, 1), new Uint8Array(512).map((_, j) => p0((RW_BLKNO + RW_NBLKS) * 512 + j))), '', 'the block after is untouched');
  const vbd = w.blkback.get(w.b.domid as DomId, DEVID);
  t.truthy(vbd);
  t.true((vbd?.stats.flushes ?? 0) >= 1, 'the flush reached blkback');
  t.is(vbd?.stats.sectorsWritten, RW_NBLKS);
  t.is(w.node(`/local/domain/${w.domid}/device/vbd/${DEVID}/state`), '4', 'frontend Connected');
  t.is(w.node(`/local/domain/${w.domid}/device/vbd/${DEVID}/protocol`), 'x86_64-abi');
  t.is(w.node(`/local/domain/0/backend/vbd/${w.domid}/${DEVID}/state`), '4', 'backend Connected');
  t.deepEqual(w.h.m.log.bugs, []);
});

test('a read-only disk refuses writes with EROFS; reads and flushes go', async (t) => {
  const w = await DiskWorld.create(t, { workload: 'xbdro', readOnly: true });
  await w.until('xbdro: flush');
  const con = w.console();
  t.regex(con, /xbd0: 1 MB, 512 bytes\/sect x 2048 sectors, read-only/);
  t.regex(con, new RegExp(`xbdro: write ${EROFS}\\n`));
  t.regex(con, /xbdro: read 0, data matches/);
  t.regex(con, /xbdro: flush 0/);
  t.is(w.blkback.get(w.b.domid as DomId, DEVID)?.stats.writes, 0, 'no write reached the backend');
  t.is(firstDiff(w.readImage(0, 1), new Uint8Array(512).map((_, j) => p0(j))), '');
});

/** Hold blkback, let the guest queue its read, then answer it with `forge` and notify. */
async function hostile(t: ExecutionContext, forge: (r: ReturnType<DiskWorld['ring']>) => void): Promise<DiskWorld> {
  const w = await DiskWorld.create(t, { workload: 'xbdhostile' });
  w.hold = true;
  await w.until('xbdhostile: reading');
  const r = w.ring();
  await w.drive(() => r.mem.getUint32(r.base + blkif_sring.offsetOf('req_prod'), true) === 1, 'the read on the ring');
  forge(r);
  r.notify();
  await w.until('xbdhostile: kernel still running');
  return w;
}

test('a response with a garbage id disconnects the device with a console message; the kernel runs on', async (t) => {
  const w = await hostile(t, (r) => {
    const slot = r.base + SRING_HEADER_SIZE;
    const rsp = blkif_response.view(r.mem, slot);
    rsp.set('id', 0x4141_4141n);
    rsp.set('operation', BLKIF_OP_READ);
    rsp.set('status', 0);
    r.mem.setUint32(r.base + blkif_sring.offsetOf('rsp_prod'), 1, true);
  });
  const con = w.console();
  t.regex(con, /xbd0: backend misbehaves \(response id 1094795585 is not a request slot \(0\.\.31\)\); disconnecting/);
  t.regex(con, new RegExp(`xbdhostile: read ${EIO}\\n`));
  t.regex(con, new RegExp(`xbdhostile: again ${ENXIO}\\n`));
  t.regex(con, /xbdhostile: kernel still running, xbd0 dead/);
  await w.drive(() => w.node(`/local/domain/${w.domid}/device/vbd/${DEVID}/state`) === '5', 'frontend Closing');
  t.regex(w.node(`/local/domain/${w.domid}/error/device/vbd/${DEVID}/error`) ?? '', /^5 backend misbehaves/);
  t.false(w.h.m.domain(w.domid)?.dying ?? true, 'the domain is alive');
  t.deepEqual(w.h.m.log.bugs, []);
});

test('rsp_prod jumping past the requests made disconnects the device', async (t) => {
  const w = await hostile(t, (r) => {
    r.mem.setUint32(r.base + blkif_sring.offsetOf('rsp_prod'), 0x8000_0000, true);
  });
  t.regex(w.console(), /xbd0: backend misbehaves \(rsp_prod 2147483648 is not within the 1 outstanding requests after rsp_cons 0\); disconnecting/);
  t.regex(w.console(), new RegExp(`xbdhostile: read ${EIO}\\n`));
  t.deepEqual(w.h.m.log.bugs, []);
});

test('requests answered but not consumed at suspend are replayed after resume; reads equal the original order', async (t) => {
  const w = await DiskWorld.create(t, { workload: 'xbdreplay' });
  await w.until('xbdreplay: A ');
  const con = w.console();
  t.regex(con, /xbdreplay: suspended with 2 request\(s\) in flight/, 'A and D in flight; B waits for A, C behind B');
  t.regex(con, /xbdreplay: 2 answered by the backend, not consumed/);
  t.regex(con, /xbd0: replayed 2 request\(s\) in flight/);
  t.regex(con, /xbdreplay: A reads the old data, C reads what B wrote, errors 0,0,0,0, replayed 2/);
  // A, then B, then C: the original order of the overlapping ones.
  const order = [...con.matchAll(/xbdreplay: buf at block (\d+) done/g)].map((m) => Number(m[1]));
  t.true(order.indexOf(0) < order.indexOf(REPLAY_B.blkno) && order.indexOf(REPLAY_B.blkno) < order.indexOf(8), `A, B, C in order (${order.join(',')})`);
  t.is(firstDiff(w.readImage(REPLAY_B.blkno, REPLAY_B.nblks), new Uint8Array(REPLAY_B.nblks * 512).fill(REPLAY_B.byte)), '');
  t.is(firstDiff(w.readImage(REPLAY_D.blkno, REPLAY_D.nblks), new Uint8Array(REPLAY_D.nblks * 512).fill(REPLAY_D.byte)), '');
  t.is(w.node(`/local/domain/0/backend/vbd/${w.domid}/${DEVID}/state`), '4');
  t.deepEqual(w.h.m.log.bugs, []);
});

test('a cancelled suspend takes the answers already there, without replaying', async (t) => {
  const w = await DiskWorld.create(t, { workload: 'xbdcancel' });
  await w.until('xbdreplay: A ');
  const con = w.console();
  t.regex(con, /xbdreplay: 2 answered by the backend, not consumed/);
  t.notRegex(con, /replayed \d+ request/);
  t.regex(con, /xbdreplay: A reads the old data, C reads what B wrote, errors 0,0,0,0, replayed 0/);
  t.is(firstDiff(w.readImage(REPLAY_B.blkno, REPLAY_B.nblks), new Uint8Array(REPLAY_B.nblks * 512).fill(REPLAY_B.byte)), '');
  t.deepEqual(w.h.m.log.bugs, []);
});

/*
 * The blk workload on a whole guest: the netbsd image booted by the real
 * toolstack (MachineHost) with a raw image file as xvda, served by dom0's
 * blkback. Its counters reach xenstore and grow with no errors; what it
 * wrote is in the host file after its flushes, block by block; a block
 * changed behind its back in the file is found; a read-only disk makes it
 * refuse to start.
 */
import test from 'ava';
import { openSync, writeSync, closeSync } from 'node:fs';
import { blk_block, blk_crc32, blk_verify, BLK_HDRLEN, BLK_MAGIC } from '../../sys/workloads/wl_blk_block.js';
import { crc32 } from 'node:zlib';
import {
  MS, tempDir, diskImage, e2eHost, guestConfig, boot, counters, counter, waitCounter, drive, runFor, wlStatus, consoleText, scanDisk,
} from './fixture.js';

const BLK = ['writes', 'verified', 'errors', 'flushes', 'cycles'] as const;

test('the block format: header fields in place, CRC-32 as zlib computes it, a payload that depends on seq and sector', (t) => {
  const b = blk_block(1, 7, 96, 4096);
  const dv = new DataView(b.buffer);
  t.is(dv.getUint32(0, true), BLK_MAGIC);
  t.is(String.fromCharCode(...b.subarray(0, 4)), 'XPBK');
  t.is(dv.getUint32(4, true), 4096);
  t.is(dv.getBigUint64(8, true), 7n);
  t.is(dv.getBigUint64(16, true), 96n);
  t.is(dv.getUint32(24, true), 1);
  t.is(dv.getUint32(28, true), crc32(b.subarray(BLK_HDRLEN)), 'the header holds zlib\'s CRC-32 of the payload');
  t.is(blk_crc32(b, BLK_HDRLEN, 4096 - BLK_HDRLEN), crc32(b.subarray(BLK_HDRLEN)));
  t.notDeepEqual(blk_block(1, 8, 96, 4096).subarray(BLK_HDRLEN), b.subarray(BLK_HDRLEN), 'another write of the same block differs');
  t.notDeepEqual(blk_block(1, 7, 104, 4096).subarray(BLK_HDRLEN), b.subarray(BLK_HDRLEN), 'the same write elsewhere differs');
});

test('blk_verify says what is wrong with a block: never written, another write, another sector, a changed byte', (t) => {
  const b = blk_block(1, 7, 96, 4096);
  t.is(blk_verify(b, 0, 4096, 1, 7, 96), '');
  t.is(blk_verify(new Uint8Array(4096), 0, 4096, 1, 7, 96), 'all zeroes');
  t.is(blk_verify(b, 0, 4096, 1, 9, 96), 'holds write 7, expected write 9', 'a lost write shows as the older one');
  t.is(blk_verify(b, 0, 4096, 1, 7, 104), 'holds sector 96\'s block', 'a misplaced write');
  t.is(blk_verify(b, 0, 4096, 2, 7, 96), 'seed 1, expected 2');
  const bad = b.slice();
  bad[2000] = bad[2000]! ^ 0x10;
  t.regex(blk_verify(bad, 0, 4096, 1, 7, 96), /^payload checksum [0-9a-f]{8}, header says [0-9a-f]{8}; payload word at byte 2000 is [0-9a-f]{8}, expected [0-9a-f]{8}$/);
  const two = new Uint8Array(8192);
  two.set(b, 4096);
  t.is(blk_verify(two, 4096, 4096, 1, 7, 96), '', 'at an offset in a larger buffer');
});

test('blk,net,mem,clock with a disk and a vif: blk counters appear and grow, no errors; its blocks are in the image file after flushes', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 2);
  const h = await e2eHost(t);
  const b = await boot(t, h, guestConfig({
    name: 'blkg', extra: 'workload=blk,net,mem,clock mem_mb=2 wl_summary=1',
    disks: [`file:${img},xvda,w`], vifs: ['mac=00:16:3e:00:00:02,ip=10.0.0.2,bridge=xenbr0'],
  }));
  const d = b.domid;
  await waitCounter(t, h, d, 'blk', 'verified', 1);
  await waitCounter(t, h, d, 'blk', 'flushes', 1);
  const first = counters(h, d, 'blk', BLK);
  await runFor(h, 2000 * MS);
  const later = counters(h, d, 'blk', BLK);
  t.is(wlStatus(h, d, 'blk'), 'running');
  t.is(later['errors'], 0, consoleText(h, d));
  t.true(later['writes']! > first['writes']!, `writes grow: ${first['writes']} -> ${later['writes']}`);
  t.true(later['verified']! > first['verified']!, `verified grows: ${first['verified']} -> ${later['verified']}`);
  t.true(later['flushes']! > first['flushes']!, `flushes grow: ${first['flushes']} -> ${later['flushes']}`);
  t.true(later['cycles']! >= 1, `2 MiB is 512 blocks: the cycle came round (${later['cycles']})`);
  for (const wl of ['net', 'mem', 'clock']) t.is(wlStatus(h, d, wl), 'running', `${wl} runs too`);
  t.is(counter(h, d, 'mem', 'errors'), 0);
  t.is(counter(h, d, 'clock', 'backwards'), 0);
  const out = consoleText(h, d);
  t.regex(out, /blk: xbd0, 4096 sectors: 512 blocks of 4096 bytes, 4 a request, read back 256 blocks later, flush every 16, seed 1\n/);
  t.regex(out, /workload blk: running, writes \d+, verified \d+, errors 0, flushes \d+, cycles \d+\n/);

  // The host's view of the disk: every block slot the guest wrote holds a good block.
  const scan = scanDisk(img);
  t.deepEqual(scan.bad, [], 'no slot holds a bad block');
  t.is(scan.good, 512, 'the cycle came round: every slot holds a block');
  t.deepEqual([...scan.seeds], [1]);
  t.true(scan.maxSeq >= later['writes']!, `the newest block on disk (write ${scan.maxSeq}) is at least the writes counted (${later['writes']})`);
  t.deepEqual(h.m.log.bugs, []);
});

test('blk: a block changed in the image file behind the guest\'s back is found when it is read back, counted once', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 1);
  const h = await e2eHost(t);
  const b = await boot(t, h, guestConfig({
    name: 'blkbad', extra: 'workload=blk blk_lag=64', disks: [`file:${img},xvda,w`],
  }));
  const d = b.domid;
  // The first write of block 200 (sector 1600) happens at write request 51; it is read back 64 blocks later.
  await waitCounter(t, h, d, 'blk', 'writes', 204);
  const before = scanDisk(img);
  t.deepEqual(before.bad, []);
  const fd = openSync(img, 'r+');
  writeSync(fd, Uint8Array.of(0xff, 0xee), 0, 2, 200 * 4096 + 1000);
  closeSync(fd);
  await waitCounter(t, h, d, 'blk', 'writes', 300);
  await runFor(h, 100 * MS);
  t.is(counter(h, d, 'blk', 'errors'), 1, 'counted once');
  t.regex(consoleText(h, d), /blk: block 200 \(sector 1600\), write \d+: payload checksum [0-9a-f]{8}, header says [0-9a-f]{8}; payload word at byte 1000 is [0-9a-f]{8}, expected [0-9a-f]{8}\n/);
  t.is(wlStatus(h, d, 'blk'), 'running', 'and it carries on');
});

test('blk on a read-only disk refuses to start: status "failed: read-only disk", one console line, the file untouched', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 1);
  const h = await e2eHost(t);
  const b = await boot(t, h, guestConfig({ name: 'blkro', extra: 'workload=blk,clock', disks: [`file:${img},xvda,r`] }));
  await drive(t, h, () => wlStatus(h, b.domid, 'blk')?.startsWith('failed') === true, 'blk status failed');
  t.is(wlStatus(h, b.domid, 'blk'), 'failed: read-only disk');
  t.regex(consoleText(h, b.domid), /workload blk: read-only disk\n/);
  await waitCounter(t, h, b.domid, 'clock', 'ticks', 50);
  t.is(counter(h, b.domid, 'blk', 'writes'), 0);
  t.is(scanDisk(img).zero, 256, 'not a byte written');
});

test('blk without a disk gives up with a clear status once blk_wait runs out', async (t) => {
  const h = await e2eHost(t);
  const b = await boot(t, h, guestConfig({ name: 'blknone', extra: 'workload=blk blk_wait=1' }));
  await drive(t, h, () => wlStatus(h, b.domid, 'blk')?.startsWith('failed') === true, 'blk status failed');
  t.is(wlStatus(h, b.domid, 'blk'), 'failed: no disk xbd0');
});

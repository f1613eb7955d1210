/*
 * `xl migrate` from one machine daemon to `xl migrate-receive` on another,
 * through the shipped program, with a recording TCP relay between them: a
 * netbsd guest with a disk (the image file shared by both machines on this
 * host) running blk, mem and clock leaves machine A while it runs and
 * carries on in machine B (other frame scramble, other TSC frequency). The
 * bytes the sender put on the wire are Xen's own xl format (both checkers
 * accept them) followed by the one handshake line the sender sends after
 * the stream; what the receiver answered is the banner, ready, started.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertValidImage } from '../helpers/verify-image.js';
import { MIGRATE_BANNER, MIGRATE_GO, MIGRATE_READY } from '../../hypervisor/tools/machine/migrate-wire.js';
import {
  WL_BLK, bootGuest, counters, grown, guestConfig, listRows, receive, relay, roundsOf, startMachine, tempDir, until,
} from './fixture.js';

test('xl migrate A -> B while the guest runs: pre-copy rounds, the guest (disk, mem, clock) carries on in B, gone from A, PFNs on other frames, the wire bytes are an xl image', async (t) => {
  const dir = tempDir(t);
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(16 * 2 ** 20));
  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '3', '--tsc-khz', '2400000']);
  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '17', '--tsc-khz', '3100000']);
  const { domid, first } = await bootGuest(t, a, guestConfig(dir, 'mig', disk), WL_BLK);
  t.is(first['blk/errors'], 0);
  const p2mBefore = await a.p2m(t, 'mig');
  t.true(p2mBefore.size > 1000, `${p2mBefore.size} P2M entries`);

  const recv = await receive(t, b);
  const wire = await relay(t, recv.port);
  const before = await counters(a, domid, WL_BLK);
  const out = await a.ok(t, ['migrate', 'mig', `127.0.0.1:${wire.port}`]);
  t.log(out.trim());
  const got = await recv.done;
  t.is(got.code, 0, got.err);
  const lines = got.out.trim().split('\n');
  t.is(lines.length, 2, got.out);
  t.is(lines[0], `listening on 127.0.0.1:${recv.port}`);
  const nd = Number(lines[1]);
  t.true(Number.isInteger(nd) && nd > 0, got.out);

  const rounds = roundsOf(out);
  const precopy = rounds.filter((r) => r.phase === 'pre-copy');
  t.true(precopy.length >= 2, `at least two rounds while the guest ran: ${JSON.stringify(rounds)}`);
  t.deepEqual(rounds.map((r) => r.round), rounds.map((_, i) => i), 'rounds numbered 0, 1, ...');
  t.is(rounds.at(-1)?.phase, 'final', 'the last round after the suspend');
  t.true(precopy[0]!.pages > 8000, 'the first pass sends (nearly) every page');
  t.regex(out, new RegExp(`^migrated domain mig to 127\\.0\\.0\\.1:${wire.port} \\(domid ${nd} there\\): ${rounds.length} rounds, .* bytes, downtime \\d+ ms: destroyed here$`, 'm'));

  t.deepEqual((await listRows(t, a)).map((r) => r[0]), ['Domain-0'], 'gone from A (no mig, no mig--migratedaway)');
  const onB = (await listRows(t, b)).find((r) => r[1] === nd);
  t.is(onB?.[0], 'mig', 'named mig on B');
  t.regex(onB?.[2] ?? '', /^[r-][b-]----$/, 'running on B');

  // blk reads each block back a fixed lag after writing it: once verified passes the
  // writes counted before the migration, every block written on A was read back on B.
  const after = await until('blk to verify on B every block written on A', 90_000, async () => {
    const c = await counters(b, nd, WL_BLK);
    return c !== undefined && c['blk/verified']! > before!['blk/writes']! ? c : undefined;
  });
  const later = await grown(b, nd, WL_BLK, after, ['mem/passes', 'clock/ticks', 'blk/writes'], 'the counters to grow on B');
  t.log(`d${domid} on A before ${JSON.stringify(before)}\n  d${nd} on B later ${JSON.stringify(later)}`);
  for (const k of ['blk/errors', 'mem/errors', 'clock/backwards']) t.is(later[k], 0, k);
  t.true(later['clock/ticks']! > before!['clock/ticks']!, 'ticks carried on from A');
  t.true(later['mem/passes']! > before!['mem/passes']!, 'mem passes carried on from A');

  const p2mAfter = await b.p2m(t, 'mig');
  t.is(p2mAfter.size, p2mBefore.size, 'the same pseudo-physical pages');
  let moved = 0;
  for (const [pfn, mfn] of p2mBefore) if (p2mAfter.get(pfn) !== mfn) moved++;
  t.true(moved > p2mBefore.size / 2, `${moved} of ${p2mBefore.size} PFNs on other machine frames`);

  // The wire: the sender's bytes are the xl stream, then permission to go. The
  // go line is the handshake's only sender-side framing; it is cut off here
  // (after checking that it is exactly the last bytes) and the rest must be
  // a complete xl image, every pre-copy round in it.
  await wire.closed;
  const up = wire.up();
  const go = new TextEncoder().encode(MIGRATE_GO);
  t.deepEqual([...up.subarray(up.length - go.length)], [...go], 'the sender\'s last bytes are the go line');
  const image = up.subarray(0, up.length - go.length);
  await t.notThrowsAsync(assertValidImage(image, 'the migration stream'));
  t.is(new TextDecoder().decode(wire.down()), `${MIGRATE_BANNER}${MIGRATE_READY}started ${nd}\n`, 'the receiver said: banner, ready, started');
});

import { spawnSync } from 'node:child_process';
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DiskImage, classifyErrno, imagePath } from '../../hypervisor/dom0/blkback/disk.js';
import { SECTOR, fileSectors, imageByte, makeImage, tempDir } from './blk-fixture.js';

test('an image opens with its size in whole sectors; a trailing partial sector is not part of the disk', (t) => {
  const dir = tempDir(t);
  const p = path.join(dir, 'odd.img');
  fs.writeFileSync(p, new Uint8Array(10 * SECTOR + 100));
  const d = DiskImage.open(p, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  t.is(d.value.sectors, 10, '5220 bytes hold 10 whole sectors');
  t.false(d.value.readOnly);
  t.false(d.value.read(10, 1).ok, 'the partial 11th sector is outside the disk');
  d.value.close();
});

test('file:PATH and PATH name the same image; other kinds are refused', (t) => {
  t.deepEqual(imagePath('file:/a/b.img'), { ok: true, value: '/a/b.img' });
  t.deepEqual(imagePath('/a/b.img'), { ok: true, value: '/a/b.img' });
  t.deepEqual(imagePath('file:phy:x'), { ok: true, value: 'phy:x' }, 'a file named like a kind is reached with file:');
  const phy = imagePath('phy:/dev/sda');
  t.false(phy.ok);
  if (!phy.ok) t.regex(phy.error, /only file: images are served, not phy:/);
  t.false(imagePath('file:').ok, 'file: with no path');
  t.false(imagePath('').ok);
  const dir = tempDir(t);
  const img = makeImage(dir, 4);
  const d = DiskImage.open(`file:${img}`, { readOnly: true });
  t.true(d.ok, 'file:PATH opens');
  if (d.ok) d.value.close();
});

test('a missing image is a clear "missing" error naming the path', (t) => {
  const dir = tempDir(t);
  const p = path.join(dir, 'nope.img');
  const d = DiskImage.open(p, { readOnly: false });
  t.false(d.ok);
  if (!d.ok) {
    t.is(d.error.kind, 'missing');
    t.is(d.error.code, 'ENOENT');
    t.is(d.error.message, `disk image ${p} does not exist`);
  }
});

test('a directory or a device is refused as not a regular file', (t) => {
  const dir = tempDir(t);
  for (const [p, what] of [[dir, 'a directory'], ['/dev/null', 'a character device']] as const) {
    for (const readOnly of [true, false]) {
      const d = DiskImage.open(p, { readOnly });
      t.false(d.ok, `${p} must be refused`);
      if (!d.ok) {
        t.is(d.error.kind, 'not-regular', `${p}: kind`);
        t.true(d.error.message.includes(what), `${p}: message says ${what}: ${d.error.message}`);
      }
    }
  }
});

test('an image smaller than one sector is refused', (t) => {
  const dir = tempDir(t);
  const p = path.join(dir, 'tiny.img');
  fs.writeFileSync(p, new Uint8Array(511));
  const d = DiskImage.open(p, { readOnly: true });
  t.false(d.ok);
  if (!d.ok) t.is(d.error.kind, 'too-small');
});

// Root is never refused by file permissions, so when the suite runs as root
// the open is made by a child process running as `nobody` (setpriv, from
// util-linux): the same code path, for real, rather than a skipped test.
const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const diskModule = new URL('../../hypervisor/dom0/blkback/disk.js', import.meta.url).href;

function openAs(p: string, readOnly: boolean): { ok: boolean; kind?: string; message?: string } {
  if (!asRoot) {
    const d = DiskImage.open(p, { readOnly });
    if (d.ok) {
      d.value.close();
      return { ok: true };
    }
    return { ok: false, kind: d.error.kind, message: d.error.message };
  }
  const script = `const { DiskImage } = await import(${JSON.stringify(diskModule)});
const d = DiskImage.open(${JSON.stringify(p)}, { readOnly: ${readOnly} });
if (d.ok) d.value.close();
console.log(JSON.stringify(d.ok ? { ok: true } : { ok: false, kind: d.error.kind, message: d.error.message }));`;
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`running the open as nobody failed (setpriv needed when tests run as root): ${r.error?.message ?? r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; kind?: string; message?: string };
}

test('an image without permission is refused as permission denied', (t) => {
  const dir = tempDir(t);
  fs.chmodSync(dir, 0o755);
  const p = makeImage(dir, 4);
  fs.chmodSync(p, 0o444);
  const rw = openAs(p, false);
  t.false(rw.ok, 'read-write open of a 0444 file');
  t.is(rw.kind, 'permission');
  t.regex(rw.message ?? '', /permission denied/);
  const ro = openAs(p, true);
  t.true(ro.ok, 'read-only open of the same file works');
});

test('errno names map to the documented kinds (also covers permission when tests run as root)', (t) => {
  t.is(classifyErrno('ENOENT'), 'missing');
  t.is(classifyErrno('ENOTDIR'), 'missing');
  t.is(classifyErrno('EACCES'), 'permission');
  t.is(classifyErrno('EPERM'), 'permission');
  t.is(classifyErrno('EROFS'), 'permission');
  t.is(classifyErrno('EISDIR'), 'not-regular');
  t.is(classifyErrno('EIO'), 'io');
  t.is(classifyErrno(undefined), 'io');
});

test('positional reads and writes hit exactly the sectors asked for', (t) => {
  const dir = tempDir(t);
  const p = makeImage(dir, 16);
  const d = DiskImage.open(p, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  const disk = d.value;
  const r = disk.read(3, 2);
  if (!r.ok) return t.fail(r.error.message);
  t.is(r.value.length, 2 * SECTOR);
  t.is(r.value[0], imageByte(3, 0));
  t.is(r.value[SECTOR + 9], imageByte(4, 9));
  const data = new Uint8Array(2 * SECTOR).fill(0xab);
  t.true(disk.write(5, data).ok);
  t.deepEqual(fileSectors(p, 5, 2), data, 'the file holds the write');
  t.is(fileSectors(p, 4, 1)[SECTOR - 1], imageByte(4, SECTOR - 1), 'the sector before is untouched');
  t.is(fileSectors(p, 7, 1)[0], imageByte(7, 0), 'the sector after is untouched');
  disk.close();
});

test('a write reaching past the end is refused whole: no partial write', (t) => {
  const dir = tempDir(t);
  const p = makeImage(dir, 8);
  const d = DiskImage.open(p, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  const w = d.value.write(7, new Uint8Array(2 * SECTOR).fill(0xee));
  t.false(w.ok);
  if (!w.ok) t.is(w.error.kind, 'out-of-range');
  t.is(fileSectors(p, 7, 1)[0], imageByte(7, 0), 'the last sector was not written');
  t.is(fs.statSync(p).size, 8 * SECTOR, 'the file did not grow');
  t.false(d.value.read(8, 1).ok, 'reading past the end is refused too');
  t.false(d.value.read(-1, 1).ok, 'negative sector');
  d.value.close();
});

test('a read-only image refuses writes; flush is fine', (t) => {
  const dir = tempDir(t);
  const p = makeImage(dir, 8);
  const d = DiskImage.open(p, { readOnly: true });
  if (!d.ok) return t.fail(d.error.message);
  const w = d.value.write(0, new Uint8Array(SECTOR));
  t.false(w.ok);
  if (!w.ok) t.is(w.error.kind, 'read-only');
  t.true(d.value.flush().ok);
  d.value.close();
});

test('flush makes earlier writes durable and resets the unsynced count', (t) => {
  const dir = tempDir(t);
  const p = makeImage(dir, 8);
  const d = DiskImage.open(p, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  d.value.write(1, new Uint8Array(SECTOR).fill(1));
  d.value.write(2, new Uint8Array(SECTOR).fill(2));
  t.is(d.value.unsyncedWrites, 2);
  t.true(d.value.flush().ok);
  t.is(d.value.unsyncedWrites, 0);
  t.deepEqual(fileSectors(p, 1, 2), new Uint8Array(2 * SECTOR).fill(1, 0, SECTOR).fill(2, SECTOR));
  d.value.close();
});

test('an image truncated under the backend gives a read error, not a crash or zeros', (t) => {
  const dir = tempDir(t);
  const p = makeImage(dir, 8);
  const d = DiskImage.open(p, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  fs.truncateSync(p, 4 * SECTOR);
  const r = d.value.read(6, 1);
  t.false(r.ok);
  if (!r.ok) {
    t.is(r.error.kind, 'io');
    t.regex(r.error.message, /shrank/);
  }
  t.true(d.value.read(0, 4).ok, 'what is left still reads');
  d.value.close();
});

test('a closed image answers "closed" and close is idempotent', (t) => {
  const dir = tempDir(t);
  const d = DiskImage.open(makeImage(dir, 2), { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  d.value.close();
  d.value.close();
  t.true(d.value.isClosed);
  for (const r of [d.value.read(0, 1), d.value.write(0, new Uint8Array(SECTOR)), d.value.flush()]) {
    t.false(r.ok);
    if (!r.ok) t.is(r.error.kind, 'closed');
  }
});

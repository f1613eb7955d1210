/*
 * Xen's own verifier accepts our images. verify-stream-v2 comes with Debian's
 * xen-utils-4.17 (installed by tools/deb-deps.sh); when it is missing these
 * tests fail rather than skip, because without them nothing outside this
 * repository vouches for the format.
 *
 * What it checks (xen/migration/{verify,libxl,libxc}.py): the xl magic and
 * STREAMV2 flag; the libxl header ident, version and options; every record's
 * type is known, its padding is zero and its body matches its type (END and
 * LIBXC_CONTEXT empty); the libxc image header marker, id, version 2..3,
 * options and reserved fields; the domain header type, page_shift 12 and
 * reserved field; PAGE_DATA count, reserved bits, page types and exact
 * length; X86_PV_INFO width/levels/reserved; P2M_FRAMES length; vCPU record
 * headers; SHARED_INFO 4096 bytes; TSC_INFO length and reserved field;
 * STATIC_DATA_END only in v3; and that both streams end with END.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StreamFormat } from '../../hypervisor/tools/stream/index.js';
import { fakeGuest, imageBytes, type FakeGuestOptions } from './fake-guest.js';

const TOOL = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
const PYTHONPATH = process.env['XEN_PYTHONPATH'] ?? '/usr/lib/xen-4.17/lib/python';

const dir = mkdtempSync(path.join(tmpdir(), 'xenport-verify-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function verify(bytes: Uint8Array, name: string, format: StreamFormat = 'xl'): { status: number | null; out: string } {
  const file = path.join(dir, `${name}.img`);
  writeFileSync(file, bytes);
  const r = spawnSync(TOOL, ['-v', '-f', format, '-i', file], {
    env: { ...process.env, PYTHONPATH },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

test('verify-stream-v2 is installed', (t) => {
  t.true(existsSync(TOOL), `${TOOL} is missing: install xen-utils-4.17 (tools/deb-deps.sh) or set XEN_VERIFY_STREAM`);
  t.true(existsSync(path.join(PYTHONPATH, 'xen', 'migration', 'libxc.py')), `Xen's python modules are missing under ${PYTHONPATH}`);
});

const cases: [string, FakeGuestOptions][] = [
  ['a minimal guest', {}],
  ['a guest of 2500 pfns (three PAGE_DATA batches) with 4 vCPUs and their blobs', { maxPfn: 2500, vcpus: 4, blobs: true, seed: 5 }],
];

for (const [what, opts] of cases) {
  test(`verify-stream-v2 -f xl accepts ${what}`, async (t) => {
    const r = verify(await imageBytes(fakeGuest(opts)), what.replace(/\W+/g, '-'));
    t.is(r.status, 0, r.out);
    t.regex(r.out, /Libxc Image Header: Version 3, little endian/);
    t.regex(r.out, /Domain Header: x86 PV from Xen 4\.17/);
    t.regex(r.out, /64bit guest, 4 levels of pagetables/);
    t.regex(r.out, /Libxc Record: End/);
    t.regex(r.out, /Libxl Record: End/);
  });
}

test('verify-stream-v2 -f libxl and -f libxc accept the bare streams', async (t) => {
  for (const format of ['libxl', 'libxc'] as const) {
    const r = verify(await imageBytes(fakeGuest(), format), `bare-${format}`, format);
    t.is(r.status, 0, `${format}: ${r.out}`);
  }
});

test('verify-stream-v2 really checks: it rejects an image with a bad libxc marker', async (t) => {
  const bytes = await imageBytes(fakeGuest());
  // The libxc image header follows the xl header, the 16-byte libxl header and
  // the 8-byte LIBXC_CONTEXT record.
  const libxl = bytes.findIndex((_, i) => i >= 48 && bytes[i] === 0x4c && String.fromCharCode(...bytes.subarray(i, i + 8)) === 'LibxlFmt');
  t.true(libxl > 0);
  bytes[libxl + 24] = 0x7f;
  const r = verify(bytes, 'bad-marker');
  t.is(r.status, 1, r.out);
  t.regex(r.out, /Bad image marker/);
});

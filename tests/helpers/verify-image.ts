/*
 * Every image a test saves goes through both checkers: ours (checkImage:
 * record order, PTEs and CR3 as PFNs below max_pfn, END present) and Xen's
 * own verify-stream-v2 -f xl. A missing tool fails the test.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkImage, type StreamFormat } from '../../hypervisor/tools/stream/index.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const VERIFY_TOOL = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';
const VERIFY_PYTHONPATH = process.env['XEN_PYTHONPATH'] ?? '/usr/lib/xen-4.17/lib/python';

/** Throw, naming `what` and the reason, unless both checkers accept `bytes` (an xl image, or a bare libxl/libxc stream). */
export async function assertValidImage(bytes: Uint8Array, what: string, format: StreamFormat = 'xl'): Promise<void> {
  const r = await checkImage(bytes, { format });
  if (!r.ok) throw new Error(`${what}: our checker refused the image:\n${r.errors.map((e) => e.message).join('\n')}`);
  const dir = mkdtempSync(join(tmpdir(), 'xenport-verify-'));
  try {
    const file = join(dir, 'image');
    writeFileSync(file, bytes);
    if (!existsSync(VERIFY_TOOL)) throw new Error(`${VERIFY_TOOL} is missing: install xen-utils-4.17 or set XEN_VERIFY_STREAM`);
    const v = spawnSync(VERIFY_TOOL, ['-f', format, '-i', file], { env: { ...process.env, PYTHONPATH: VERIFY_PYTHONPATH }, encoding: 'utf8', timeout: 120_000 });
    if (v.status !== 0) throw new Error(`${what}: verify-stream-v2 -f ${format} refused the image (exit ${v.status}):\n${v.stdout}${v.stderr}${v.error ? String(v.error) : ''}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

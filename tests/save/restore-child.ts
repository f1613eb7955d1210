/*
 * Run by save-restore.test.ts in a fresh Node process: restore the image
 * file named in argv[2] into a new machine (allocator seed argv[3], TSC
 * kHz argv[4]), run the guest's loop, print what it saw as JSON. Nothing
 * of the saving process survives here but the file.
 */
import { createReadStream } from 'node:fs';
import { restoreDomain } from '../../hypervisor/tools/save/index.js';
import { V_CHECKED, V_ENTRIES, V_ERRORS, V_RESUMES } from './kernels/memtest.js';
import { machine, readVar, mailboxMfn, startRestored } from './fixture.js';

const [file, seed, khz] = process.argv.slice(2);
if (file === undefined) throw new Error('usage: restore-child IMAGE SEED TSC_KHZ');
const m = machine({ seed: Number(seed ?? 1), tscKhz: Number(khz ?? 2_000_000) });
const r = await restoreDomain(m, createReadStream(file));
startRestored(m, r.domid);
const mbox = mailboxMfn(m, r.domid);
const target = readVar(m, r.domid, V_ENTRIES, mbox) + 100;
m.runUntil(() => readVar(m, r.domid, V_ENTRIES, mbox) >= target, 1_000_000);
process.stdout.write(JSON.stringify({
  errors: readVar(m, r.domid, V_ERRORS, mbox),
  resumes: readVar(m, r.domid, V_RESUMES, mbox),
  checked: readVar(m, r.domid, V_CHECKED, mbox),
}));

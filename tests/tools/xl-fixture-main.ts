/*
 * An xl program for the end-to-end tests: the real xl front end and
 * daemon, booting the test kernels instead of netbsd (launched the same
 * way bin/xl-main.ts is, so `xl machine start` re-runs this file).
 */
import { fileURLToPath } from 'node:url';
import { xlMain } from '../../hypervisor/tools/xl/cli.js';
import { runDaemon } from '../../hypervisor/tools/machine/daemon.js';
import { probeKernel } from './builder-kernel.js';

await xlMain({ images: [probeKernel], program: fileURLToPath(import.meta.url), runDaemon });

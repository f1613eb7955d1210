/*
 * The composition root of `xl`: the only place that puts the toolstack
 * (hypervisor/) and the guest kernel images (arch/, sys/, dev/) in one
 * program. The machine never imports guest code; it is handed the images
 * it may boot here, by name.
 *
 * Built two ways: esbuild bundles it into dist/xl.js (what bin/xl runs),
 * and tsc compiles it to build/bin/xl-main.js. Either way `program` is this
 * file, so `xl machine start` re-runs the same program as the daemon.
 */
import { fileURLToPath } from 'node:url';
import type { KernelImage } from '../hypervisor/public/cpu.js';
import { xlMain } from '../hypervisor/tools/xl/cli.js';
import { runDaemon } from '../hypervisor/tools/machine/daemon.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';

const images: readonly KernelImage[] = [netbsdImage];

await xlMain({ images, program: fileURLToPath(import.meta.url), runDaemon });

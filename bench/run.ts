/*
 * `make bench`: each benchmark is a function in its own module; this only
 * runs them and prints. Numbers are for comparing runs on one machine.
 */
import { benchGuestMemory } from './memory.js';
import { benchHypercalls } from './hypercall.js';
import { benchEventRoundTrips } from './events.js';
import { benchEvtchn } from '../hypervisor/xen/evtchn-bench.js';
import { benchBuilder } from '../hypervisor/tools/builder/bench.js';
import { benchXenstored } from '../hypervisor/tools/xenstored/bench.js';
import { benchBlkback } from '../hypervisor/dom0/blkback/bench.js';
import { benchNetback } from '../hypervisor/dom0/netback/bench.js';
import { benchUdpForward } from '../hypervisor/dom0/net/udp-bench.js';
import { benchGuestUdpEcho } from './udp-guest.js';
import { netbsdImage } from '../arch/xen/conf/netbsd.js';
import { benchBoot } from '../tests/boot/bench.js';

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

console.log('guest memory through the MMU (16 MiB region) vs a plain TypedArray, same bytes:');
for (const l of benchGuestMemory()) {
  console.log(`  ${l.what.padEnd(20)} ${fmt(l.mbPerSec).padStart(8)} MB/s   plain ${fmt(l.baselineMbPerSec).padStart(8)} MB/s   ratio ${l.slowdown.toFixed(1)}x`);
}

const h = benchHypercalls();
console.log('hypercall round trips (xen_version):');
console.log(`  guest kernel -> hypervisor  ${fmt(h.guestCallsPerSec).padStart(12)} /s`);
console.log(`  dom0 (host)  -> hypervisor  ${fmt(h.dom0CallsPerSec).padStart(12)} /s`);

const e = benchEventRoundTrips();
console.log('event channel round trips:');
console.log(`  two guests ping-pong        ${fmt(e.roundTripsPerSec).padStart(12)} /s   (${e.entriesPerRoundTrip.toFixed(1)} vCPU entries each)`);
const micro = benchEvtchn();
console.log(`  evtchn module alone         ${fmt(micro.roundTripsPerSec).padStart(12)} /s   (send + upcall scan, no guests)`);

const boot = benchBoot({ bootMiB: 64 });
console.log('netbsd guest boot (simulated clock):');
console.log(`  ${boot.bootMiB} MiB guest, create -> boot complete  ${boot.bootMs.toFixed(1).padStart(9)} ms   (${boot.bootEntries} vCPU entries)`);
console.log(`  ${boot.guestMiB} MiB guests booted per second   ${boot.guestsPerSec.toFixed(1).padStart(9)}    (${boot.guests} guests)`);
const built = await benchBuilder(netbsdImage, { memoryMiB: 64 });
console.log(`  builder (xl create path), ${built.memoryMiB} MiB, create -> first entry ${built.bootMs.toFixed(1).padStart(7)} ms   ${built.createsPerSecond.toFixed(1)} creates/s`);

console.log('xenstored operations per second, same client loop over each transport:');
for (const r of await benchXenstored()) {
  console.log(`  ${r.transport.padEnd(7)} ${String(r.op).padEnd(12)} ${fmt(r.opsPerSec).padStart(10)} /s`);
}

const blk = benchBlkback();
console.log(`blkback through the ring vs raw host file I/O of the same pattern (queue depth ${blk.queueDepth}):`);
for (const c of blk.cases) {
  console.log(`  ${c.op.padEnd(5)} ${String(c.requestBytes / 1024).padStart(3)} KiB  ring ${fmt(c.ring.mbPerSec).padStart(6)} MB/s ${fmt(c.ring.iops).padStart(8)} IOPS   raw ${fmt(c.raw.mbPerSec).padStart(6)} MB/s ${fmt(c.raw.iops).padStart(8)} IOPS   ring/raw ${c.ratio.toFixed(2)}`);
}

const nb = benchNetback();
console.log('netback (copy mode) through the rings:');
for (const c of nb.cases) {
  console.log(`  ${c.dir.toUpperCase()} ${String(c.frameBytes).padStart(5)} B frames  ${fmt(c.packetsPerSec).padStart(9)} pkt/s  ${fmt(c.mbPerSec).padStart(6)} MB/s`);
}

const gudp = await benchGuestUdpEcho();
console.log(`UDP echo from a host client on 127.0.0.1 through forward=, the bridge, netback and the netbsd guest's echo server: ${fmt(gudp.roundTripsPerSec)} round trips/s (${gudp.roundTrips} sequential, ${gudp.payloadBytes} B payload)`);
const udp = await benchUdpForward();
console.log(`UDP echo from a host client through the 127.0.0.1 forwarder and the bridge to a stand-in echo endpoint (no guest): ${fmt(udp.roundTripsPerSec)} round trips/s (${udp.payloadBytes} B payload)`);

const { benchSaveThroughput, benchRestoreLatency } = await import('./saverestore.js');
const { benchSuspend } = await import('./suspend.js');
const { formatStepsMs, sumMs } = await import('./breakdown.js');
console.log('save/restore (memtest guest) vs raw write/read of the same bytes to/from the same kind of file, same run:');
const tput = await benchSaveThroughput([64, 256, 1024]);
for (const r of tput) {
  console.log(`  ${String(r.guestMiB).padStart(5)} MiB  save ${fmt(r.saveMiBps).padStart(5)} MiB/s  raw write ${fmt(r.rawWriteMiBps).padStart(5)} MiB/s  save/raw ${r.saveRatio.toFixed(2)}   restore ${fmt(r.restoreMiBps).padStart(5)} MiB/s  raw read ${fmt(r.rawReadMiBps).padStart(5)} MiB/s  restore/raw ${r.restoreRatio.toFixed(2)}   (round ${(r.roundMs / 1000).toFixed(1)} s)`);
}
console.log('  where the time went, host ms per step from the machines\' trace (steps total / measured total):');
for (const r of tput) {
  if (r.steps === undefined) continue;
  console.log(`  ${String(r.guestMiB).padStart(5)} MiB  save    ${formatStepsMs(r.steps.save)}   (${sumMs(r.steps.save).toFixed(1)} / ${r.saveMs.toFixed(1)})`);
  console.log(`             restore ${formatStepsMs(r.steps.restore)}   (${sumMs(r.steps.restore).toFixed(1)} / ${r.restoreMs.toFixed(1)})`);
}
const susp = await benchSuspend({ runs: 9 });
console.log(`netbsd suspend handshake, request -> SHUTDOWN_suspend seen by the toolstack (median of ${susp[0]?.runs ?? 0}, cancelled in between):`);
for (const s of susp) {
  console.log(`  ${s.path.padEnd(8)} ${fmt(s.medianSimNs).padStart(12)} ns simulated   ${s.medianWallMs.toFixed(2).padStart(8)} ms host wall`);
}
console.log('  per step from the trace, medians: simulated ns [host ms]:');
for (const s of susp) {
  if (s.medianStepsNs === undefined) continue;
  const first = s.firstHypercall === undefined ? '' : ` (${s.firstHypercall})`;
  const steps = s.medianStepsNs.map((x, i) => `${i === 0 ? `request -> ${x.step}${first}` : `-> ${x.step}`} ${fmt(x.ns)} [${x.ms.toFixed(2)}]`);
  console.log(`  ${s.path.padEnd(8)} ${steps.join('  ')}`);
}
if (susp.every((s) => s.stepsNs?.every((run) => run.slice(1).every((x) => x.ns === 0)) === true)) {
  console.log('  (no simulated time passes after the first hypercall: the rest of the suspend path runs in the same vCPU entry)');
}
const rl = await benchRestoreLatency({ guestMiB: 64 });
console.log(`netbsd restore, ${rl.guestMiB} MiB, workload=mem,clock, restore start -> both workloads counting again (host wall):`);
console.log(`  ${rl.untilRunningMs.toFixed(1).padStart(8)} ms total   (restoreDomain ${rl.restoreDomainMs.toFixed(1)} ms, toolstack steps ${rl.toolstackMs.toFixed(1)} ms, guest ran ${fmt(rl.guestRunNs / 1e3)} us simulated; image ${fmt(rl.imageBytes / 2 ** 20)} MiB, save ${rl.saveMs.toFixed(1)} ms)`);
if (rl.breakdown !== undefined) {
  const b = rl.breakdown;
  console.log('  from the trace, host ms (each group starts where the one before ended):');
  console.log(`    restoreDomain ${sumMs(b.restoreDomain).toFixed(1).padStart(7)}  ${formatStepsMs(b.restoreDomain)}`);
  console.log(`    toolstack     ${sumMs(b.toolstack).toFixed(1).padStart(7)}  ${formatStepsMs(b.toolstack)}`);
  console.log(`    guest resume  ${sumMs(b.guestResume).toFixed(1).padStart(7)}  ${formatStepsMs(b.guestResume)}`);
}

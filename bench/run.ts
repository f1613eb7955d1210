/*
 * `make bench`: each benchmark is a function in its own module; this only
 * runs them and prints. Numbers are for comparing runs on one machine.
 */
import { benchGuestMemory } from './memory.js';
import { benchHypercalls } from './hypercall.js';
import { benchEventRoundTrips } from './events.js';
import { benchEvtchn } from '../hypervisor/xen/evtchn-bench.js';

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

import test from 'ava';
import { benchBoot } from './bench.js';

test('the boot bench times a 64 MiB boot and a run of 16 MiB boots and returns numbers', (t) => {
  const r = benchBoot({ guests: 5 });
  t.is(r.bootMiB, 64);
  t.is(r.guests, 5);
  t.true(Number.isFinite(r.bootMs) && r.bootMs > 0, `boot ${r.bootMs} ms`);
  t.true(r.bootEntries >= 1 && r.bootEntries < 50, `boot took ${r.bootEntries} entries`);
  t.true(Number.isFinite(r.guestsPerSec) && r.guestsPerSec > 0, `${r.guestsPerSec} guests/s`);
  t.log(`64 MiB boot: ${r.bootMs.toFixed(1)} ms; ${r.guestsPerSec} x ${r.guestMiB} MiB guests/s`);
});

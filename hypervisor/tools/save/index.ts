/*
 * Save and restore of PV domains, the toolstack side of `xl save`,
 * `xl save -c`, `xl restore` and `xl p2m` (libxl + libxc's x86 PV
 * save/restore, writing and reading Xen's own image format through
 * ../stream):
 *
 *   waitForSuspend(m, domid, timeoutNs)        after asking the guest to suspend
 *   saveDomain(m, domid, sink, opts)           image out; domain destroyed or resumed
 *   restoreDomain(m, source, opts)             image in; a new, paused domain
 *   p2mOf(m, domid) / formatP2m(report)        the guest's P2M, checked with the M2P
 *   liveSaveDomain(m, domid, sink, opts)       the same while the guest runs: log-dirty rounds
 *   fastResume(m, domid)                       xc_domain_resume(fast): rax = 1
 *   benchSaveRestore(guest, opts)              throughput against raw file I/O
 */
export { saveDomain, fastResume, type SaveOptions, type SaveResult } from './save.js';
export { liveSaveDomain, type LiveRound, type LiveSaveOptions, type LiveSaveResult } from './live.js';
export { remusSaveDomain, type RemusCheckpoint, type RemusOptions, type RemusResult } from './remus.js';
export { restoreDomain, type RestoreOptions, type RestoredDomain, type RestoreSource } from './restore.js';
export { waitForSuspend, domExcSource, type DomExcSource, type WaitMachine, type WaitOptions } from './wait.js';
export { p2mOf, formatP2m, readGuestP2m, type GuestP2m, type P2mEntry, type P2mMismatch, type P2mReport } from './p2m.js';
export {
  SaveError, RestoreError, WaitError,
  type SaveErrorCode, type RestoreErrorCode, type WaitErrorCode,
} from './errors.js';
export type { SaveMachine, RestoreMachine, P2mMachine } from './deps.js';
export { benchSaveRestore, type BenchGuestFactory, type SaveBenchOptions, type SaveBenchRow } from './bench.js';

/*
 * Printing the trace breakdowns of the save/restore and suspend benchmarks
 * (bench/run.ts): one compact line per breakdown, steps in protocol order.
 */
import type { StepMs } from '../hypervisor/tools/save/bench.js';

/** The steps' total. */
export function sumMs(steps: readonly StepMs[]): number {
  return steps.reduce((a, s) => a + s.ms, 0);
}

/** "step 1.2 | step 0.3 | ..." in ms, `digits` after the point. */
export function formatStepsMs(steps: readonly StepMs[], digits = 1): string {
  return steps.map((s) => `${s.step} ${s.ms.toFixed(digits)}`).join(' | ');
}

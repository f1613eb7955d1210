/*
 * The machine daemon's options (`xl machine start|run [--memory SIZE]
 * [--tsc-khz N] [--clock realtime|simulated] [--scramble SEED]`).
 *
 * SIZE is a number with an optional unit, as xl.cfg's memory and Xen's
 * command line take sizes: K, M, G, T (powers of 1024, an optional trailing
 * "B" or "iB"); a bare number is MiB, as in xl.
 */
import type { ClockKind } from '../../xen/time.js';
import { DEFAULT_MEMORY_BYTES, DEFAULT_TSC_KHZ } from '../../xen/machine.js';

export class DaemonArgError extends Error {
  constructor(readonly option: string, message: string) {
    super(message);
    this.name = 'DaemonArgError';
  }
}

export interface DaemonOptions {
  readonly memoryBytes: number;
  readonly tscKhz: number;
  readonly clock: ClockKind;
  readonly scrambleSeed: number;
}

export const MIN_MACHINE_BYTES = 16 * 2 ** 20;
export const MAX_MACHINE_BYTES = 64 * 2 ** 30;

const UNITS: Readonly<Record<string, number>> = { '': 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "512M", "2G", "1024" (MiB) -> bytes; undefined when it is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? '').toUpperCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isFinite(bytes) ? Math.round(bytes) : undefined;
}

function formatBytes(n: number): string {
  return n % 2 ** 30 === 0 ? `${n / 2 ** 30}G` : `${n / 2 ** 20}M`;
}

export function parseDaemonArgs(args: readonly string[]): DaemonOptions {
  let memoryBytes = DEFAULT_MEMORY_BYTES;
  let tscKhz = DEFAULT_TSC_KHZ;
  let clock: ClockKind = 'realtime';
  let scrambleSeed = 1;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined) throw new DaemonArgError(name, `${name} needs a value`);
    switch (name) {
      case '--memory': {
        const b = parseSize(value);
        if (b === undefined) throw new DaemonArgError(name, `--memory ${value}: expected a size such as 512M or 2G`);
        if (b % 4096 !== 0) throw new DaemonArgError(name, `--memory ${value}: not a whole number of 4 KiB pages`);
        if (b < MIN_MACHINE_BYTES || b > MAX_MACHINE_BYTES) {
          throw new DaemonArgError(name, `--memory ${value}: must be between ${formatBytes(MIN_MACHINE_BYTES)} and ${formatBytes(MAX_MACHINE_BYTES)}`);
        }
        memoryBytes = b;
        break;
      }
      case '--tsc-khz': {
        const n = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!(Number.isInteger(n) && n >= 1000 && n <= 0xffff_ffff)) throw new DaemonArgError(name, `--tsc-khz ${value}: expected kHz between 1000 and 4294967295`);
        tscKhz = n;
        break;
      }
      case '--clock':
        if (value !== 'realtime' && value !== 'simulated') throw new DaemonArgError(name, `--clock ${value}: expected realtime or simulated`);
        clock = value;
        break;
      case '--scramble': {
        const n = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!(Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff)) throw new DaemonArgError(name, `--scramble ${value}: expected a seed between 0 and 4294967295`);
        scrambleSeed = n;
        break;
      }
      default:
        throw new DaemonArgError(name, `unknown machine option ${name}`);
    }
  }
  return { memoryBytes, tscKhz, clock, scrambleSeed };
}

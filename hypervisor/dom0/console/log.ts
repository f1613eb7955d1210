/*
 * One guest's console output as dom0 keeps it: appended to
 * `<consoleDir>/<domid>.log` (raw bytes, in the order they reached dom0),
 * the most recent bytes kept in memory for a viewer that attaches later,
 * and handed to every attached viewer (`xl console`).
 *
 * Nothing here can disturb the guest: a log file that cannot be written is
 * reported once and the console carries on in memory; a viewer that throws
 * is detached.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import createDebug from 'debug';

const log = createDebug('dom0:console');

/** An attached console viewer (`xl console`). */
export interface ConsoleViewer {
  /** Guest output, as it arrives. */
  onData(data: Uint8Array): void;
  /** The console went away (domain removed, or the daemon closed). */
  onClose?(): void;
}

/** Last bytes of output kept in memory per console (for a viewer that attaches later). */
export const DEFAULT_TAIL_BYTES = 64 * 1024;

/** The path of a domain's console log under `consoleDir`. */
export function consoleLogPath(consoleDir: string, domid: number): string {
  return join(consoleDir, `${domid}.log`);
}

export class ConsoleLog {
  private fd: number | undefined;
  private fileFailed = false;
  private readonly tailBuf: Uint8Array;
  /** Bytes ever appended (the tail's write position is this modulo its size). */
  private total = 0;
  private readonly viewers = new Set<ConsoleViewer>();
  private closed = false;

  constructor(
    readonly domid: number,
    /** The log file, or undefined to keep output in memory only. */
    readonly path: string | undefined,
    tailBytes: number,
    private readonly report: (line: string) => void,
  ) {
    this.tailBuf = new Uint8Array(Math.max(1, tailBytes));
    // The file exists from the start, so `tail -f` can follow a quiet console.
    this.writeFile(new Uint8Array(0));
  }

  /** Bytes ever appended. */
  get length(): number {
    return this.total;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  append(data: Uint8Array): void {
    if (this.closed || data.length === 0) return;
    this.writeFile(data);
    this.keepTail(data);
    for (const v of [...this.viewers]) {
      if (!this.viewers.has(v)) continue;
      try {
        v.onData(data);
      } catch (e) {
        this.viewers.delete(v);
        log('d%d: viewer threw, detached: %s', this.domid, errorText(e));
      }
    }
  }

  /** The most recent output (up to the tail size), oldest first. */
  tail(): Uint8Array {
    const size = this.tailBuf.length;
    if (this.total <= size) return this.tailBuf.slice(0, this.total);
    const at = this.total % size;
    const out = new Uint8Array(size);
    out.set(this.tailBuf.subarray(at), 0);
    out.set(this.tailBuf.subarray(0, at), size - at);
    return out;
  }

  /** Add a viewer; the function returned detaches it (idempotent). */
  attach(viewer: ConsoleViewer): () => void {
    if (this.closed) return () => undefined;
    this.viewers.add(viewer);
    return () => {
      this.viewers.delete(viewer);
    };
  }

  /** Close the file and tell every viewer the console is gone. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch (e) {
        log('d%d: closing %s: %s', this.domid, this.path, errorText(e));
      }
      this.fd = undefined;
    }
    const viewers = [...this.viewers];
    this.viewers.clear();
    for (const v of viewers) {
      try {
        v.onClose?.();
      } catch (e) {
        log('d%d: viewer onClose threw: %s', this.domid, errorText(e));
      }
    }
  }

  private keepTail(data: Uint8Array): void {
    const size = this.tailBuf.length;
    const src = data.length > size ? data.subarray(data.length - size) : data;
    let at = (this.total + (data.length - src.length)) % size;
    let from = 0;
    while (from < src.length) {
      const n = Math.min(src.length - from, size - at);
      this.tailBuf.set(src.subarray(from, from + n), at);
      from += n;
      at = (at + n) % size;
    }
    this.total += data.length;
  }

  private writeFile(data: Uint8Array): void {
    if (this.path === undefined || this.fileFailed) return;
    try {
      this.fd ??= openSync(this.path, 'a');
      for (let off = 0; off < data.length; ) off += writeSync(this.fd, data, off, data.length - off);
    } catch (e) {
      // The console goes on in memory; the failure is worth one line, not a crash.
      this.fileFailed = true;
      this.report(`console d${this.domid}: cannot write ${this.path}: ${errorText(e)}; keeping output in memory only`);
    }
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

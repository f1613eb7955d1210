/*
 * A raw disk image: a regular file on the host, served as 512-byte sectors.
 *
 * Why synchronous, positional file I/O (readSync/writeSync/fsyncSync with
 * an explicit offset) rather than fs.promises:
 *
 *  * Determinism. The backend does a request's I/O inside `Vbd.poll()`,
 *    which the machine runs between vCPU entries. The response is on the
 *    ring when poll returns, so *when* it completes is decided by the
 *    machine's schedule alone, never by host I/O latency or by the order in
 *    which the host's event loop happens to resolve promises. A simulated
 *    clock never has to wait for the host, and the same run gives the same
 *    trace. (Disk latency is zero in simulated time; a latency model would
 *    hold finished responses back until a timer, not make the I/O async.)
 *  * Ordering for free. One request at a time, in ring order, to
 *    completion: a later write can never overtake an earlier one, a flush
 *    sees every earlier write already issued, and no request is ever
 *    half-done when the guest suspends (see vbd.ts).
 *  * The cost is that the machine's thread waits for the disk: at most one
 *    44 KiB pread/pwrite (page-cache speed) or one fsync per request, and
 *    a bounded number of requests per poll. That is fine for an emulator
 *    whose vCPUs are themselves JS calls on that thread.
 *
 * FLUSH = fsync(2): data and metadata durable on the host.
 *
 * Host failures (EIO, a file truncated under us) come back as error values
 * like everything else; nothing here throws except on our own misuse.
 */
import * as fs from 'node:fs';
import { XEN_BLKIF_SECTOR_SIZE } from '../../public/io/blkif.js';
import type { DiskShape } from './wire.js';

export const SECTOR_SIZE = XEN_BLKIF_SECTOR_SIZE;

export type DiskErrorKind =
  /** The `params` value names something other than a file (`phy:`, `tap:`...). */
  | 'bad-target'
  | 'missing'
  | 'not-regular'
  | 'permission'
  /** Smaller than one sector. */
  | 'too-small'
  | 'read-only'
  | 'out-of-range'
  | 'closed'
  | 'io';

/** What failed, on which image, doing what. */
export interface DiskError {
  readonly kind: DiskErrorKind;
  readonly path: string;
  readonly op: 'open' | 'read' | 'write' | 'flush';
  /** The host errno name (ENOENT, EIO...) when a system call failed. */
  readonly code?: string;
  readonly message: string;
}

export type DiskResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: DiskError };

export interface DiskOpenOptions {
  readonly readOnly: boolean;
}

const FILE_PREFIX = 'file:';

/**
 * The host path named by a `params` value or an xl `target`: a plain path,
 * or `file:PATH`. Any other `kind:` prefix (phy:, tap:, aio:, ...) is not
 * something this backend serves; a file whose name looks like one is
 * named `file:kind:rest`.
 */
export function imagePath(target: string): { ok: true; value: string } | { ok: false; error: string } {
  if (target.startsWith(FILE_PREFIX)) {
    const p = target.slice(FILE_PREFIX.length);
    return p === '' ? { ok: false, error: `disk target "${target}" names no file` } : { ok: true, value: p };
  }
  const m = /^([a-z][a-z0-9]*):/.exec(target);
  if (m !== null) return { ok: false, error: `disk target "${target}": only file: images are served, not ${m[1]}:` };
  if (target === '') return { ok: false, error: 'disk target is empty' };
  return { ok: true, value: target };
}

/** Map a failed system call to our error kinds. */
export function classifyErrno(code: string | undefined): DiskErrorKind {
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 'missing';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'permission';
    case 'EISDIR':
      return 'not-regular';
    default:
      return 'io';
  }
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function describe(kind: DiskErrorKind, path: string, op: string, detail: string): string {
  switch (kind) {
    case 'missing': return `disk image ${path} does not exist`;
    case 'permission': return `disk image ${path}: permission denied (${op}): ${detail}`;
    case 'not-regular': return `disk image ${path} is not a regular file (${detail})`;
    default: return `disk image ${path}: ${op} failed: ${detail}`;
  }
}

function fail<T>(kind: DiskErrorKind, path: string, op: DiskError['op'], detail: string, code?: string): DiskResult<T> {
  const error: DiskError = code === undefined
    ? { kind, path, op, message: describe(kind, path, op, detail) }
    : { kind, path, op, code, message: describe(kind, path, op, detail) };
  return { ok: false, error };
}

function fromErrno<T>(e: unknown, path: string, op: DiskError['op']): DiskResult<T> {
  const code = errnoCode(e);
  const detail = e instanceof Error ? e.message : String(e);
  return fail(classifyErrno(code), path, op, detail, code);
}

function fileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

export class DiskImage implements DiskShape {
  /** Writes issued since the last successful flush (not yet durable). */
  private unsynced = 0;
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly path: string,
    readonly readOnly: boolean,
    readonly sectors: number,
    /** `dev:ino` of the file: the same image under any path. */
    readonly identity: string,
  ) {}

  /**
   * Open an image (`PATH` or `file:PATH`). The file must exist and be a
   * regular file of at least one sector; its size is fixed at open, and a
   * trailing partial sector is not part of the disk.
   */
  static open(target: string, opts: DiskOpenOptions): DiskResult<DiskImage> {
    const p = imagePath(target);
    if (!p.ok) return fail('bad-target', target, 'open', p.error);
    const path = p.value;
    // stat first: opening a FIFO for reading would block the machine.
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (e) {
      return fromErrno(e, path, 'open');
    }
    if (!st.isFile()) return fail('not-regular', path, 'open', fileKind(st));
    const flags = (opts.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_NONBLOCK;
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (e) {
      return fromErrno(e, path, 'open');
    }
    // Again on the descriptor: the path may have been swapped in between.
    const fst = fs.fstatSync(fd);
    if (!fst.isFile()) {
      fs.closeSync(fd);
      return fail('not-regular', path, 'open', fileKind(fst));
    }
    const sectors = Math.floor(fst.size / SECTOR_SIZE);
    if (sectors < 1) {
      fs.closeSync(fd);
      return fail('too-small', path, 'open', `${fst.size} bytes hold no whole ${SECTOR_SIZE}-byte sector`);
    }
    return { ok: true, value: new DiskImage(fd, path, opts.readOnly, sectors, `${fst.dev}:${fst.ino}`) };
  }

  /** Bytes of the disk (sectors * 512). */
  get bytes(): number {
    return this.sectors * SECTOR_SIZE;
  }

  /** Writes not yet made durable by a flush. */
  get unsyncedWrites(): number {
    return this.unsynced;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private check(op: DiskError['op'], sector: number, count: number): DiskResult<void> | undefined {
    if (this.closed) return fail('closed', this.path, op, 'the image is closed');
    if (!(Number.isSafeInteger(sector) && Number.isSafeInteger(count) && sector >= 0 && count >= 0 && sector + count <= this.sectors))
      return fail('out-of-range', this.path, op, `sectors ${sector}+${count} outside the disk's ${this.sectors}`);
    return undefined;
  }

  /** Read `count` sectors from `sector`. */
  read(sector: number, count: number): DiskResult<Uint8Array> {
    const bad = this.check('read', sector, count);
    if (bad !== undefined) return bad as DiskResult<never>;
    const buf = new Uint8Array(count * SECTOR_SIZE);
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.fd, buf, done, buf.length - done, sector * SECTOR_SIZE + done);
        if (n === 0) return fail('io', this.path, 'read', `end of file at byte ${sector * SECTOR_SIZE + done}: the image shrank under the backend`);
        done += n;
      }
    } catch (e) {
      return fromErrno(e, this.path, 'read');
    }
    return { ok: true, value: buf };
  }

  /** Write whole sectors at `sector`; all of `data` lies inside the disk or nothing is written. */
  write(sector: number, data: Uint8Array): DiskResult<void> {
    if (data.length % SECTOR_SIZE !== 0) throw new RangeError(`DiskImage.write: ${data.length} bytes is not whole sectors`);
    const bad = this.check('write', sector, data.length / SECTOR_SIZE);
    if (bad !== undefined) return bad;
    if (this.readOnly) return fail('read-only', this.path, 'write', 'the image is open read-only');
    let done = 0;
    try {
      while (done < data.length) {
        done += fs.writeSync(this.fd, data, done, data.length - done, sector * SECTOR_SIZE + done);
      }
    } catch (e) {
      this.unsynced++;
      return fromErrno(e, this.path, 'write');
    }
    this.unsynced++;
    return { ok: true, value: undefined };
  }

  /** Make every earlier write durable (fsync). */
  flush(): DiskResult<void> {
    if (this.closed) return fail('closed', this.path, 'flush', 'the image is closed');
    try {
      fs.fsyncSync(this.fd);
    } catch (e) {
      return fromErrno(e, this.path, 'flush');
    }
    this.unsynced = 0;
    return { ok: true, value: undefined };
  }

  /** Close the file. Idempotent; later I/O answers 'closed'. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // Nothing useful to do: the descriptor is gone either way.
    }
  }
}

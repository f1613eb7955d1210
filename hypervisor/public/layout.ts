/*
 * Layout tables: how every wire struct of the Xen public ABI is declared.
 *
 * A struct is declared once, as an ordered table of C member types. Offsets,
 * alignment and size are *computed* from the x86_64 System V rules (natural
 * alignment, trailing padding to the struct's alignment), the same way a C
 * compiler lays out the header. The ABI tests then compare the computed
 * numbers with the real headers, so a wrong member type or a forgotten
 * member shows up as a failing offset instead of silently agreeing with a
 * number typed in twice.
 *
 * Accessors are derived from the table: `layout.view(mem, base)` returns a
 * typed view whose `get`/`set` know each member's width and signedness.
 *
 * 64-bit members: read and written as `bigint`, always exactly. That is the
 * one documented choice for the whole ABI (see docs/ARCHITECTURE.md). Code
 * that knows a value fits in 2^53 (frame numbers, sizes) converts with
 * `u64ToSafeNumber`, which refuses rather than rounds.
 */

/** The byte accessors every view needs. `DataView` already satisfies it;
 * the MMU's guest-virtual accessor implements the same shape. */
export interface MemView {
  getUint8(off: number): number;
  getInt8(off: number): number;
  getUint16(off: number, littleEndian?: boolean): number;
  getInt16(off: number, littleEndian?: boolean): number;
  getUint32(off: number, littleEndian?: boolean): number;
  getInt32(off: number, littleEndian?: boolean): number;
  getBigUint64(off: number, littleEndian?: boolean): bigint;
  getBigInt64(off: number, littleEndian?: boolean): bigint;
  setUint8(off: number, v: number): void;
  setInt8(off: number, v: number): void;
  setUint16(off: number, v: number, littleEndian?: boolean): void;
  setInt16(off: number, v: number, littleEndian?: boolean): void;
  setUint32(off: number, v: number, littleEndian?: boolean): void;
  setInt32(off: number, v: number, littleEndian?: boolean): void;
  setBigUint64(off: number, v: bigint, littleEndian?: boolean): void;
  setBigInt64(off: number, v: bigint, littleEndian?: boolean): void;
}

/** A MemView that can also move byte ranges. */
export interface ByteMem extends MemView {
  readBytes(off: number, len: number): Uint8Array;
  writeBytes(off: number, data: Uint8Array): void;
}

/** Wrap a plain buffer (a test page, a file's bytes) as a ByteMem. */
export function bytesMem(bytes: Uint8Array): ByteMem {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) as DataView & Partial<ByteMem>;
  dv.readBytes = (off: number, len: number): Uint8Array => bytes.slice(off, off + len);
  dv.writeBytes = (off: number, data: Uint8Array): void => {
    if (off < 0 || off + data.length > bytes.length) throw new RangeError(`writeBytes ${off}+${data.length} outside ${bytes.length}`);
    bytes.set(data, off);
  };
  return dv as ByteMem;
}

// ---------------------------------------------------------------------------
// C member types

export type Scalar32Kind = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32';
export type Scalar64Kind = 'u64' | 'i64';
export type ScalarKind = Scalar32Kind | Scalar64Kind;

export interface ScalarType<K extends ScalarKind = ScalarKind> {
  readonly kind: 'scalar';
  readonly scalar: K;
  readonly size: number;
  readonly align: number;
}
export interface ArrayType<E extends CType = CType> {
  readonly kind: 'array';
  readonly elem: E;
  readonly count: number;
  readonly size: number;
  readonly align: number;
}
export interface RecordType<F extends Fields = Fields> {
  readonly kind: 'record';
  readonly layout: StructLayout<F>;
  readonly size: number;
  readonly align: number;
}
export type CType = ScalarType | ArrayType<any> | RecordType<any>;
export type Fields = { readonly [name: string]: CType };

function scalar<K extends ScalarKind>(k: K, size: number): ScalarType<K> {
  return Object.freeze({ kind: 'scalar', scalar: k, size, align: size });
}
export const u8 = scalar('u8', 1);
export const i8 = scalar('i8', 1);
export const u16 = scalar('u16', 2);
export const i16 = scalar('i16', 2);
export const u32 = scalar('u32', 4);
export const i32 = scalar('i32', 4);
export const u64 = scalar('u64', 8);
export const i64 = scalar('i64', 8);
/** C `char`: a byte. */
export const char = u8;
/** `xen_pfn_t`, `xen_ulong_t`, `unsigned long`, pointers and handles on x86_64. */
export const ulong = u64;
/** `domid_t` */
export const domid_t = u16;
/** `evtchn_port_t` */
export const evtchn_port_t = u32;
/** `grant_ref_t` */
export const grant_ref_t = u32;
/** `XEN_GUEST_HANDLE(T)`: a guest virtual address, 8 bytes on x86_64. */
export const guest_handle = u64;

export function array<E extends CType>(elem: E, count: number): ArrayType<E> {
  if (!Number.isInteger(count) || count < 0) throw new Error(`array count ${count}`);
  return Object.freeze({ kind: 'array', elem, count, size: elem.size * count, align: elem.align });
}

export function record<F extends Fields>(layout: StructLayout<F>): RecordType<F> {
  return Object.freeze({ kind: 'record', layout, size: layout.size, align: layout.align });
}

// ---------------------------------------------------------------------------
// Layouts

export interface FieldInfo {
  readonly name: string;
  readonly type: CType;
  readonly offset: number;
}

export interface StructLayout<F extends Fields = Fields> {
  /** The C type name, e.g. `start_info_t` or `struct evtchn_send`. */
  readonly name: string;
  readonly size: number;
  readonly align: number;
  readonly isUnion: boolean;
  readonly fields: { readonly [K in keyof F]: FieldInfo };
  /** Offset of a member; dotted paths walk into nested structs/unions. */
  offsetOf(path: string): number;
  /** Type of a member by dotted path (undefined when there is none). */
  typeOf(path: string): CType | undefined;
  view(mem: MemView, base: number): StructView<F>;
  /** A zero-filled buffer of `size` bytes with a view over it. */
  alloc(): { bytes: Uint8Array; view: StructView<F> };
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function build<F extends Fields>(name: string, members: F, isUnion: boolean, minAlign = 1): StructLayout<F> {
  const fields: Record<string, FieldInfo> = {};
  let off = 0;
  let size = 0;
  let align = minAlign;
  for (const [fname, type] of Object.entries(members)) {
    const at = isUnion ? 0 : alignUp(off, type.align);
    fields[fname] = Object.freeze({ name: fname, type, offset: at });
    off = at + type.size;
    size = Math.max(size, off);
    align = Math.max(align, type.align);
  }
  size = alignUp(size, align);
  Object.freeze(fields);

  const resolve = (path: string): { offset: number; type: CType } | undefined => {
    let layout: StructLayout<Fields> = self as unknown as StructLayout<Fields>;
    let offset = 0;
    let type: CType | undefined;
    for (const part of path.split('.')) {
      const f: FieldInfo | undefined = layout.fields[part];
      if (f === undefined) return undefined;
      offset += f.offset;
      type = f.type;
      if (type.kind === 'record') layout = type.layout;
      else if (type.kind === 'array' && type.elem.kind === 'record') layout = type.elem.layout;
    }
    return type === undefined ? undefined : { offset, type };
  };

  const self: StructLayout<F> = {
    name,
    size,
    align,
    isUnion,
    fields: fields as { readonly [K in keyof F]: FieldInfo },
    offsetOf(path: string): number {
      const r = resolve(path);
      if (r === undefined) throw new Error(`${name} has no member ${path}`);
      return r.offset;
    },
    typeOf(path: string): CType | undefined {
      return resolve(path)?.type;
    },
    view(mem: MemView, base: number): StructView<F> {
      return new StructView<F>(self, mem, base);
    },
    alloc() {
      const bytes = new Uint8Array(size);
      return { bytes, view: new StructView<F>(self, bytesMem(bytes), 0) };
    },
  };
  return Object.freeze(self);
}

/** Declare a C struct. Members in declaration order; padding is implied. */
export function struct<F extends Fields>(name: string, members: F, opts?: { align?: number }): StructLayout<F> {
  return build(name, members, false, opts?.align ?? 1);
}

/** Declare a C union: every member at offset 0. */
export function union<F extends Fields>(name: string, members: F): StructLayout<F> {
  return build(name, members, true);
}

// ---------------------------------------------------------------------------
// Views

type ScalarValue<K> = K extends Scalar64Kind ? bigint : number;
type ScalarFieldNames<F extends Fields> = { [K in keyof F]: F[K] extends ScalarType ? K : never }[keyof F] & string;
type ArrayFieldNames<F extends Fields> = { [K in keyof F]: F[K] extends ArrayType<ScalarType> ? K : never }[keyof F] & string;
type RecordFieldNames<F extends Fields> = {
  [K in keyof F]: F[K] extends RecordType ? K : F[K] extends ArrayType<RecordType> ? K : never;
}[keyof F] & string;
type ValueOf<T> = T extends ScalarType<infer K> ? ScalarValue<K> : never;
type ElemValueOf<T> = T extends ArrayType<ScalarType<infer K>> ? ScalarValue<K> : never;
type SubFields<T> = T extends RecordType<infer G> ? G : T extends ArrayType<RecordType<infer G>> ? G : never;

function readScalar(mem: MemView, off: number, k: ScalarKind): number | bigint {
  switch (k) {
    case 'u8': return mem.getUint8(off);
    case 'i8': return mem.getInt8(off);
    case 'u16': return mem.getUint16(off, true);
    case 'i16': return mem.getInt16(off, true);
    case 'u32': return mem.getUint32(off, true);
    case 'i32': return mem.getInt32(off, true);
    case 'u64': return mem.getBigUint64(off, true);
    case 'i64': return mem.getBigInt64(off, true);
  }
}

function writeScalar(mem: MemView, off: number, k: ScalarKind, v: number | bigint): void {
  switch (k) {
    case 'u8': mem.setUint8(off, Number(v)); return;
    case 'i8': mem.setInt8(off, Number(v)); return;
    case 'u16': mem.setUint16(off, Number(v), true); return;
    case 'i16': mem.setInt16(off, Number(v), true); return;
    case 'u32': mem.setUint32(off, Number(v), true); return;
    case 'i32': mem.setInt32(off, Number(v), true); return;
    case 'u64': mem.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true); return;
    case 'i64': mem.setBigInt64(off, BigInt.asIntN(64, BigInt(v)), true); return;
  }
}

/** A short-lived typed window onto one struct instance at `base`. */
export class StructView<F extends Fields> {
  constructor(
    readonly layout: StructLayout<F>,
    readonly mem: MemView,
    readonly base: number,
  ) {}

  private field(name: string): FieldInfo {
    const f = (this.layout.fields as Record<string, FieldInfo>)[name];
    if (f === undefined) throw new Error(`${this.layout.name} has no member ${name}`);
    return f;
  }

  /** Address of a member (base + offset). */
  addr(name: keyof F & string): number {
    return this.base + this.field(name).offset;
  }

  get<K extends ScalarFieldNames<F>>(name: K): ValueOf<F[K]> {
    const f = this.field(name);
    return readScalar(this.mem, this.base + f.offset, (f.type as ScalarType).scalar) as ValueOf<F[K]>;
  }

  set<K extends ScalarFieldNames<F>>(name: K, v: ValueOf<F[K]>): void {
    const f = this.field(name);
    writeScalar(this.mem, this.base + f.offset, (f.type as ScalarType).scalar, v);
  }

  getAt<K extends ArrayFieldNames<F>>(name: K, i: number): ElemValueOf<F[K]> {
    const f = this.field(name);
    const t = f.type as ArrayType<ScalarType>;
    if (!(i >= 0 && i < t.count)) throw new RangeError(`${this.layout.name}.${name}[${i}] out of 0..${t.count - 1}`);
    return readScalar(this.mem, this.base + f.offset + i * t.elem.size, t.elem.scalar) as ElemValueOf<F[K]>;
  }

  setAt<K extends ArrayFieldNames<F>>(name: K, i: number, v: ElemValueOf<F[K]>): void {
    const f = this.field(name);
    const t = f.type as ArrayType<ScalarType>;
    if (!(i >= 0 && i < t.count)) throw new RangeError(`${this.layout.name}.${name}[${i}] out of 0..${t.count - 1}`);
    writeScalar(this.mem, this.base + f.offset + i * t.elem.size, t.elem.scalar, v);
  }

  /** View of a nested struct/union member, or element `i` of an array of them. */
  sub<K extends RecordFieldNames<F>>(name: K, i = 0): StructView<SubFields<F[K]>> {
    const f = this.field(name);
    if (f.type.kind === 'record') {
      return new StructView(f.type.layout, this.mem, this.base + f.offset) as StructView<SubFields<F[K]>>;
    }
    const t = f.type as ArrayType<RecordType>;
    if (!(i >= 0 && i < t.count)) throw new RangeError(`${this.layout.name}.${name}[${i}] out of 0..${t.count - 1}`);
    return new StructView(t.elem.layout, this.mem, this.base + f.offset + i * t.elem.size) as StructView<SubFields<F[K]>>;
  }

  /** Bytes of a char-array member, up to its first NUL. */
  getString(name: ArrayFieldNames<F>): string {
    const f = this.field(name);
    const t = f.type as ArrayType<ScalarType>;
    let s = '';
    for (let i = 0; i < t.count; i++) {
      const c = this.mem.getUint8(this.base + f.offset + i);
      if (c === 0) break;
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** Store a string into a char-array member, NUL-padded; refuses if too long. */
  setString(name: ArrayFieldNames<F>, s: string): void {
    const f = this.field(name);
    const t = f.type as ArrayType<ScalarType>;
    if (s.length >= t.count + 1) throw new RangeError(`${this.layout.name}.${name}: ${s.length} bytes do not fit in ${t.count}`);
    for (let i = 0; i < t.count; i++) {
      this.mem.setUint8(this.base + f.offset + i, i < s.length ? s.charCodeAt(i) & 0xff : 0);
    }
  }
}

// ---------------------------------------------------------------------------
// 64-bit helpers

/** A u64 as a JS number when it is exactly representable, else undefined. */
export function u64ToSafeNumber(v: bigint): number | undefined {
  return v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

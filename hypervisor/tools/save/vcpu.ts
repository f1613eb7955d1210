/*
 * The frame numbers inside a vcpu_guest_context, converted for the image
 * and back (libxc's write_one_vcpu_basic / process_vcpu_basic):
 *
 *   ctrlreg[3]       CR3: mfn << 12 live, pfn << 12 in the image; an L4
 *   ctrlreg[1]       the user-mode L4 when non-zero: 1 | pfn << 12 in the image
 *   gdt_frames[]     ceil(gdt_ents / 512) frames
 *   user_regs.rdx    vCPU 0 only: the start_info frame of the suspend hypercall
 *
 * Each conversion names the field that failed. The functions work on a
 * private copy of the 5168 bytes.
 */
import { FIRST_RESERVED_GDT_ENTRY, VGCF_online, vcpu_guest_context } from '../../public/arch-x86_64.js';

const CR_OFF = vcpu_guest_context.offsetOf('ctrlreg');
const CR3_OFF = CR_OFF + 3 * 8;
const CR1_OFF = CR_OFF + 1 * 8;
const GDT_FRAMES_OFF = vcpu_guest_context.offsetOf('gdt_frames');
const GDT_ENTS_OFF = vcpu_guest_context.offsetOf('gdt_ents');
const RDX_OFF = vcpu_guest_context.offsetOf('user_regs.rdx');
const RAX_OFF = vcpu_guest_context.offsetOf('user_regs.rax');
const FLAGS_OFF = vcpu_guest_context.offsetOf('flags');
export const VCPU_CONTEXT_BYTES = vcpu_guest_context.size;
/** Offset of user_regs.rdx within a context. */
export const VCPU_RDX_OFFSET = RDX_OFF;

/** A frame field of a context, for messages and for the image offset of a failure. */
export interface ContextField {
  readonly name: string;
  /** Byte offset of the field within the context. */
  readonly offset: number;
}

/** Convert one frame number: the new frame, or why it cannot be converted. */
export type FrameMap = (frame: number, field: ContextField) => number | string;

export class ContextProblem {
  constructor(
    readonly field: ContextField,
    readonly frame: number | bigint,
    readonly detail: string,
  ) {}
}

function dvOf(ctx: Uint8Array): DataView {
  if (ctx.length !== VCPU_CONTEXT_BYTES) throw new RangeError(`a vcpu_guest_context is ${VCPU_CONTEXT_BYTES} bytes, not ${ctx.length}`);
  return new DataView(ctx.buffer, ctx.byteOffset, ctx.length);
}

/** The fields of a context that hold frame numbers, with their frames. */
function frameFields(dv: DataView, vcpuId: number, image: boolean): ContextProblem | { field: ContextField; value: bigint }[] {
  const out: { field: ContextField; value: bigint }[] = [];
  if (vcpuId === 0) out.push({ field: { name: 'user_regs.rdx (start_info)', offset: RDX_OFF }, value: dv.getBigUint64(RDX_OFF, true) });
  const ents = dv.getBigUint64(GDT_ENTS_OFF, true);
  if (ents > BigInt(FIRST_RESERVED_GDT_ENTRY)) {
    return new ContextProblem({ name: 'gdt_ents', offset: GDT_ENTS_OFF }, ents, `gdt_ents ${ents} exceeds ${FIRST_RESERVED_GDT_ENTRY}`);
  }
  for (let i = 0; i < Math.ceil(Number(ents) / 512); i++) {
    const offset = GDT_FRAMES_OFF + 8 * i;
    out.push({ field: { name: `gdt_frames[${i}]`, offset }, value: dv.getBigUint64(offset, true) });
  }
  const cr3 = dv.getBigUint64(CR3_OFF, true);
  if ((cr3 & 0xfffn) !== 0n) return new ContextProblem({ name: 'ctrlreg[3] (CR3)', offset: CR3_OFF }, cr3, 'CR3 has bits below bit 12 set');
  out.push({ field: { name: 'ctrlreg[3] (CR3)', offset: CR3_OFF }, value: cr3 >> 12n });
  const cr1 = dv.getBigUint64(CR1_OFF, true);
  // Live, a non-zero CR1 is mfn << 12; in the image bit 0 marks it valid.
  if (image ? (cr1 & 1n) !== 0n : cr1 !== 0n) out.push({ field: { name: 'ctrlreg[1] (user L4)', offset: CR1_OFF }, value: cr1 >> 12n });
  return out;
}

function store(dv: DataView, field: ContextField, frame: number, image: boolean): void {
  const v = BigInt(frame);
  if (field.offset === CR3_OFF) dv.setBigUint64(CR3_OFF, v << 12n, true);
  else if (field.offset === CR1_OFF) dv.setBigUint64(CR1_OFF, image ? (v << 12n) | 1n : v << 12n, true);
  else dv.setBigUint64(field.offset, v, true);
}

/**
 * Convert the frame fields of `ctx` in place: live -> image when `toImage`
 * (MFNs to PFNs), image -> live otherwise (and the vCPU marked online, as
 * libxc does). Nothing is changed unless every field converts; the first
 * failure comes back as a ContextProblem.
 */
export function convertContext(ctx: Uint8Array, vcpuId: number, toImage: boolean, map: FrameMap): ContextProblem | undefined {
  const dv = dvOf(ctx);
  const fields = frameFields(dv, vcpuId, !toImage);
  if (fields instanceof ContextProblem) return fields;
  const done: { field: ContextField; frame: number }[] = [];
  for (const { field, value } of fields) {
    if (value >= 1n << 40n) return new ContextProblem(field, value, `${field.name} holds ${value}, not a frame number`);
    const r = map(Number(value), field);
    if (typeof r === 'string') return new ContextProblem(field, value, r);
    done.push({ field, frame: r });
  }
  for (const d of done) store(dv, d.field, d.frame, toImage);
  if (!toImage) dv.setBigUint64(FLAGS_OFF, dv.getBigUint64(FLAGS_OFF, true) | BigInt(VGCF_online), true);
  return undefined;
}

/** Set rax of a context (the suspend hypercall's result on restore). */
export function setContextRax(ctx: Uint8Array, value: number): void {
  dvOf(ctx).setBigUint64(RAX_OFF, BigInt.asUintN(64, BigInt(value)), true);
}

/** VGCF_online is set in the context's flags. */
export function contextOnline(ctx: Uint8Array): boolean {
  return (dvOf(ctx).getBigUint64(FLAGS_OFF, true) & BigInt(VGCF_online)) !== 0n;
}

/** vCPU 0's rdx in a context: the start_info frame. */
export function contextRdx(ctx: Uint8Array): bigint {
  return dvOf(ctx).getBigUint64(RDX_OFF, true);
}

/** CR3 of a context, as a frame number. */
export function contextCr3Frame(ctx: Uint8Array): bigint {
  return dvOf(ctx).getBigUint64(CR3_OFF, true) >> 12n;
}

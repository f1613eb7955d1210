/*
 * `xl restore`: read a save image and rebuild the domain, the steps of
 * libxl's domain restore around libxc's x86 PV restorer
 * (xg_sr_restore_x86_pv), streaming: a 1 GiB image is never held whole.
 *
 *   xl header        the kernel image it needs must be this machine's, same
 *                    version hash, or the restore is refused before anything
 *                    is created
 *   P2M_FRAMES       max_pfn is known: createdomain (paused), max_mem,
 *                    set_kernel
 *   PAGE_DATA ...    fresh MFNs for pfns with data (populate_physmap), the
 *                    bytes written through foreign frames; page tables stay
 *                    canonical until the end (a PTE may name a pfn not sent yet)
 *   TSC_INFO, SHARED_INFO, X86_PV_VCPU_*   kept for the end
 *   END              restore-finish.ts: localize page tables, M2P, rewrite
 *                    the guest's P2M, start_info, shared_info, pin, vCPUs,
 *                    grant entries 0 and 1
 *
 * Every problem is a StreamError (the codec's: malformed image, with layer,
 * record and offset) or a RestoreError (a well-formed image this restore
 * cannot use, with record and offset). Either way whatever was created is
 * destroyed: no domain, port or frame is left behind. The new domain is
 * left paused: the caller recreates its xenstore nodes, introduces it to
 * xenstored, attaches backends and unpauses it.
 */
import { PAGE_SIZE } from '../../public/types.js';
import {
  PageType, StreamParser, pageTypeHasData,
  type ItemOfType, type StreamFormat, type StreamItem, type XenportMeta, type XlConfig,
} from '../stream/index.js';
import { PAGE_DATA_HEADER, RECORD_HEADER, X86_PV_P2M_FRAMES, X86_PV_VCPU_HEADER } from '../stream/wire.js';
import { errnoName } from '../../public/errno.js';
import { INVALID_MFN, P2M_TREE_MAX_PFNS, type RestoreMachine } from './deps.js';
import { RestoreError, hex } from './errors.js';
import { finishRestore, type FinishedDomain, type Located, type RestoreState } from './restore-finish.js';
import type { StepListener } from '../../xen/trace.js';

export interface RestoreOptions {
  /** Outermost layer of the source (default 'xl', a file from `xl save`). */
  readonly format?: StreamFormat;
  /** vCPUs of the new domain (default: `vcpus = N` from the image's config, else 1). */
  readonly maxVcpus?: number;
  /** The kernel to bind when the image carries no xenport metadata (a bare libxl/libxc stream). */
  readonly kernel?: { readonly name: string; readonly versionHash: string };
  /** Called after each PAGE_DATA record: pages written so far. */
  readonly progress?: (pages: number) => void;
  /** Told of each protocol step as it is done, with the new domid once there is one (the machine's trace: `m.trace.steps()`). */
  readonly onStep?: StepListener;
  /**
   * A migration socket, which carries more after the stream: stop reading at
   * the final END instead of at the source's end, and hand the bytes read
   * past END here.
   */
  readonly afterEnd?: (rest: Uint8Array) => void;
  /**
   * A checkpointed (Remus) stream: after the first CHECKPOINT, each
   * checkpoint's records are held back and applied only when its CHECKPOINT
   * (or the final END) arrives. If the source then breaks or the stream is
   * cut, the domain is built from the last complete checkpoint; before the
   * first one, that is an error as for a plain stream.
   */
  readonly checkpointed?: boolean;
  /** Checkpointed streams: told of each checkpoint once it is applied (1, 2, ...). */
  readonly onCheckpoint?: (n: number) => void;
}

/**
 * The restored domain: its store/console rings, start_info and shared_info
 * frames as finishRestore left them (`ctrlIf`, when the command line names
 * one, has a fresh port and the line rewritten), plus what the stream said.
 */
export interface RestoredDomain extends FinishedDomain {
  readonly domid: number;
  readonly config?: XlConfig;
  readonly xenportMeta?: XenportMeta;
  readonly maxPfn: number;
  /** Pfns that got a frame. */
  readonly pages: number;
  /** Checkpointed streams: the checkpoint the domain was built from, and why the stream stopped there. */
  readonly checkpoint?: { readonly n: number; readonly ended: 'end' | 'broken'; readonly why?: string };
}

export type RestoreSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** libxl's LIBXL_MAXMEM_CONSTANT: max_mem is the P2M size plus 1 MiB. */
const MAXMEM_SLACK_KB = 1024;
const UNSEEN = 0xff;
const PAGE_WORDS_AT = RECORD_HEADER.size + PAGE_DATA_HEADER.size;

/**
 * Restore the image read from `source` into a new, paused domain. Rejects
 * with a StreamError or a RestoreError after destroying whatever it made.
 */
export async function restoreDomain(m: RestoreMachine, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestoredDomain> {
  const parser = new StreamParser({ format: opts.format ?? 'xl', allowTrailing: opts.afterEnd !== undefined });
  const r = new Restorer(m, opts);
  const chunks = source instanceof Uint8Array ? [source] : source;
  opts.onStep?.('stream read started', `format ${opts.format ?? 'xl'}`);
  try {
    for await (const chunk of chunks) {
      const step = parser.push(chunk);
      for (const it of step.items) r.handle(it);
      if (step.error !== undefined) throw step.error;
      if (step.done && opts.afterEnd !== undefined) break;
    }
    if (parser.done) opts.afterEnd?.(parser.remainder());
    const last = parser.end();
    for (const it of last.items) r.handle(it);
    if (last.error !== undefined) throw last.error;
    return r.finish();
  } catch (e) {
    // Failover: the source broke after a complete checkpoint. Whatever of the
    // next one was buffered is dropped; a failure applying a checkpoint is not
    // recoverable (the domain is half-updated).
    if (opts.checkpointed === true && r.canFailOver && !(e instanceof RestoreError)) {
      try {
        return r.finish(e instanceof Error ? e.message : String(e));
      } catch (e2) {
        r.abort();
        throw e2;
      }
    }
    r.abort();
    if (opts.checkpointed === true && !r.canFailOver && !(e instanceof RestoreError) && !r.applyFailed) {
      throw new RestoreError('missing', 'CHECKPOINT', 0, `the checkpointed stream stopped before its first complete checkpoint: ${e instanceof Error ? e.message : String(e)}`);
    }
    throw e;
  }
}

class Restorer {
  #domid: number | undefined;
  #config: XlConfig | undefined;
  #meta: XenportMeta | undefined;
  #kernel: { name: string; versionHash: string } | undefined;
  #maxPfn = 0;
  #p2m = new Float64Array(0);
  #types = new Uint8Array(0);
  /** Stream offset of each pfn's page data (page tables and start_info problems are reported there). */
  #dataAt = new Float64Array(0);
  #frames: Located<number>[] = [];
  #sharedInfo: Located<Uint8Array> | undefined;
  readonly #vcpus = new Map<number, Located<Uint8Array>>();
  #maxVcpus = 1;
  #pages = 0;
  #end = false;
  /** Checkpointed mode: complete checkpoints applied, and the records of the one coming in. */
  #checkpoints = 0;
  #held: StreamItem[] = [];
  #applying = false;

  constructor(
    private readonly m: RestoreMachine,
    private readonly opts: RestoreOptions,
  ) {
    if (opts.kernel !== undefined) this.#kernel = { ...opts.kernel };
  }

  /** A checkpointed stream with at least one complete checkpoint applied. */
  get canFailOver(): boolean {
    return this.#checkpoints > 0 && !this.#applying;
  }

  /** A checkpoint failed while being applied. */
  get applyFailed(): boolean {
    return this.#applying;
  }

  handle(it: StreamItem): void {
    if (this.opts.checkpointed === true) {
      const closes = it.layer === 'libxc' && (it.type === 'CHECKPOINT' || it.type === 'END');
      if (this.#checkpoints > 0 && !closes) {
        // Held back until the checkpoint is complete; page data copied (the parser's buffers move on).
        this.#held.push(it.type === 'PAGE_DATA' ? { ...it, pages: it.pages.map((p) => (p.data === undefined ? p : { ...p, data: p.data.slice() })) } : it);
        return;
      }
      if (closes) {
        this.#applying = true;
        const held = this.#held;
        this.#held = [];
        for (const h of held) this.#apply(h);
        this.#checkpoints++;
        this.#applying = false;
        if (it.type === 'CHECKPOINT') {
          this.opts.onStep?.('checkpoint applied', `checkpoint ${this.#checkpoints}: ${held.length} records`, this.#domid);
          this.opts.onCheckpoint?.(this.#checkpoints);
          return;
        }
        this.opts.onCheckpoint?.(this.#checkpoints);
      }
    }
    this.#apply(it);
  }

  #apply(it: StreamItem): void {
    switch (it.type) {
      case 'XL_HEADER':
        this.#config = it.config;
        this.#meta = it.xenportMeta;
        if (it.xenportMeta !== undefined) this.#kernel = { ...it.xenportMeta.kernel };
        this.#checkKernel('XL_HEADER', it.offset);
        this.opts.onStep?.('stream header ok', this.#kernel === undefined ? 'xl header (no kernel named)' : `xl header: kernel ${this.#kernel.name} ${this.#kernel.versionHash}, this machine has it`);
        return;
      case 'X86_PV_P2M_FRAMES':
        this.#p2mFrames(it);
        return;
      case 'PAGE_DATA':
        if (it.layer === 'libxc') this.#pageData(it);
        return;
      case 'SHARED_INFO':
        this.#sharedInfo = { value: it.data.slice(), offset: it.offset + RECORD_HEADER.size };
        return;
      case 'X86_PV_VCPU_BASIC':
        if (it.vcpuId >= this.#maxVcpus) {
          throw new RestoreError('vcpu', it.type, it.offset + RECORD_HEADER.size,
            `vCPU ${it.vcpuId} does not exist in a domain of ${this.#maxVcpus} vCPUs (say vcpus = ${it.vcpuId + 1} in the config)`);
        }
        this.#vcpus.set(it.vcpuId, { value: it.context.slice(), offset: it.offset + RECORD_HEADER.size + X86_PV_VCPU_HEADER.size });
        return;
      case 'END':
        if (it.layer === 'libxc') {
          this.#end = true;
          this.opts.onStep?.('pages populated and written', `${this.#pages} pages of max_pfn ${this.#maxPfn}, libxc END`, this.#domid);
        }
        return;
      default:
        // Headers the parser has checked; TSC_INFO (nothing here depends on the
        // source's TSC); vCPU blobs this hypervisor has no state for.
        return;
    }
  }

  #checkKernel(record: string, offset: number): void {
    const k = this.#kernel;
    if (k === undefined) return;
    const img = this.m.image(k.name);
    if (img === undefined) {
      throw new RestoreError('kernel', record, offset, `the image needs kernel "${k.name}", which this machine does not have`);
    }
    if (img.versionHash !== k.versionHash) {
      throw new RestoreError('kernel', record, offset,
        `kernel "${k.name}" differs: the image was saved running version ${k.versionHash}, this machine has ${img.versionHash}; refusing to restore it with other kernel text`);
    }
  }

  #p2mFrames(it: ItemOfType<'X86_PV_P2M_FRAMES'>): void {
    const at = it.offset + RECORD_HEADER.size;
    if (this.#domid !== undefined) throw new RestoreError('unsupported', it.type, it.offset, 'a second X86_PV_P2M_FRAMES record (a P2M that grows is not supported)');
    if (it.startPfn !== 0) throw new RestoreError('unsupported', it.type, at, `p2m_start_pfn is ${it.startPfn}: the P2M must start at pfn 0`);
    const maxPfn = it.endPfn + 1;
    if (maxPfn > P2M_TREE_MAX_PFNS) throw new RestoreError('pfn-out-of-range', it.type, at, `max_pfn ${hex(maxPfn)} exceeds what a 3-level P2M holds`);
    it.frames.forEach((f, i) => {
      const offset = at + X86_PV_P2M_FRAMES.size + 8 * i;
      if (f >= BigInt(maxPfn)) throw new RestoreError('pfn-out-of-range', it.type, offset, `P2M frame ${i} is pfn ${hex(f)}, not below max_pfn ${hex(maxPfn)}`);
      this.#frames.push({ value: Number(f), offset });
    });
    this.#maxPfn = maxPfn;
    this.#p2m = new Float64Array(maxPfn).fill(INVALID_MFN);
    this.#types = new Uint8Array(maxPfn).fill(UNSEEN);
    this.#dataAt = new Float64Array(maxPfn).fill(-1);
    this.#createDomain(it.offset);
  }

  #createDomain(offset: number): void {
    const k = this.#kernel;
    if (k === undefined) {
      throw new RestoreError('no-meta', 'X86_PV_P2M_FRAMES', offset,
        'the image does not say which kernel image it runs (no xenport metadata in an xl header): pass the kernel to restore it with');
    }
    this.#checkKernel('X86_PV_P2M_FRAMES', offset);
    this.#maxVcpus = this.opts.maxVcpus ?? vcpusOf(this.#config) ?? 1;
    const domid = this.m.xc.createDomain({ maxVcpus: this.#maxVcpus });
    if (domid < 0) throw new RestoreError('hypercall', 'X86_PV_P2M_FRAMES', offset, 'createdomain failed', domid);
    this.#domid = domid;
    const check = (rc: number, what: string): void => {
      if (rc < 0) throw new RestoreError('hypercall', 'X86_PV_P2M_FRAMES', offset, `${what} failed for the new domain ${domid}`, rc);
    };
    check(this.m.xc.setMaxMem(domid, this.#maxPfn * (PAGE_SIZE / 1024) + MAXMEM_SLACK_KB), 'max_mem');
    check(this.m.xc.setKernel(domid, k.name, k.versionHash), `set_kernel ${k.name}`);
    this.opts.onStep?.('domain created', `d${domid} (paused), max_pfn ${this.#maxPfn}, ${this.#maxVcpus} vCPU(s), kernel ${k.name}`, domid);
  }

  #pageData(it: ItemOfType<'PAGE_DATA'>): void {
    const domid = this.#domid;
    if (domid === undefined) return; // the parser refuses PAGE_DATA before X86_PV_P2M_FRAMES
    const fresh: number[] = [];
    // XALLOC: a frame without data (zeroed), as libxc populates it.
    for (const p of it.pages) if ((pageTypeHasData(p.type) || p.type === PageType.XALLOC) && this.#p2m[p.pfn]! < 0) fresh.push(p.pfn);
    if (fresh.length > 0) {
      const mfns = this.m.xc.populatePhysmap(domid, fresh);
      if (typeof mfns === 'number') {
        const free = this.m.xc.physinfo();
        const freeNote = typeof free === 'number' ? '' : ` (${free.freePages} frames free)`;
        throw new RestoreError('memory', it.type, it.offset, `populate_physmap of ${fresh.length} pfns failed${freeNote}: ${errnoName(mfns)}`, mfns);
      }
      fresh.forEach((pfn, i) => {
        this.#p2m[pfn] = mfns[i]!;
      });
    }
    let dataAt = it.offset + PAGE_WORDS_AT + 8 * it.pages.length;
    for (const p of it.pages) {
      this.#types[p.pfn] = p.type;
      if (p.data === undefined) continue;
      const mfn = this.#p2m[p.pfn]!;
      const f = this.m.xc.foreignFrame(domid, mfn, true);
      const rc = typeof f === 'number' ? f : f.write(0, p.data);
      if (rc < 0) throw new RestoreError('hypercall', it.type, dataAt, `writing pfn ${hex(p.pfn)} to mfn ${hex(mfn)} failed`, rc);
      this.#dataAt[p.pfn] = dataAt;
      this.#pages++;
      dataAt += PAGE_SIZE;
    }
    this.opts.progress?.(this.#pages);
  }

  /** Build the domain; `broken`: the checkpointed source broke (why), use the last complete checkpoint. */
  finish(broken?: string): RestoredDomain {
    const domid = this.#domid;
    if (broken !== undefined) {
      this.#held = [];
      this.opts.onStep?.('stream broken: failing over', `from checkpoint ${this.#checkpoints}: ${broken}`, domid);
    }
    if (domid === undefined || (!this.#end && broken === undefined)) throw new RestoreError('missing', 'END', 0, 'the stream ended without a complete libxc image');
    const sharedInfo = this.#sharedInfo;
    if (sharedInfo === undefined) throw new RestoreError('missing', 'SHARED_INFO', 0, 'no SHARED_INFO record');
    const state: RestoreState = {
      domid,
      maxPfn: this.#maxPfn,
      p2m: this.#p2m,
      types: this.#types,
      dataAt: this.#dataAt,
      frames: this.#frames,
      sharedInfo,
      vcpus: this.#vcpus,
    };
    const done = finishRestore(this.m, state, this.opts.onStep);
    let pages = 0;
    for (const mfn of this.#p2m) if (mfn >= 0) pages++;
    return {
      domid,
      ...(this.#config === undefined ? {} : { config: this.#config }),
      ...(this.#meta === undefined ? {} : { xenportMeta: this.#meta }),
      maxPfn: this.#maxPfn,
      pages,
      ...done,
      ...(this.opts.checkpointed === true
        ? { checkpoint: { n: this.#checkpoints, ended: broken === undefined ? 'end' as const : 'broken' as const, ...(broken === undefined ? {} : { why: broken }) } }
        : {}),
    };
  }

  /** Undo: destroy the domain (its frames, ports and grant table go with it). */
  abort(): void {
    const domid = this.#domid;
    this.#domid = undefined;
    if (domid !== undefined && this.m.xc.getDomainInfo(domid) !== undefined) this.m.xc.destroyDomain(domid);
  }
}

/** `vcpus = N` from an xl.cfg text, if it says so. */
function vcpusOf(cfg: XlConfig | undefined): number | undefined {
  if (cfg === undefined || cfg.format !== 'xl.cfg') return undefined;
  const match = /^\s*vcpus\s*=\s*"?(\d+)"?\s*(?:#.*)?$/m.exec(cfg.text);
  const n = match === null ? NaN : Number(match[1]);
  return Number.isInteger(n) && n >= 1 && n <= 128 ? n : undefined;
}

/*
 * Guest workloads: kernel threads that exercise the system and report
 * counters to the host (the demo and the save/restore tests watch them
 * carry on across a restore).
 *
 * Started from the command line: `workload=mem,clock` (any subset, comma
 * separated). init runs `workload_list`, which makes one lwp per name,
 * entered at the kernel symbol `workload_<name>` with its `struct workload`
 * as the argument, and then becomes the publisher. (A single name also
 * works through init's older path, `workload_<name>` run by init itself
 * with argument 0: a framework workload then hands over to workload_list
 * with `if (wl_from_init(cpu, arg)) return;`.)
 *
 * Writing a workload (blk, net, ...): export from a ksymtab linked into the
 * image (arch/xen/conf/files.xen.ts)
 *
 *   workload_blk(cpu, wl, _error) {           // first step; later steps get wl too
 *     if (wl_from_init(cpu, wl)) return;
 *     const c = wl_counter(cpu, wl, 'reads');  // register counters (-1: table full)
 *     const p = wl_private_alloc(cpu, wl, my_state.size);  // its own state (kmem, zeroed)
 *     const n = wl_param(cpu, 'blk_mb', 8, 1, 1024);       // `blk_mb=` on the command line
 *     wl_status(cpu, wl, 'running');
 *     kpause(cpu, 'blk', 1, 'blk_step');       // continuation style, as any lwp
 *   }
 *   blk_step(cpu, wl, _error) { wl_add(cpu, wl, 0, 1); ... }
 *
 * and counters appear, as decimal strings, at
 * `/local/domain/<domid>/data/workload/<name>/<counter>` (xenbus_publish),
 * along with `.../<name>/status`. The publisher writes every counter that
 * changed every WL_PUBLISH_TICKS (50 ms of guest time), everything again
 * after a restore (a new domain starts with an empty data/), and prints one
 * summary line per workload every `wl_summary=` seconds (default 5; 0:
 * never). A workload that gives up calls wl_fail (status "failed: why",
 * one console line) and ends its thread.
 *
 *   struct wl_counter {
 *       char     wc_name[24];
 *       uint64_t wc_value;
 *       uint64_t wc_published;        // value last written to xenstore
 *       uint32_t wc_flags;            // WCF_*
 *       uint32_t wc_pad;
 *   };
 *   struct workload {                 // one per running workload (kmem)
 *       struct tailq_entry wl_list;   // ws_workloads
 *       char     wl_name[16];
 *       struct wl_state *wl_state;
 *       void    *wl_private;          // the workload's own state (kmem), or 0
 *       uint32_t wl_private_size;
 *       uint32_t wl_ncounters;
 *       uint64_t wl_lwp;
 *       uint32_t wl_flags;            // WLF_*
 *       uint32_t wl_pad;
 *       char     wl_status[48];
 *       struct wl_counter wl_counters[WL_MAXCOUNTERS];
 *   };
 *   struct wl_state {                 // the framework (kmem); init's frame points at it
 *       struct tailq_entry ws_workloads;
 *       uint32_t ws_nworkloads;
 *       uint32_t ws_summary_ticks;    // 0: no summaries
 *       uint64_t ws_last_summary;     // tick of the last summary
 *       uint64_t ws_rounds;           // publisher rounds
 *       uint64_t ws_writes;           // xenstore writes queued
 *       uint64_t ws_generation;       // restores seen (xen_resume_generation)
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, record, array, u32, u64, char } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { lwp_create, lwp_frame } from '../kern/kern_lwp.js';
import { kpause } from '../kern/kern_synch.js';
import { kmem_zalloc } from '../kern/subr_kmem.js';
import { getticks } from '../kern/kern_clock.js';
import { printf, panic } from '../kern/subr_prf.js';
import { tailq_entry, TAILQ_INIT, TAILQ_INSERT_TAIL, TAILQ_FIRST, TAILQ_NEXT } from '../sys/queue.js';
import { HZ } from '../sys/param.js';
import { kstr_get, ptr_get, ptr_set, strlcpy, vptr, vptr_set } from '../lib/libkern/libkern.js';
import { xen_workload, xen_cmdline_value, ksymlookup } from '../../arch/xen/xen/xen_machdep.js';
import { xenbus_publish } from '../../arch/xen/xenbus/xenbus_dev.js';
import { xen_suspending, xen_suspend_park, xen_resume_generation } from '../../arch/xen/xen/xen_suspend.js';

export const WL_NAMELEN = 16;
export const WL_CNAMELEN = 24;
export const WL_STATUSLEN = 48;
export const WL_MAXCOUNTERS = 12;
/** Publisher period: every changed counter reaches xenstore within this many ticks (50 ms). */
export const WL_PUBLISH_TICKS = 5;
export const WL_SUMMARY_DEFAULT_S = 5;
/** Where counters go, under data/. */
export const WL_DATA_DIR = 'workload';

export const wl_counter_t = struct('struct wl_counter', {
  wc_name: array(char, WL_CNAMELEN),
  wc_value: u64,
  wc_published: u64,
  wc_flags: u32,
  wc_pad: u32,
});

/* wc_flags */
/** Written to xenstore at least once. */
export const WCF_PUBLISHED = 0x1;

export const workload_t = struct('struct workload', {
  wl_list: record(tailq_entry),
  wl_name: array(char, WL_NAMELEN),
  wl_state: u64,
  wl_private: u64,
  wl_private_size: u32,
  wl_ncounters: u32,
  wl_lwp: u64,
  wl_flags: u32,
  wl_pad: u32,
  wl_status: array(char, WL_STATUSLEN),
  wl_counters: array(record(wl_counter_t), WL_MAXCOUNTERS),
});

/* wl_flags */
/** wl_status changed since it was last published. */
export const WLF_STATUS_DIRTY = 0x1;

export const wl_state_t = struct('struct wl_state', {
  ws_workloads: record(tailq_entry),
  ws_nworkloads: u32,
  ws_summary_ticks: u32,
  ws_last_summary: u64,
  ws_rounds: u64,
  ws_writes: u64,
  ws_generation: u64,
});

const WL_LIST = workload_t.offsetOf('wl_list');
const NAME_RE = /^[a-z0-9_]{1,15}$/;

function wl_view(cpu: GuestCpu, wl: number) {
  return workload_t.view(cpu.mem, wl);
}

/** The workload names on the command line, in order, once each. */
export function wl_names(cpu: GuestCpu): string[] {
  const out: string[] = [];
  for (const n of xen_workload(cpu).split(',')) if (n !== '' && !out.includes(n)) out.push(n);
  return out;
}

/**
 * init's step for `workload=a,b,...`: one lwp per workload, then init
 * becomes the publisher.
 */
export function workload_list(cpu: GuestCpu, _arg: number, _error: number): void {
  const st = kmem_zalloc(cpu, wl_state_t.size);
  if (st === 0) panic(cpu, 'workload_list: no memory');
  const sv = wl_state_t.view(cpu.mem, st);
  TAILQ_INIT(cpu.mem, sv.addr('ws_workloads'));
  sv.set('ws_summary_ticks', wl_param(cpu, 'wl_summary', WL_SUMMARY_DEFAULT_S, 0, 86400) * HZ);
  sv.set('ws_last_summary', BigInt(getticks(cpu)));
  sv.set('ws_generation', BigInt(xen_resume_generation(cpu)));
  const started: string[] = [];
  for (const name of wl_names(cpu)) {
    const sym = NAME_RE.test(name) ? ksymlookup(cpu, `workload_${name}`) : 0;
    if (sym === 0) {
      printf(cpu, 'workload: no workload "%s" in this kernel\n', name);
      continue;
    }
    const wl = kmem_zalloc(cpu, workload_t.size);
    if (wl === 0) {
      printf(cpu, 'workload: no memory for %s\n', name);
      continue;
    }
    const v = wl_view(cpu, wl);
    v.setString('wl_name', name);
    vptr_set(v, 'wl_state', st);
    wl_status(cpu, wl, 'starting');
    const l = lwp_create(cpu, name, sym, wl);
    if (l === 0) {
      printf(cpu, 'workload: no memory for the %s thread\n', name);
      continue;
    }
    vptr_set(v, 'wl_lwp', l);
    TAILQ_INSERT_TAIL(cpu.mem, sv.addr('ws_workloads'), wl + WL_LIST);
    sv.set('ws_nworkloads', sv.get('ws_nworkloads') + 1);
    started.push(name);
  }
  printf(cpu, 'workload: started %s\n', started.length === 0 ? '(none)' : started.join(', '));
  ptr_set(cpu.mem, lwp_frame(cpu), st);
  kpause(cpu, 'wlpub', WL_PUBLISH_TICKS, 'wl_publisher');
}

/**
 * For a workload's first step: true when init ran it directly (argument
 * 0, the single-name path); the framework has then taken over and the
 * caller must return.
 */
export function wl_from_init(cpu: GuestCpu, arg: number): boolean {
  if (arg !== 0) return false;
  workload_list(cpu, 0, 0);
  return true;
}

/** The workloads running (their struct workload addresses). */
export function wl_list(cpu: GuestCpu, st: number): number[] {
  const out: number[] = [];
  const head = wl_state_t.view(cpu.mem, st).addr('ws_workloads');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) out.push(link - WL_LIST);
  return out;
}

/** The publisher (init): write what changed, summarise now and then. */
export function wl_publisher(cpu: GuestCpu, _arg: number, _error: number): void {
  if (xen_suspending(cpu)) {
    xen_suspend_park(cpu, 'wl_publisher');
    return;
  }
  const st = ptr_get(cpu.mem, lwp_frame(cpu));
  const sv = wl_state_t.view(cpu.mem, st);
  const gen = BigInt(xen_resume_generation(cpu));
  if (gen !== sv.get('ws_generation')) {
    sv.set('ws_generation', gen);
    for (const wl of wl_list(cpu, st)) wl_unpublished(cpu, wl);
  }
  for (const wl of wl_list(cpu, st)) wl_publish(cpu, wl);
  sv.set('ws_rounds', sv.get('ws_rounds') + 1n);
  const every = sv.get('ws_summary_ticks');
  const now = getticks(cpu);
  if (every > 0 && now - Number(sv.get('ws_last_summary')) >= every) {
    sv.set('ws_last_summary', BigInt(now));
    for (const wl of wl_list(cpu, st)) printf(cpu, '%s\n', wl_summary(cpu, wl));
  }
  kpause(cpu, 'wlpub', WL_PUBLISH_TICKS, 'wl_publisher');
}

/** Forget what was published of `wl`: the next round writes everything. */
export function wl_unpublished(cpu: GuestCpu, wl: number): void {
  const v = wl_view(cpu, wl);
  v.set('wl_flags', v.get('wl_flags') | WLF_STATUS_DIRTY);
  for (let i = 0; i < v.get('wl_ncounters'); i++) {
    const c = v.sub('wl_counters', i);
    c.set('wc_flags', c.get('wc_flags') & ~WCF_PUBLISHED);
  }
}

/** Write one workload's changed counters (and status) to data/workload/<name>/. */
export function wl_publish(cpu: GuestCpu, wl: number): void {
  const v = wl_view(cpu, wl);
  const sv = wl_state_t.view(cpu.mem, vptr(v, 'wl_state'));
  const name = v.getString('wl_name');
  let writes = 0;
  if ((v.get('wl_flags') & WLF_STATUS_DIRTY) !== 0) {
    if (xenbus_publish(cpu, `${WL_DATA_DIR}/${name}/status`, v.getString('wl_status')) === 0) {
      v.set('wl_flags', v.get('wl_flags') & ~WLF_STATUS_DIRTY);
      writes++;
    }
  }
  const n = v.get('wl_ncounters');
  for (let i = 0; i < n; i++) {
    const c = v.sub('wl_counters', i);
    const value = c.get('wc_value');
    if ((c.get('wc_flags') & WCF_PUBLISHED) !== 0 && c.get('wc_published') === value) continue;
    if (xenbus_publish(cpu, `${WL_DATA_DIR}/${name}/${c.getString('wc_name')}`, value.toString()) !== 0) continue;
    c.set('wc_published', value);
    c.set('wc_flags', c.get('wc_flags') | WCF_PUBLISHED);
    writes++;
  }
  sv.set('ws_writes', sv.get('ws_writes') + BigInt(writes));
}

/** "workload mem: running, passes 3, errors 0" */
export function wl_summary(cpu: GuestCpu, wl: number): string {
  const v = wl_view(cpu, wl);
  const parts = [`workload ${v.getString('wl_name')}: ${v.getString('wl_status')}`];
  for (let i = 0; i < v.get('wl_ncounters'); i++) {
    const c = v.sub('wl_counters', i);
    parts.push(`${c.getString('wc_name')} ${c.get('wc_value')}`);
  }
  return parts.join(', ');
}

// ---------------------------------------------------------------------------
// What a workload uses

/** Index of counter `name` of `wl`, registering it (value 0) the first time; -1 when the table is full or the name bad. */
export function wl_counter(cpu: GuestCpu, wl: number, name: string): number {
  const v = wl_view(cpu, wl);
  const n = v.get('wl_ncounters');
  for (let i = 0; i < n; i++) if (v.sub('wl_counters', i).getString('wc_name') === name) return i;
  if (n >= WL_MAXCOUNTERS || !/^[a-z0-9_]{1,23}$/.test(name)) return -1;
  const c = v.sub('wl_counters', n);
  c.setString('wc_name', name);
  c.set('wc_value', 0n);
  c.set('wc_flags', 0);
  v.set('wl_ncounters', n + 1);
  return n;
}

function wl_counter_view(cpu: GuestCpu, wl: number, idx: number) {
  const v = wl_view(cpu, wl);
  if (!(Number.isInteger(idx) && idx >= 0 && idx < v.get('wl_ncounters'))) panic(cpu, 'workload %s: no counter %d', v.getString('wl_name'), idx);
  return v.sub('wl_counters', idx);
}

export function wl_get(cpu: GuestCpu, wl: number, idx: number): bigint {
  return wl_counter_view(cpu, wl, idx).get('wc_value');
}

export function wl_set(cpu: GuestCpu, wl: number, idx: number, value: number | bigint): void {
  wl_counter_view(cpu, wl, idx).set('wc_value', BigInt.asUintN(64, BigInt(value)));
}

export function wl_add(cpu: GuestCpu, wl: number, idx: number, n: number | bigint = 1): void {
  const c = wl_counter_view(cpu, wl, idx);
  c.set('wc_value', BigInt.asUintN(64, c.get('wc_value') + BigInt(n)));
}

/** Raise counter `idx` to `value` if it is below. */
export function wl_max(cpu: GuestCpu, wl: number, idx: number, value: number | bigint): void {
  const c = wl_counter_view(cpu, wl, idx);
  const b = BigInt(value);
  if (b > c.get('wc_value')) c.set('wc_value', BigInt.asUintN(64, b));
}

/** The workload's status line, published as data/workload/<name>/status. */
export function wl_status(cpu: GuestCpu, wl: number, status: string): void {
  const v = wl_view(cpu, wl);
  strlcpy(cpu.mem, v.addr('wl_status'), status, WL_STATUSLEN);
  v.set('wl_flags', v.get('wl_flags') | WLF_STATUS_DIRTY);
}

/** Give up: status "failed: why", a console line; the caller ends its thread (returns without a next step). */
export function wl_fail(cpu: GuestCpu, wl: number, why: string): void {
  printf(cpu, 'workload %s: %s\n', wl_name(cpu, wl), why);
  wl_status(cpu, wl, `failed: ${why}`);
}

export function wl_name(cpu: GuestCpu, wl: number): string {
  return kstr_get(cpu.mem, wl_view(cpu, wl).addr('wl_name'), WL_NAMELEN);
}

/** The workload's own state block (0 before wl_private_alloc). */
export function wl_private(cpu: GuestCpu, wl: number): number {
  return vptr(wl_view(cpu, wl), 'wl_private');
}

/** Allocate (zeroed) the workload's own state block; 0 when memory is short. */
export function wl_private_alloc(cpu: GuestCpu, wl: number, size: number): number {
  const v = wl_view(cpu, wl);
  const have = vptr(v, 'wl_private');
  if (have !== 0) return have;
  const p = kmem_zalloc(cpu, size);
  vptr_set(v, 'wl_private', p);
  v.set('wl_private_size', p === 0 ? 0 : size);
  return p;
}

/** Integer `key=` from the command line, `dflt` when absent or not an integer in [min, max] (said once on the console). */
export function wl_param(cpu: GuestCpu, key: string, dflt: number, min: number, max: number): number {
  const s = xen_cmdline_value(cpu, key);
  if (s === undefined) return dflt;
  const n = /^[0-9]{1,12}$/.test(s) ? Number(s) : NaN;
  if (!(n >= min && n <= max)) {
    printf(cpu, 'workload: %s=%s is not an integer in %d..%d; using %d\n', key, s, min, max, dflt);
    return dflt;
  }
  return n;
}

export const workload_ksyms = ksymtab({
  wl_view, wl_names, workload_list, wl_from_init, wl_list, wl_publisher, wl_unpublished, wl_publish, wl_summary, wl_counter,
  wl_counter_view, wl_get, wl_set, wl_add, wl_max, wl_status, wl_fail, wl_name, wl_private, wl_private_alloc, wl_param,
});

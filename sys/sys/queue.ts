/*
 * Intrusive doubly-linked lists in guest memory (the shape of <sys/queue.h>).
 *
 * Every list element embeds a `struct tailq_entry` (two pointers) and every
 * list head is one too: the head is a sentinel, so the list is circular and
 * insert/remove never special-case the ends (like CIRCLEQ with a sentinel,
 * which is what TAILQ effectively is once `tqe_prev` points at links).
 *
 * Pointers hold the address of the *link* (the embedded entry), not of the
 * containing struct; the container is `link - offsetof(struct, member)`.
 * An entry that is on no list has both pointers zero, so "is it queued?" is
 * a memory read, not a flag someone could forget to update.
 *
 *   struct tailq_entry {
 *       struct tailq_entry *tqe_next;   // next link, or the head at the end
 *       struct tailq_entry *tqe_prev;   // previous link, or the head at the start
 *   };
 */
import { struct, u64, type MemView } from '../../hypervisor/public/layout.js';
import { ptr_get, ptr_set } from '../lib/libkern/libkern.js';

export const tailq_entry = struct('struct tailq_entry', {
  tqe_next: u64,
  tqe_prev: u64,
});

const NEXT = tailq_entry.offsetOf('tqe_next');
const PREV = tailq_entry.offsetOf('tqe_prev');

/** An empty list: the head points at itself both ways. */
export function TAILQ_INIT(mem: MemView, head: number): void {
  ptr_set(mem, head + NEXT, head);
  ptr_set(mem, head + PREV, head);
}

export function TAILQ_EMPTY(mem: MemView, head: number): boolean {
  return ptr_get(mem, head + NEXT) === head;
}

/** First link, or 0 when empty. */
export function TAILQ_FIRST(mem: MemView, head: number): number {
  const n = ptr_get(mem, head + NEXT);
  return n === head ? 0 : n;
}

/** Last link, or 0 when empty. */
export function TAILQ_LAST(mem: MemView, head: number): number {
  const p = ptr_get(mem, head + PREV);
  return p === head ? 0 : p;
}

/** Link after `link`, or 0 at the end. */
export function TAILQ_NEXT(mem: MemView, head: number, link: number): number {
  const n = ptr_get(mem, link + NEXT);
  return n === head ? 0 : n;
}

/** Link before `link`, or 0 at the start. */
export function TAILQ_PREV(mem: MemView, head: number, link: number): number {
  const p = ptr_get(mem, link + PREV);
  return p === head ? 0 : p;
}

/** Is the entry on some list? */
export function TAILQ_ONLIST(mem: MemView, link: number): boolean {
  return ptr_get(mem, link + NEXT) !== 0;
}

function insertBetween(mem: MemView, link: number, prev: number, next: number): void {
  ptr_set(mem, link + NEXT, next);
  ptr_set(mem, link + PREV, prev);
  ptr_set(mem, prev + NEXT, link);
  ptr_set(mem, next + PREV, link);
}

export function TAILQ_INSERT_TAIL(mem: MemView, head: number, link: number): void {
  insertBetween(mem, link, ptr_get(mem, head + PREV), head);
}

export function TAILQ_INSERT_HEAD(mem: MemView, head: number, link: number): void {
  insertBetween(mem, link, head, ptr_get(mem, head + NEXT));
}

/** Insert `link` just before `listelm` (which may be the head: then at the tail). */
export function TAILQ_INSERT_BEFORE(mem: MemView, listelm: number, link: number): void {
  insertBetween(mem, link, ptr_get(mem, listelm + PREV), listelm);
}

/** Unlink `link` from whatever list it is on, leaving it zeroed. */
export function TAILQ_REMOVE(mem: MemView, link: number): void {
  const next = ptr_get(mem, link + NEXT);
  const prev = ptr_get(mem, link + PREV);
  ptr_set(mem, prev + NEXT, next);
  ptr_set(mem, next + PREV, prev);
  ptr_set(mem, link + NEXT, 0);
  ptr_set(mem, link + PREV, 0);
}

/** Number of entries (walks the list). */
export function TAILQ_COUNT(mem: MemView, head: number): number {
  let n = 0;
  for (let l = TAILQ_FIRST(mem, head); l !== 0; l = TAILQ_NEXT(mem, head, l)) n++;
  return n;
}

export const queue_ksyms = Object.freeze({
  TAILQ_INIT, TAILQ_EMPTY, TAILQ_FIRST, TAILQ_LAST, TAILQ_NEXT, TAILQ_PREV, TAILQ_ONLIST,
  insertBetween, TAILQ_INSERT_TAIL, TAILQ_INSERT_HEAD, TAILQ_INSERT_BEFORE, TAILQ_REMOVE, TAILQ_COUNT,
});

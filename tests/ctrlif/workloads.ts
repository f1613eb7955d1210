/*
 * Guest workloads for the ctrl_if tests, linked into a netbsd image
 * (defineNetbsdImage) and run by init from `workload=<name>`. State in
 * guest memory (lwp frames), continuation style; they report on the
 * console, which the tests read.
 *
 *   ctrlif_send    CTRLIF_SENDERS lwps, each sending one request of type
 *                  CTRLIF_TEST_TYPE (subtype = its number, payload = its
 *                  number three times) with ctrl_if_send and printing the
 *                  answer; then CTRLIF_LINES console lines in ONE step with
 *                  ctrl_if_send_async (CMSG_CONSOLE), more than the ring
 *                  holds; then the driver's counters.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { CMSG_CONSOLE, CMSG_CONSOLE_DATA } from '../../hypervisor/public/domain_controller.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create } from '../../sys/kern/kern_lwp.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import type { LinkedKernelImage } from '../../arch/xen/conf/image.js';
import { ctrl_if_softc_of } from '../../arch/xen/xen/ctrl_if_var.js';
import { ctrl_if_stats } from '../../arch/xen/xen/ctrl_if.js';
import { ctrl_if_send, ctrl_if_result, ctrl_if_send_async } from '../../arch/xen/xen/ctrl_if_tx.js';

export const CTRLIF_TEST_TYPE = 0x42;
export const CTRLIF_SENDERS = 12;
export const CTRLIF_LINES = 20;

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

function stats(cpu: GuestCpu): string {
  const s = ctrl_if_stats(cpu, ctrl_if_softc_of(cpu));
  return `sent ${s.txSent} answered ${s.txAnswered} waited ${s.txWaited} maxinflight ${s.txMaxInflight} maxqueued ${s.txMaxQueued}`;
}

export const ctrlifWorkloads = ksymtab({
  workload_ctrlif_send(cpu: GuestCpu, _arg: number, _error: number): void {
    for (let i = 1; i <= CTRLIF_SENDERS; i++) lwp_create(cpu, `sender${i}`, 'ctrlif_sender', i);
    printf(cpu, 'ctrlif_send: %u senders\n', CTRLIF_SENDERS);
    kpause(cpu, 'ctrlif', 50, 'ctrlif_lines');
  },
  ctrlif_sender(cpu: GuestCpu, i: number, _error: number): void {
    ctrl_if_send(cpu, CTRLIF_TEST_TYPE, i, Uint8Array.of(i, i, i), 'ctrlif_sender_done');
  },
  ctrlif_sender_done(cpu: GuestCpu, i: number, _error: number): void {
    const r = ctrl_if_result(cpu);
    printf(cpu, 'ctrlif_send: sender %u answered: error %d type %u subtype %u payload %s\n', i, r.error, r.type, r.subtype, hex(r.payload));
  },
  ctrlif_lines(cpu: GuestCpu, _arg: number, _error: number): void {
    printf(cpu, 'ctrlif_send: before the lines: %s\n', stats(cpu));
    let refused = 0;
    for (let i = 0; i < CTRLIF_LINES; i++) {
      const line = `ctrl_if line ${i.toString().padStart(2, '0')}\n`;
      const bytes = Uint8Array.from(line, (c) => c.charCodeAt(0));
      if (ctrl_if_send_async(cpu, CMSG_CONSOLE, CMSG_CONSOLE_DATA, bytes) !== 0) refused++;
    }
    printf(cpu, 'ctrlif_send: %u lines queued, %u refused: %s\n', CTRLIF_LINES - refused, refused, stats(cpu));
    kpause(cpu, 'ctrlif', 20, 'ctrlif_report');
  },
  ctrlif_report(cpu: GuestCpu, _arg: number, _error: number): void {
    printf(cpu, 'ctrlif_send: done: %s\n', stats(cpu));
  },
});

export function ctrlifImage(): LinkedKernelImage {
  return defineNetbsdImage([ctrlifWorkloads], 'netbsd-ctrlif');
}

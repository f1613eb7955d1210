/*
 * Observability: one `debug` namespace per subsystem, and the machine's
 * logs: the hypervisor console ring (`xl dmesg`, sysctl readconsole), each
 * domain's console_io output, and a record of hypervisor bugs caught at the
 * guest boundary (tests assert it stays empty).
 *
 * `DEBUG=xen:hypercall,xen:sched` prints the protocol as it runs.
 */
import createDebug from 'debug';

export const dbg = Object.freeze({
  hypercall: createDebug('xen:hypercall'),
  evtchn: createDebug('xen:evtchn'),
  gnttab: createDebug('xen:gnttab'),
  mm: createDebug('xen:mm'),
  sched: createDebug('xen:sched'),
  domctl: createDebug('xen:domctl'),
  console: createDebug('xen:console'),
  machine: createDebug('xen:machine'),
  trace: createDebug('xen:trace'),
});

/** Bytes the console ring keeps (Xen's default conring is 16 KiB; ours is larger). */
const CONRING_BYTES = 256 * 1024;
/** Bytes of each domain's console_io output kept in memory. */
const DOMAIN_CONSOLE_BYTES = 256 * 1024;

export class MachineLog {
  private conring = '';
  /** Bytes ever written to the console ring (indexes for incremental reads). */
  private conringEnd = 0;
  private readonly consoles = new Map<number, string>();
  private readonly partialLine = new Map<number, string>();
  private input = '';
  /** Hypervisor bugs caught at the guest boundary (should stay empty). */
  readonly bugs: string[] = [];
  /** Extra listener for console output (the machine daemon writes log files). */
  onConsole: ((domid: number, text: string) => void) | null = null;

  /** A hypervisor message: to the console ring as `(XEN) ...`. */
  xen(msg: string): void {
    dbg.machine('%s', msg);
    this.appendRing(`(XEN) ${msg}\n`);
  }

  /** A hypervisor bug caught at the guest boundary: logged and remembered. */
  bug(msg: string): void {
    this.bugs.push(msg);
    this.xen(`BUG: ${msg}`);
  }

  /** console_io write from `domid`: the domain's console and `(dN) ` lines in the ring. */
  guestWrite(domid: number, text: string): void {
    dbg.console('d%d: %s', domid, text);
    const prev = this.consoles.get(domid) ?? '';
    this.consoles.set(domid, trimTo(prev + text, DOMAIN_CONSOLE_BYTES));
    // The ring gets whole lines, prefixed with the domain, as Xen prints them.
    const pending = (this.partialLine.get(domid) ?? '') + text;
    const lines = pending.split('\n');
    this.partialLine.set(domid, lines.pop() ?? '');
    for (const l of lines) this.appendRing(`(d${domid}) ${l}\n`);
    this.onConsole?.(domid, text);
  }

  /** Everything domain `domid` wrote with console_io (most recent 256 KiB). */
  console(domid: number): string {
    return this.consoles.get(domid) ?? '';
  }

  /** The console ring as `xl dmesg` shows it. */
  ring(): string {
    return this.conring;
  }

  /**
   * Read the ring from byte index `from` (Xen's incremental readconsole).
   * Returns the text and the index to continue from.
   */
  readRing(from: number | undefined, max: number): { text: string; end: number } {
    const start = this.conringEnd - this.conring.length;
    const at = from === undefined ? start : Math.max(from, start);
    const text = this.conring.slice(at - start, at - start + Math.max(0, max));
    return { text, end: at + text.length };
  }

  clearRing(): void {
    this.conring = '';
  }

  /** Host keyboard input for dom0's CONSOLEIO_read. */
  pushInput(text: string): void {
    this.input += text;
  }

  takeInput(max: number): string {
    const out = this.input.slice(0, max);
    this.input = this.input.slice(out.length);
    return out;
  }

  private appendRing(s: string): void {
    this.conring = trimTo(this.conring + s, CONRING_BYTES);
    this.conringEnd += s.length;
  }
}

function trimTo(s: string, max: number): string {
  return s.length > max ? s.slice(s.length - max) : s;
}

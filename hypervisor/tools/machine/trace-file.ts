/*
 * The machine's protocol trace (hypervisor/xen/trace.ts) on the host side:
 * xenstored's requests fed into it (xenstoredTraceTap), and
 * `<dir>/trace.jsonl`, the records as JSON lines, one per line, appended
 * as the daemon flushes its logs. A gap in `seq` means records fell out of
 * the trace's buffer between two flushes.
 */
import fs from 'node:fs';
import { traceLine, type Trace } from '../../xen/trace.js';
import { XsRequestTracer } from '../xenstored/xs-trace.js';
import type { XsMsg } from '../xenstored/wire.js';

export const TRACE_FILE = 'trace.jsonl';

export class TraceFile {
  private next = 0;
  private readonly fd: number;

  constructor(path: string, private readonly trace: Trace) {
    this.fd = fs.openSync(path, 'a');
  }

  /** Append the records made since the last flush. */
  flush(): void {
    const rs = this.trace.records({ since: this.next });
    if (rs.length === 0) return;
    this.next = rs[rs.length - 1]!.seq + 1;
    fs.writeSync(this.fd, rs.map((r) => `${traceLine(r)}\n`).join(''));
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
  }
}

/** xenstored's `onRequest` hook: requests of interest as 'xenstored' records, while the trace is on. */
export function xenstoredTraceTap(trace: Trace): (from: number, msg: XsMsg) => void {
  const tracer = new XsRequestTracer((domid, event, detail) => {
    trace.record(domid, 'xenstored', event, detail);
  });
  return (from, msg) => {
    if (trace.enabled) tracer.observe(from, msg);
  };
}

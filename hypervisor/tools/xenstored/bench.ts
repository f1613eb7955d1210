/*
 * xenstored benchmark: operations per second for READ, WRITE, DIRECTORY and
 * a watch round trip (write a node, wait for the watch event), run by the
 * same client loop over the unix socket and over a domain ring. To be wired
 * into `make bench`:
 *   import { benchXenstored } from '.../xenstored/bench.js';
 *   for (const r of await benchXenstored()) console.log(r);
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { bytesMem } from '../../public/layout.js';
import { domid as toDomId } from '../../public/types.js';
import { XsClient, connectSocketClient } from './client.js';
import { XS_RING_PAGE_BYTES } from './ring.js';
import { XsRingFront } from './ring_front.js';
import { Xenstored, startXenstored } from './server.js';

export type BenchOp = 'read' | 'write' | 'directory' | 'watch';

export interface BenchResult {
  readonly transport: 'socket' | 'ring';
  readonly op: BenchOp;
  readonly ops: number;
  readonly seconds: number;
  readonly opsPerSec: number;
}

export interface BenchOptions {
  /** Operations per measurement (default 2000). */
  readonly iterations?: number;
}

const OPS: readonly BenchOp[] = ['read', 'write', 'directory', 'watch'];

/** The client loop both transports run: `base` is a directory the client may write. */
async function measure(client: XsClient, base: string, op: BenchOp, n: number): Promise<number> {
  await client.write(`${base}/value`, 'v'.repeat(64));
  for (let i = 0; i < 16; i++) await client.write(`${base}/dir/entry-${i}`, '');
  if (op === 'watch') {
    await client.watch(`${base}/watched`, 'bench');
    await client.nextEvent();
  }
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    switch (op) {
      case 'read':
        await client.read(`${base}/value`);
        break;
      case 'write':
        await client.write(`${base}/value`, String(i));
        break;
      case 'directory':
        await client.directory(`${base}/dir`);
        break;
      case 'watch':
        await client.write(`${base}/watched`, String(i));
        await client.nextEvent();
        break;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (op === 'watch') await client.unwatch(`${base}/watched`, 'bench');
  return seconds;
}

function result(transport: BenchResult['transport'], op: BenchOp, ops: number, seconds: number): BenchResult {
  return { transport, op, ops, seconds, opsPerSec: seconds > 0 ? ops / seconds : Infinity };
}

async function overSocket(n: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'xenstored-bench-'));
  const handle = await startXenstored({ socketPath: join(dir, 'xenstored.sock') });
  const client = await connectSocketClient(handle.socketPath);
  try {
    const out: BenchResult[] = [];
    for (const op of OPS) out.push(result('socket', op, n, await measure(client, '/bench', op, n)));
    return out;
  } finally {
    client.close();
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function overRing(n: number): Promise<BenchResult[]> {
  const domid = toDomId(1);
  const mem = bytesMem(new Uint8Array(XS_RING_PAGE_BYTES));
  let front: XsRingFront | undefined;
  const xs = new Xenstored({ mapRing: () => ({ mem, base: 0, notify: () => front?.notified() }) });
  const dom0 = new XsClient((m) => port.send(m));
  const port = xs.connectLocal((m) => dom0.receive(m));
  front = new XsRingFront(mem, 0, () => xs.ringOf(domid)?.kick());
  const guest = new XsClient((m) => front?.send(m));
  front.onMessage = (m) => guest.receive(m);
  await dom0.mkdir(`/local/domain/${domid}`);
  await dom0.setPerms(`/local/domain/${domid}`, [`n${domid}`]);
  await dom0.introduce(domid, 1, 1);
  const out: BenchResult[] = [];
  for (const op of OPS) out.push(result('ring', op, n, await measure(guest, 'bench', op, n)));
  xs.close();
  return out;
}

export async function benchXenstored(opts: BenchOptions = {}): Promise<BenchResult[]> {
  const n = opts.iterations ?? 2000;
  return [...(await overSocket(n)), ...(await overRing(n))];
}

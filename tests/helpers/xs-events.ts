/*
 * Waiting on real machine daemons without sleeping. A condition is checked
 * again each time xenstored on a watched machine reports a change (Debian's
 * xenstore-watch on /local/domain over the daemon's xenstored.sock; a
 * running guest publishes its workload counters every 50 ms of guest time,
 * and domains coming and going write and remove nodes), and a deadline
 * bounds the wait. A missing xenstore-watch fails the wait.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';

const changes = new EventEmitter();
const watchers = new Map<string, ChildProcess>();

/** Start watching the machine at `dir`; returns the function that stops it. */
export function watchMachine(dir: string): () => void {
  const have = watchers.get(dir);
  if (have !== undefined) return () => undefined;
  const w = spawn('xenstore-watch', ['/local/domain'], {
    env: { ...process.env, XENSTORED_PATH: join(dir, 'xenstored.sock') },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  w.on('error', (e) => changes.emit('failed', new Error(`xenstore-watch (Debian xenstore-utils) could not run: ${e.message}`)));
  w.stdout!.on('data', () => changes.emit('change'));
  w.on('exit', () => {
    if (watchers.get(dir) === w) watchers.delete(dir);
    changes.emit('change');
  });
  watchers.set(dir, w);
  return () => {
    watchers.delete(dir);
    w.kill();
  };
}

/** The next change on any watched machine, or the deadline, whichever comes first. */
function nextChange(deadline: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      changes.off('change', done);
      changes.off('failed', fail);
      resolve();
    };
    const fail = (e: Error): void => {
      clearTimeout(timer);
      changes.off('change', done);
      reject(e);
    };
    const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
    changes.once('change', done);
    changes.once('failed', fail);
  });
}

/** Check `probe` now and after every change until it returns a value; give up after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw new Error(`gave up waiting for ${what} after ${ms} ms`);
    await nextChange(deadline);
  }
}

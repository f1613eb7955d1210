/*
 * Waiting for a guest to suspend, as libxl does after asking it (by
 * xenstore control/shutdown, the suspend event channel or ctrl_if): the
 * toolstack is told that *some* domain changed state through VIRQ_DOM_EXC
 * and looks with getdomaininfo whether this one is now shut down with
 * SHUTDOWN_suspend. A timeout (in the machine's system time) ends the wait
 * with a WaitError and leaves the domain alone: it keeps running.
 *
 * On a simulated clock nothing moves unless someone runs the machine; by
 * default the wait does (in slices, yielding to the host's event loop in
 * between so that xenstored and backends make progress), so a test or a
 * script can simply await it. The realtime daemon runs its machine itself.
 */
import { VIRQ_DOM_EXC } from '../../public/xen.js';
import { SHUTDOWN_suspend } from '../../public/sched.js';
import { errnoName } from '../../public/errno.js';
import type { Machine } from '../../xen/machine.js';
import type { DomainInfo } from '../../xen/toolstack.js';
import { Timer } from '../../xen/time.js';
import { shutdownReasonName } from '../../xen/lifecycle.js';
import { WaitError } from './errors.js';
import type { StepListener } from '../../xen/trace.js';

export type WaitMachine = Pick<Machine, 'xc' | 'clock' | 'timers' | 'step' | 'poke' | 'onDom0Event'>;

/** Who tells the toolstack that a domain changed state (VIRQ_DOM_EXC). */
export interface DomExcSource {
  /** Run `listener` after each VIRQ_DOM_EXC (between guest entries); returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
}

const sources = new WeakMap<object, DomExcSource>();

/**
 * dom0's VIRQ_DOM_EXC on `m`, bound once per machine and shared by every
 * waiter. A negative errno when dom0 cannot bind it, typically because
 * other host code (the machine host) already did: that code should then
 * offer its own DomExcSource.
 */
export function domExcSource(m: Pick<Machine, 'xc' | 'onDom0Event'>): DomExcSource | number {
  const known = sources.get(m);
  if (known !== undefined) return known;
  const port = m.xc.bindVirq(VIRQ_DOM_EXC);
  if (port < 0) return port;
  const listeners = new Set<() => void>();
  m.onDom0Event(port, () => {
    for (const l of [...listeners]) l();
  });
  const src: DomExcSource = {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  sources.set(m, src);
  return src;
}

export interface WaitOptions {
  /** Where VIRQ_DOM_EXC comes from (default: bind it, see domExcSource). */
  readonly domExc?: DomExcSource;
  /**
   * Who runs the machine meanwhile: 'auto' (default) runs it here when its
   * clock is simulated and leaves a realtime machine to its own loop;
   * 'none' never runs it.
   */
  readonly drive?: 'auto' | 'none';
  /** Told when the suspend is seen (the machine's trace: `m.trace.steps(domid)`). */
  readonly onStep?: StepListener;
}

/** Guest entries run per slice before the wait yields to the host's event loop. */
const SLICE = 2000;

/**
 * Resolve with the domain's info once it is shut down with SHUTDOWN_suspend;
 * reject with a WaitError after `timeoutNs` of system time (the domain is
 * left running), when it shuts down for another reason, or when it vanishes.
 */
export async function waitForSuspend(m: WaitMachine, domid: number, timeoutNs: number, opts: WaitOptions = {}): Promise<DomainInfo> {
  const look = (): DomainInfo | WaitError | undefined => {
    const i = m.xc.getDomainInfo(domid);
    if (i === undefined || i.dying) return new WaitError('no-domain', domid, 'the domain is gone');
    if (!i.shutdown) return undefined;
    if (i.shutdownReason === SHUTDOWN_suspend) return i;
    return new WaitError('wrong-shutdown', domid, `the domain shut down (${shutdownReasonName(i.shutdownReason ?? -1)}) instead of suspending`);
  };
  const seen = (i: DomainInfo, how: string): DomainInfo => {
    opts.onStep?.('SHUTDOWN_suspend seen', how, domid);
    return i;
  };
  const now = look();
  if (now instanceof WaitError) throw now;
  if (now !== undefined) return seen(now, 'getdomaininfo: already shut down (suspend)');
  const src = opts.domExc ?? domExcSource(m);
  if (typeof src === 'number') {
    throw new WaitError('virq', domid, `cannot bind VIRQ_DOM_EXC (${errnoName(src)}): pass the DomExcSource of whoever holds it`);
  }

  let settled = false;
  const deadline = m.clock.now() + timeoutNs;
  const result = new Promise<DomainInfo>((resolve, reject) => {
    const finish = (r: DomainInfo | WaitError): void => {
      if (settled) return;
      settled = true;
      m.timers.cancel(timer);
      unsubscribe();
      if (r instanceof WaitError) reject(r);
      else resolve(seen(r, 'VIRQ_DOM_EXC, then getdomaininfo: shut down (suspend)'));
    };
    const timer = new Timer(() => {
      finish(new WaitError('timeout', domid, `no suspend within ${timeoutNs / 1e6} ms of system time (the domain keeps running)`));
    });
    const unsubscribe = src.subscribe(() => {
      const r = look();
      if (r !== undefined) finish(r);
    });
    m.timers.set(timer, deadline);
    m.poke();
  });
  if ((opts.drive ?? 'auto') === 'auto' && m.clock.kind === 'simulated') {
    while (!settled) {
      for (let i = 0; i < SLICE && !settled; i++) m.step(deadline);
      if (!settled) await new Promise<void>((r) => setImmediate(r));
    }
  }
  return result;
}

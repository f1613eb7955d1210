/*
 * Small test kernels for the core: boot and shut down, events between two
 * domains, timers, polling, the clock, suspend, and misbehaviour.
 *
 * Every symbol keeps its state in the mailbox page or in registers.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { SHUTDOWN_poweroff, SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { VIRQ_TIMER, shared_info } from '../../hypervisor/public/xen.js';
import { defineKernel, type TestKernel } from './image.js';
import {
  VIRT_BASE, A_PARAM, A_SHINFO_VA, arg, argBig, setResult, getVar, setVar, incVar, mapSharedInfo, setCallbacks, setUpcallMask,
  block, yieldCpu, shutdown, send, bindVirq, setTimer, print, takeEvents, readClock, poll, jump, allocUnbound,
  bindInterdomain,
} from './guest.js';

const IMAGE = { virtBase: VIRT_BASE, imageSize: 4096 } as const;

/** Boots, says hello on the console, powers off. */
export const helloKernel: TestKernel = defineKernel({
  name: 'hello',
  ...IMAGE,
  symbols: {
    start(cpu: GuestCpu) {
      setResult(cpu, 0, mapSharedInfo(cpu));
      print(cpu, 'hello from a test kernel\n');
      shutdown(cpu, SHUTDOWN_poweroff);
    },
  },
});

/*
 * Ping-pong over one interdomain channel. args: A_PARAM = role (0 = the
 * side that allocates, 1 = the binder), A_PARAM+1 = peer domid,
 * A_PARAM+2 = peer's port (binder only), A_PARAM+3 = rounds.
 * vars: 0 = local port, 1 = events seen, 2 = sends made.
 * results: 0 = local port, 1 = events seen at the end.
 */
const P_ROLE = A_PARAM;
const P_PEER = A_PARAM + 1;
const P_PEER_PORT = A_PARAM + 2;
const P_ROUNDS = A_PARAM + 3;

export const pingKernel: TestKernel = defineKernel({
  name: 'ping',
  ...IMAGE,
  textBase: 0x8000_1000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      setCallbacks(cpu, pingKernel.addr.upcall!);
      const port = arg(cpu, P_ROLE) === 0 ? allocUnbound(cpu, arg(cpu, P_PEER)) : bindInterdomain(cpu, arg(cpu, P_PEER), arg(cpu, P_PEER_PORT));
      setVar(cpu, 0, port);
      setResult(cpu, 0, port);
      // bind_interdomain leaves the new port pending (Xen does): drop that.
      takeEvents(cpu);
      // The binder opens the game.
      if (arg(cpu, P_ROLE) === 1) {
        send(cpu, port);
        incVar(cpu, 2);
      }
      jump(cpu, pingKernel.addr.idle!);
      block(cpu);
    },
    upcall(cpu: GuestCpu) {
      const port = getVar(cpu, 0);
      for (const p of takeEvents(cpu)) {
        if (p !== port) continue;
        const seen = incVar(cpu, 1);
        setResult(cpu, 1, seen);
        // The allocator answers every ping; the binder stops after `rounds`.
        if (arg(cpu, P_ROLE) === 0 ? seen <= arg(cpu, P_ROUNDS) : seen < arg(cpu, P_ROUNDS)) {
          send(cpu, port);
          incVar(cpu, 2);
        }
      }
    },
    idle(cpu: GuestCpu) {
      if (getVar(cpu, 1) >= arg(cpu, P_ROUNDS)) {
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      block(cpu);
    },
  },
});

/*
 * Timer: bind VIRQ_TIMER, then `count` times: arm the one-shot timer
 * `period` ns ahead and block; the upcall records the time it saw.
 * args: A_PARAM = period ns, A_PARAM+1 = count.
 * vars: 0 = timer port, 1 = ticks seen. results: i = time at tick i.
 */
export const timerKernel: TestKernel = defineKernel({
  name: 'timer',
  ...IMAGE,
  textBase: 0x8000_2000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      setCallbacks(cpu, timerKernel.addr.upcall!);
      setVar(cpu, 0, bindVirq(cpu, VIRQ_TIMER));
      setTimer(cpu, readClock(cpu) + argBig(cpu, A_PARAM));
      jump(cpu, timerKernel.addr.wait!);
      block(cpu);
    },
    upcall(cpu: GuestCpu) {
      for (const p of takeEvents(cpu)) {
        if (p !== getVar(cpu, 0)) continue;
        const n = incVar(cpu, 1);
        setResult(cpu, n, readClock(cpu));
        if (n < arg(cpu, A_PARAM + 1)) setTimer(cpu, readClock(cpu) + argBig(cpu, A_PARAM));
      }
    },
    wait(cpu: GuestCpu) {
      if (getVar(cpu, 1) >= arg(cpu, A_PARAM + 1)) {
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      block(cpu);
    },
  },
});

/*
 * Poll: allocate two unbound ports for dom0 (results 1, 2), mask events,
 * then SCHEDOP_poll on both with an absolute timeout `A_PARAM` ns from now.
 * When it returns: result 3 = the poll's rax, result 4 = the time,
 * result 5 = pending bits of the two ports (bit 0, bit 1). Then again,
 * until A_PARAM+1 polls are done.
 */
export const pollKernel: TestKernel = defineKernel({
  name: 'poll',
  ...IMAGE,
  textBase: 0x8000_3000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      setUpcallMask(cpu, true);
      setResult(cpu, 1, allocUnbound(cpu, 0));
      setResult(cpu, 2, allocUnbound(cpu, 0));
      setResult(cpu, 0, readClock(cpu));
      jump(cpu, pollKernel.addr.polled!);
      poll(cpu, [readPort(cpu, 1), readPort(cpu, 2)], readClock(cpu) + argBig(cpu, A_PARAM));
    },
    polled(cpu: GuestCpu) {
      const n = incVar(cpu, 0);
      setResult(cpu, 8 * n + 0, cpu.regs.getNum('rax'));
      setResult(cpu, 8 * n + 1, readClock(cpu));
      const events = takePending(cpu, [readPort(cpu, 1), readPort(cpu, 2)]);
      setResult(cpu, 8 * n + 2, events);
      if (n >= arg(cpu, A_PARAM + 1)) {
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      poll(cpu, [readPort(cpu, 1), readPort(cpu, 2)], readClock(cpu) + argBig(cpu, A_PARAM));
    },
  },
});

function readPort(cpu: GuestCpu, i: number): number {
  return Number(cpu.mem.getBigUint64(VIRT_BASE + 0x200 + 8 * i, true));
}

/** Which of `ports` are pending (bit i for ports[i]); clears them. */
function takePending(cpu: GuestCpu, ports: number[]): number {
  const sh = arg(cpu, A_SHINFO_VA);
  let bits = 0;
  ports.forEach((p, i) => {
    const at = sh + shared_info.offsetOf('evtchn_pending') + Math.floor(p / 8);
    const b = cpu.mem.getUint8(at);
    if ((b >> (p % 8)) & 1) {
      bits |= 1 << i;
      cpu.mem.setUint8(at, b & ~(1 << (p % 8)));
    }
  });
  return bits;
}

/*
 * Clock: read the time A_PARAM times, yielding in between; results[i] =
 * i-th reading; var 0 = readings so far. Then power off.
 */
export const clockKernel: TestKernel = defineKernel({
  name: 'clock',
  ...IMAGE,
  textBase: 0x8000_4000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      jump(cpu, clockKernel.addr.tick!);
    },
    tick(cpu: GuestCpu) {
      const n = getVar(cpu, 0);
      if (n >= arg(cpu, A_PARAM)) {
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      // Several readings in one entry too: the TSC moves within an entry.
      setResult(cpu, n, readClock(cpu));
      setVar(cpu, 0, n + 1);
      yieldCpu(cpu);
    },
  },
});

/*
 * Suspend: SHUTDOWN_suspend with rdx = A_PARAM (a start_info MFN); the
 * continuation stores the call's result (rax) in result 1 and the number
 * of resumes in var 0, then suspends again.
 */
export const suspendKernel: TestKernel = defineKernel({
  name: 'suspend',
  ...IMAGE,
  textBase: 0x8000_5000_0000,
  notes: { suspendCancel: true },
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      jump(cpu, suspendKernel.addr.resumed!);
      setResult(cpu, 0, shutdown(cpu, SHUTDOWN_suspend, argBig(cpu, A_PARAM)));
    },
    resumed(cpu: GuestCpu) {
      setResult(cpu, 1, cpu.regs.getNum('rax'));
      incVar(cpu, 0);
      shutdown(cpu, SHUTDOWN_suspend, argBig(cpu, A_PARAM));
    },
  },
});

/** Spins: yields forever, counting entries in var 0 (a busy, well-behaved guest). */
export const spinKernel: TestKernel = defineKernel({
  name: 'spin',
  ...IMAGE,
  textBase: 0x8000_6000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      incVar(cpu, 0);
      yieldCpu(cpu);
    },
  },
});

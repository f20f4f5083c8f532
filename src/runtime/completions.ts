/**
 * How finished infer() runs get back to JS.
 *
 * Executor threads put finished runs on a per-env list. The JS thread drains that list either
 * when woken (a threadsafe-function wake-up: an eventfd write and an epoll return, which on a
 * VM costs several microseconds because the sleeping thread must be rescheduled) or by polling:
 * for a short window after each submit or completion, a setImmediate loop calls binding.poll()
 * once per event-loop turn. Polling never blocks the loop — every turn still runs timers and
 * I/O — and while it is on, executor threads skip the wake-up entirely, so a short run
 * completes without any thread sleeping. When nothing completes for NIMIFY_POLL_US
 * microseconds the loop stops and wake-ups take over, so a long run costs at most that much
 * main-thread CPU. Either way one drain settles every run that finished since the last one.
 *
 * Polling is off by default (NIMIFY_POLL_US=0). On the 2-core VM it was measured on, polling
 * competes for a core with the executor thread: the best sequential tiny-MLP round improved
 * from 9.3 to 6.8 µs, but the median round got worse (9.9 → 10.4 µs). It is meant for machines
 * with cores to spare; measure before enabling it.
 */
import type { NativeBinding } from './binding';

let WINDOW_NS = 0n;

/** @internal Sets the polling window (microseconds; 0 disables polling). */
export function setPollWindow(us: number): void {
  WINDOW_NS = BigInt(Math.max(0, Number.isFinite(us) ? Math.floor(us * 1000) : 50_000));
}
setPollWindow(Number(process.env.NIMIFY_POLL_US ?? 0));

let binding: NativeBinding | undefined;
let polling = false;
let lastActivity = 0n;
let lastPending = 0;

function tick(): void {
  const b = binding as NativeBinding;
  const pending = b.poll(true);
  const now = process.hrtime.bigint();
  if (pending < lastPending) lastActivity = now;
  lastPending = pending;
  if (pending === 0 || now - lastActivity > WINDOW_NS) {
    polling = false;
    b.poll(false); // stop: from now on executor threads wake this thread (drains once more)
    return;
  }
  setImmediate(tick);
}

/** Called after every submitted run. */
export function submitted(b: NativeBinding): void {
  if (WINDOW_NS === 0n) return;
  lastActivity = process.hrtime.bigint();
  lastPending++;
  if (polling) return;
  binding = b;
  polling = true;
  b.poll(true);
  setImmediate(tick);
}

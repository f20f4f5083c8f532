/**
 * infer()'s promises: made here, settled by the addon in bulk (native/settlement.h).
 *
 * infer() opens a ticket — a small integer naming a new promise, its resolving functions and
 * what turns the run's outcome into the caller's value (`finish` and its two arguments) — and
 * passes the ticket to the addon's run(). When runs finish, the addon calls the settler below
 * once for all of them with [ticket, kind, offset] triples in an Int32Array, the values, where
 * there are any, at the same index of an array, and the bytes of tiny outputs copied at
 * settlement at `offset` of an ArrayBuffer (io-plan.ts NativeCall.copied). So a request costs
 * one promise and no native promise, persistent handle or `.then()` reaction: the issue's
 * "promise resolved in bulk per batch".
 *
 * Tickets are reused (a free list): at most as many exist as requests are in flight. The tables
 * are per JS thread (this module's state is per isolate, as the addon's settler is per env).
 */
import type { NativeBinding } from './binding';

/** The kinds of outcome (native/settlement.h Settlement::Kind). */
export const SETTLE_KIND = { NULL: 0, VALUE: 1, ERROR: 2 } as const;

/**
 * Turns a run's outcome into the promise's value: `value` is null for SETTLE_KIND.NULL, the
 * addon's results for VALUE, its error for ERROR; its copied outputs are in `data` from
 * `offset`. Whatever it returns resolves the promise; whatever it throws rejects it. `a` and `b`
 * are what open() was given with it.
 */
export type Finish = (kind: number, value: unknown, a: unknown, b: unknown, data: ArrayBuffer, offset: number) => unknown;

// Per ticket; undefined while the ticket is free.
const finishes: (Finish | undefined)[] = [];
const firsts: unknown[] = [];
const seconds: unknown[] = [];
const resolves: (((v: unknown) => void) | undefined)[] = [];
const rejects: (((e: unknown) => void) | undefined)[] = [];
const free: number[] = [];
let next = 0;

// The executor of every promise open() makes (no closure per promise): it hands the resolving
// functions over through these two variables, read right after `new Promise` returns.
let takenResolve: ((v: unknown) => void) | undefined;
let takenReject: ((e: unknown) => void) | undefined;
function take(resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
  takenResolve = resolve;
  takenReject = reject;
}

let lastTicket = -1;

// The intrinsic Promise as this module loaded: a global replaced later does not make infer()'s promises.
const PromiseCtor = Promise;

/** A new pending promise under a new ticket (read it with ticket() before the next open()). */
export function open<T>(finish: Finish, a: unknown, b: unknown): Promise<T> {
  const promise = new PromiseCtor<T>(take as never);
  const t = free.length > 0 ? (free.pop() as number) : next++;
  finishes[t] = finish;
  firsts[t] = a;
  seconds[t] = b;
  resolves[t] = takenResolve;
  rejects[t] = takenReject;
  takenResolve = takenReject = undefined;
  lastTicket = t;
  return promise;
}

/** The ticket of the promise the last open() returned. */
export function ticket(): number {
  return lastTicket;
}

/** Frees ticket `t` and returns its reject function (the caller's to call). */
function close(t: number): ((e: unknown) => void) | undefined {
  const reject = rejects[t];
  finishes[t] = firsts[t] = seconds[t] = resolves[t] = rejects[t] = undefined;
  free.push(t);
  return reject;
}

/** Rejects ticket `t`'s promise with `err` at once (a run the addon refused) and frees it. */
export function refuse(t: number, err: unknown): void {
  if (finishes[t] === undefined) return;
  close(t)?.(err);
}

/** Tickets open now (tests: every settled or refused request gives its ticket back). */
export function openTickets(): number {
  return next - free.length;
}

/**
 * The settler: `n` outcomes, triple k being entries[3k] (the ticket), entries[3k + 1] (the kind)
 * and entries[3k + 2] (where its copied outputs start in `data`), its value values[k]. Every
 * entry is read and its ticket freed before its promise is resolved, since resolving can run
 * caller code (a `then` getter on Object.prototype) that opens new tickets and even settles
 * them re-entrantly (the addon then uses other arrays). Nothing thrown escapes: a throwing
 * `finish` rejects its promise, and the rest are settled. Exported for tests only (@internal):
 * useSettler() registers it.
 */
export function settle(n: number, entries: Int32Array, values: unknown[], data: ArrayBuffer): void {
  for (let k = 0; k < n; k++) {
    const t = entries[3 * k];
    const kind = entries[3 * k + 1];
    const offset = entries[3 * k + 2];
    let value: unknown = null;
    if (kind !== SETTLE_KIND.NULL) {
      value = values[k];
      values[k] = undefined;
    }
    const finish = finishes[t];
    if (finish === undefined) continue; // (never: the addon settles a ticket once)
    const a = firsts[t];
    const b = seconds[t];
    const resolve = resolves[t] as (v: unknown) => void;
    const reject = close(t) as (e: unknown) => void;
    try {
      resolve(finish(kind, value, a, b, data, offset));
    } catch (err) {
      reject(err);
    }
  }
}

let registered: NativeBinding | undefined;

/** Registers the settler with this thread's addon (once; before the first run()). */
export function useSettler(binding: NativeBinding): void {
  if (registered === binding) return;
  binding.setSettler(settle);
  registered = binding;
}

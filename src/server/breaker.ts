/**
 * A circuit breaker per model. No maintained library keys one breaker per route parameter with
 * "N consecutive failures" semantics (@fastify/circuit-breaker is per route, opossum counts a
 * rolling error percentage), so this small state machine is ours:
 *
 *   closed ──N consecutive failures──▶ open ──resetTimeoutMs──▶ half-open
 *     ▲                                  ▲                          │
 *     └────────── probe succeeds ────────┼──── probe fails ─────────┘
 *
 * While open every request is refused at once (503 CIRCUIT_OPEN + Retry-After); half-open lets
 * exactly one probe through. Failures are the model's own faults (runtime errors, timeouts), not
 * client errors. Time comes from Date.now() so fake timers drive it in tests. Event-loop thread only.
 */
import { retryLater, secondsFromMs } from './errors';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive failures that open the breaker (default: BREAKER_DEFAULTS). */
  failureThreshold?: number;
  /** How long it stays open before a probe, in ms (default: BREAKER_DEFAULTS). */
  resetTimeoutMs?: number;
}

/** The breaker's defaults, for the plugin option and anything that reports them. */
export const BREAKER_DEFAULTS: Readonly<Required<BreakerOptions>> = Object.freeze({ failureThreshold: 5, resetTimeoutMs: 10_000 });

export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

export class CircuitBreaker {
  readonly failureThreshold: number;
  readonly resetTimeoutMs: number;
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;
  readonly #onChange: (state: BreakerState) => void;

  constructor(options: Required<BreakerOptions>, onChange: (state: BreakerState) => void = () => {}) {
    this.failureThreshold = options.failureThreshold;
    this.resetTimeoutMs = options.resetTimeoutMs;
    this.#onChange = onChange;
  }

  get state(): BreakerState {
    if (this.#state === 'open' && Date.now() - this.#openedAt >= this.resetTimeoutMs) this.#set('half-open');
    return this.#state;
  }

  /**
   * Call before running a request: throws CIRCUIT_OPEN when refused. Returns whether this request
   * is the half-open probe (its outcome decides the state).
   */
  admit(model: string): boolean {
    const state = this.state;
    if (state === 'closed') return false;
    if (state === 'half-open' && !this.#probing) {
      this.#probing = true;
      return true;
    }
    const retryMs = state === 'open' ? this.resetTimeoutMs - (Date.now() - this.#openedAt) : this.resetTimeoutMs;
    throw retryLater('CIRCUIT_OPEN', `model '${model}': circuit breaker is ${state} after ${this.failureThreshold} consecutive failures; retry later`, secondsFromMs(retryMs));
  }

  success(probe: boolean): void {
    this.#failures = 0;
    if (probe) this.#probing = false;
    if (this.#state !== 'closed') this.#set('closed');
  }

  failure(probe: boolean): void {
    if (probe) this.#probing = false;
    this.#failures++;
    if (this.#state === 'half-open' || (this.#state === 'closed' && this.#failures >= this.failureThreshold)) {
      this.#openedAt = Date.now();
      this.#set('open');
    }
  }

  /** A request that ended without telling anything about the model's health (e.g. a client error). */
  neutral(probe: boolean): void {
    if (probe) this.#probing = false;
  }

  #set(state: BreakerState): void {
    this.#state = state;
    this.#onChange(state);
  }
}

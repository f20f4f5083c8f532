/**
 * `nimify serve`'s idle trim: glibc keeps what the server freed — request bodies, decoded tensors,
 * outputs, the JSON workers' and ORT's thread-local allocations — in the main heap and the
 * per-thread arenas for reuse, so after a burst of large requests an idle server stays hundreds
 * of MB above what it uses (bench/results/memory.md: 267 → 116 MB). Every `intervalMs`, when no
 * inference request is in flight and the resident size is more than `minGrowthBytes` above the
 * size at start, once per idle period, it asks the C library to give free pages back (the addon's trimMemory(),
 * malloc_trim(0)). The process owns the policy, so the CLI runs it, not the library.
 *
 * Event-loop thread only (a timer, unref'd). trimMemory() takes each malloc arena's lock in turn:
 * an ORT thread allocating meanwhile waits for it, which is why it runs only when idle.
 */
import { getBinding } from '../runtime/binding';
import { expectInteger } from '../runtime/validate';

export interface IdleTrimOptions {
  /** How often to check, in ms (default 5000). */
  intervalMs?: number;
  /** Trim only when the resident size is this many bytes above the size at start (default 32 MiB). */
  minGrowthBytes?: number;
}

/** What the trim reads and calls; tests pass their own. */
export interface IdleTrimHooks {
  /** Whether an inference request is in flight now. */
  busy: () => boolean;
  /** Resident set size in bytes. */
  rss?: () => number;
  /** Gives free memory back; returns whether any was released. */
  trim?: () => boolean;
}

/** Starts the idle trim; returns the function that stops it. */
export function startIdleTrim(hooks: IdleTrimHooks, options: IdleTrimOptions = {}): () => void {
  const intervalMs = options.intervalMs === undefined ? 5000 : expectInteger('idleTrim.intervalMs', options.intervalMs, 1);
  const minGrowth = options.minGrowthBytes === undefined ? 32 * 1024 * 1024 : expectInteger('idleTrim.minGrowthBytes', options.minGrowthBytes, 0);
  const rss = hooks.rss ?? (() => process.memoryUsage.rss());
  const trim = hooks.trim ?? (() => getBinding().trimMemory());
  const floor = rss();
  // One trim per idle period: after a trim, the next waits until the server was busy again (an
  // idle server whose RSS stays above the floor — a model loaded since the start — is not
  // trimmed, and its event loop blocked, every interval).
  let activeSinceTrim = true;
  const timer = setInterval(() => {
    if (hooks.busy()) {
      activeSinceTrim = true;
      return;
    }
    if (activeSinceTrim && rss() - floor > minGrowth) {
      trim();
      activeSinceTrim = false;
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

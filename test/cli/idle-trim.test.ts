/**
 * serve's idle trim (src/cli/idle-trim.ts): trims only when no inference is in flight and the
 * resident size grew past the threshold since start; stops when told. Fake timers: no waiting.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startIdleTrim } from '../../src/cli/idle-trim';
import { serveOptions } from '../../src/cli/serve';
import { loadOptionsFor } from '../../src/repository/config';

const MiB = 1024 * 1024;

describe('startIdleTrim', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('trims when idle and grown, not while busy or below the threshold, and stops', () => {
    let rss = 100 * MiB;
    let busy = false;
    const trim = vi.fn(() => true);
    const stop = startIdleTrim({ busy: () => busy, rss: () => rss, trim }, { intervalMs: 1000, minGrowthBytes: 32 * MiB });
    vi.advanceTimersByTime(1000);
    expect(trim).not.toHaveBeenCalled(); // not grown
    rss = 120 * MiB;
    vi.advanceTimersByTime(1000);
    expect(trim).not.toHaveBeenCalled(); // grown less than the threshold
    rss = 400 * MiB;
    busy = true;
    vi.advanceTimersByTime(1000);
    expect(trim).not.toHaveBeenCalled(); // requests in flight
    busy = false;
    vi.advanceTimersByTime(1000);
    expect(trim).toHaveBeenCalledTimes(1);
    // Still idle and still above the floor (what trim cannot return): not trimmed again until busy again.
    vi.advanceTimersByTime(5000);
    expect(trim).toHaveBeenCalledTimes(1);
    busy = true;
    vi.advanceTimersByTime(1000);
    busy = false;
    vi.advanceTimersByTime(1000);
    expect(trim).toHaveBeenCalledTimes(2);
    stop();
    vi.advanceTimersByTime(5000);
    expect(trim).toHaveBeenCalledTimes(2);
  });

  it('validates its options', () => {
    expect(() => startIdleTrim({ busy: () => false }, { intervalMs: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('idleTrim.intervalMs') }));
    expect(() => startIdleTrim({ busy: () => false }, { minGrowthBytes: -1 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('idleTrim.minGrowthBytes') }));
  });
});

describe('serve: ORT memory arena', () => {
  it('is off for served models unless --memory-arena or config.json says otherwise', () => {
    expect(loadOptionsFor({}, {}).memoryArena).toBe(false);
    const { options } = serveOptions(['m.onnx', '--memory-arena']);
    expect(options.modelDefaults?.runtime?.memoryArena).toBe(true);
    expect(loadOptionsFor({}, options.modelDefaults ?? {}).memoryArena).toBe(true);
    expect(loadOptionsFor({ runtime: { memoryArena: true } }, {}).memoryArena).toBe(true);
  });
});

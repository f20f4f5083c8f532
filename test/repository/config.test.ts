/**
 * config.json parsing (src/repository/config.ts): what a hostile document cannot do, and the rules
 * it shares with loadModel() instead of restating them.
 */
import { describe, expect, it } from 'vitest';
import { NimifyError, loadModel } from '../../src';
import { parseUntrustedJson } from '../../src/protocol/json';
import { DEFAULT_BATCHING, RUNTIME_KEYS, loadOptionsFor, parseModelConfig } from '../../src/repository/config';
import { INLINE_BELOW_MICROS_DEFAULT, MAX_QUEUE_SIZE, RUNTIME_OPTION_KEYS, toNativeConfig } from '../../src/runtime/options';
import { model } from '../helpers';

describe('config.json parsing', () => {
  it('a warmup input named __proto__ stays an own key and never becomes the record prototype', () => {
    // JSON.parse keeps "__proto__" as an own key (as a repository API body parsed without
    // secure-json-parse did); assigning it with [] on a plain object would swap the prototype.
    const doc = JSON.parse('{"warmup":[{"inputs":{"__proto__":{"shape":[1]},"x":{"shape":[1,64]}}}]}') as unknown;
    const c = parseModelConfig('config', doc);
    const inputs = c.warmup![0].inputs;
    expect(Object.keys(inputs).sort()).toEqual(['__proto__', 'x']);
    expect(Object.prototype.hasOwnProperty.call(inputs, '__proto__')).toBe(true);
    expect((inputs as Record<string, { shape: number[] }>)['__proto__'].shape).toEqual([1]);
    expect(Object.getPrototypeOf(inputs)).toBe(null);
    expect(({} as Record<string, unknown>).shape).toBeUndefined();
  });

  it('untrusted JSON with a __proto__ or constructor.prototype key is refused, naming where it came from', () => {
    for (const text of ['{"__proto__":{"x":1}}', '{"a":{"constructor":{"prototype":{"x":1}}}}']) {
      let err: unknown;
      try {
        parseUntrustedJson('parameters.config', text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NimifyError);
      expect((err as NimifyError).code).toBe('INVALID_ARGUMENT');
      expect((err as NimifyError).message).toMatch(/^parameters\.config: not valid JSON/);
    }
    expect(parseUntrustedJson('x', '{"a":[1,2]}')).toEqual({ a: [1, 2] });
  });

  it("config.json's runtime keys are loadModel()'s session keys (one list)", () => {
    expect(RUNTIME_KEYS).toBe(RUNTIME_OPTION_KEYS);
    for (const key of RUNTIME_KEYS) expect(() => parseModelConfig('config', { runtime: { [key]: undefined } })).not.toThrow();
    expect(() => parseModelConfig('config', { runtime: { instances: 2 } })).toThrow(/config\.runtime/);
  });

  it('a served model without a batching section gets the server default; with one, what it leaves out gets the library defaults', () => {
    expect(loadOptionsFor({}, {}).batching).toMatchObject(DEFAULT_BATCHING);
    expect(loadOptionsFor({ batching: false }, {}).batching).toBeUndefined();
    const native = toNativeConfig(loadOptionsFor({ batching: { maxQueueDelayMicros: 100 } }, {})) as { batching: Record<string, unknown> };
    expect(native.batching).toMatchObject({ maxBatchSize: 8, maxQueueDelayMicros: 100, maxQueueSize: 1024, adaptive: true });
  });

  it('inlineBelowMicros: a model-level (runtime) setting, config.json over the server over the default; the old batching key is refused naming the new place', async () => {
    expect(loadOptionsFor({}, {}).inlineBelowMicros).toBe(INLINE_BELOW_MICROS_DEFAULT);
    expect(loadOptionsFor({}, { runtime: { inlineBelowMicros: 0 } }).inlineBelowMicros).toBe(0);
    expect(loadOptionsFor({ runtime: { inlineBelowMicros: 7 } }, { runtime: { inlineBelowMicros: 0 } }).inlineBelowMicros).toBe(7);
    expect(toNativeConfig(undefined)).toEqual({ inlineBelowMicros: INLINE_BELOW_MICROS_DEFAULT });
    const moved = /batching\.inlineBelowMicros: expected no such key here: inlineBelowMicros is a model-level option now \(options\.inlineBelowMicros; config\.json runtime\.inlineBelowMicros\), received number 5/;
    expect(() => parseModelConfig('config', { batching: { inlineBelowMicros: 5 } })).toThrow(moved);
    const err = await loadModel(model('mlp_tiny.onnx'), { batching: { inlineBelowMicros: 5 } as never }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).code).toBe('INVALID_ARGUMENT');
    expect((err as NimifyError).message).toMatch(moved);
    expect(() => parseModelConfig('config', { runtime: { inlineBelowMicros: 1_000_001 } })).toThrow(/config\.runtime\.inlineBelowMicros: expected an integer in \[0, 1000000\], received number 1000001/);
  });

  it(`maxQueueSize is bounded (1–${MAX_QUEUE_SIZE}) in options, config.json and load overrides alike`, async () => {
    expect(() => toNativeConfig({ batching: { maxQueueSize: 1e9 } })).toThrow(/options\.batching\.maxQueueSize/);
    expect(() => toNativeConfig({ batching: { maxQueueSize: MAX_QUEUE_SIZE + 1 } })).toThrow(new RegExp(`up to ${MAX_QUEUE_SIZE}|${MAX_QUEUE_SIZE}`));
    expect(() => toNativeConfig({ batching: { maxQueueSize: MAX_QUEUE_SIZE } })).not.toThrow();
    expect(() => parseModelConfig('parameters.config', { batching: { maxQueueSize: 1e9 } }, { fromApi: true })).toThrow(/^parameters\.config\.batching\.maxQueueSize: expected an integer in \[1, 65536\]/);
    await expect(loadModel(model('mlp_tiny.onnx'), { batching: { maxQueueSize: 1e9 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/maxQueueSize/) });
  });
});

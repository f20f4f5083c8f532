import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Model, NimifyError, Tensor, TENSOR_TYPES, type TensorType } from '../../src';
import { CTORS } from '../../src/runtime/tensor';
import { Canceller } from '../../src/runtime/options';
import { decode, f32, forceGC, maxAbsDiff, model, reference, values } from '../helpers';

async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string, pattern?: RegExp): Promise<NimifyError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).code).toBe(code);
    if (pattern) expect((err as Error).message).toMatch(pattern);
    return err as NimifyError;
  }
  throw new Error(`expected a NimifyError ${code}`);
}

const x64 = (fill = 0.25, batch = 1): Tensor<'float32'> =>
  new Tensor('float32', Float32Array.from({ length: 64 * batch }, (_, i) => Math.sin(i * fill)), [batch, 64]);

describe('loading and metadata', () => {
  it('loads from a path and from bytes, with names, types, symbolic dims and model metadata', async () => {
    const fromPath = await loadModel(model('mlp_tiny.onnx'));
    const fromBytes = await loadModel(fs.readFileSync(model('mlp_tiny.onnx')));
    for (const m of [fromPath, fromBytes]) {
      expect(m.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['batch', 64] }]);
      expect(m.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['batch', 10] }]);
      expect(m.metadata).toMatchObject({
        producerName: 'nimify-fixtures',
        graphName: 'mlp_tiny',
        domain: 'ai.nimify.test',
        description: 'Tiny MLP fixture (64-256-10)',
        version: 3,
        custom: { author: 'nimify', license: 'MIT' },
      });
    }
    const a = await fromPath.infer({ x: x64() });
    const b = await fromBytes.infer({ x: x64() });
    expect(values(a.y)).toEqual(values(b.y));
    await Promise.all([fromPath.dispose(), fromBytes.dispose()]);
  });

  it('applies session options (free dimension overrides, optimization level, optimized model path, threads)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-opt-'));
    const optimized = path.join(dir, 'optimized.onnx');
    const m = await loadModel(model('mlp_tiny.onnx'), {
      executionProviders: ['cpu'],
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'extended',
      executionMode: 'sequential',
      optimizedModelFilePath: optimized,
      freeDimensionOverrides: { batch: 2 },
      logSeverityLevel: 3,
    });
    expect(m.inputs[0].shape).toEqual([2, 64]);
    expect(fs.statSync(optimized).size).toBeGreaterThan(0);
    await rejectsWith(m.infer({ x: x64(0.1, 1) }), 'INVALID_ARGUMENT', /expected shape \[2, 64\], received \[1, 64\]/);
    expect((await m.infer({ x: x64(0.1, 2) })).y.dims).toEqual([2, 10]);
    await m.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses missing files, directories, bad bytes and bad options with stable codes', async () => {
    await rejectsWith(loadModel('/nonexistent/model.onnx'), 'NOT_FOUND', /nonexistent\/model\.onnx' does not exist/);
    await rejectsWith(loadModel(os.tmpdir()), 'INVALID_ARGUMENT', /is not a file/);
    await rejectsWith(loadModel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), 'INVALID_MODEL');
    await rejectsWith(loadModel(new Uint8Array(0)), 'INVALID_MODEL', /empty/);
    const garbage = path.join(os.tmpdir(), `nimify-garbage-${process.pid}.onnx`);
    fs.writeFileSync(garbage, 'this is not a model');
    await rejectsWith(loadModel(garbage), 'INVALID_MODEL', /nimify-garbage/);
    fs.rmSync(garbage);
    await rejectsWith(loadModel(42 as never), 'INVALID_ARGUMENT', /model: expected a path string, a Uint8Array or an ArrayBuffer, received number 42/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { intraOpThreads: 2 } as never), 'INVALID_ARGUMENT', /unknown option 'intraOpThreads'/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { graphOptimizationLevel: 'max' } as never), 'INVALID_ARGUMENT', /graphOptimizationLevel: expected one of 'disabled'/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { intraOpNumThreads: -1 }), 'INVALID_ARGUMENT', /intraOpNumThreads: expected an integer in \[0, 1024\], received number -1/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { freeDimensionOverrides: { batch: 1.5 } }), 'INVALID_ARGUMENT', /freeDimensionOverrides.batch/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { executionProviders: ['tpu'] } as never), 'INVALID_ARGUMENT', /executionProviders\[0\]/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'cuda', required: true, deviceId: 0 }] }), 'EP_UNAVAILABLE', /required provider 'cuda' cannot be used/);
  });
});

describe('element types round-trip exactly', () => {
  const cases: Array<[TensorType, ArrayLike<unknown>]> = [
    ['float32', new Float32Array([0, -0, 1.5, -3.25, 3.4028234663852886e38, 1e-45, Infinity, -Infinity])],
    ['float64', new Float64Array([0, Math.PI, -1e308, 5e-324, Number.MAX_VALUE, -Infinity])],
    ['float16', new Uint16Array([0x0000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x3555])],
    ['bfloat16', new Uint16Array([0x0000, 0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0x4049])],
    ['int8', new Int8Array([-128, -1, 0, 1, 127])],
    ['uint8', new Uint8Array([0, 1, 128, 255])],
    ['int16', new Int16Array([-32768, -1, 0, 32767])],
    ['uint16', new Uint16Array([0, 1, 65535])],
    ['int32', new Int32Array([-2147483648, -1, 0, 2147483647])],
    ['uint32', new Uint32Array([0, 1, 4294967295])],
    ['int64', new BigInt64Array([-(2n ** 63n), -1n, 0n, 2n ** 53n + 1n, 2n ** 63n - 1n])],
    ['uint64', new BigUint64Array([0n, 1n, 2n ** 64n - 1n, 2n ** 53n + 1n])],
    ['bool', new Uint8Array([1, 0, 1, 1, 0])],
    ['string', ['', 'hello', 'ünïcødé ✓', 'a\u0000b', 'x'.repeat(1000)]],
  ];
  it('covers every type of the one element-type table (tensor.ts CTORS, which io-plan and the protocol derive from)', () => {
    expect(cases.map(([t]) => t).sort()).toEqual([...TENSOR_TYPES].sort());
    for (const [type, values] of cases) if (type !== 'string') expect(CTORS[type as Exclude<TensorType, 'string'>], type).toBe(values.constructor);
  });
  for (const [type, values] of cases) {
    it(`${type} (infer and inferSync): the addon's table agrees with TypeScript's`, async () => {
      const m = await loadModel(model(`identity_${type}.onnx`));
      expect(m.inputs[0]).toEqual({ name: 'x', type, shape: ['n'] });
      const t = new Tensor(type, values as never, [values.length]);
      const out = await m.infer({ x: t });
      expect(out.y.type).toBe(type);
      expect(out.y.dims).toEqual([values.length]);
      expect(Array.from(out.y.data as ArrayLike<unknown>)).toEqual(Array.from(values));
      if (type !== 'string') expect(out.y.data.constructor).toBe(values.constructor);
      const sync = m.inferSync({ x: t });
      expect(Array.from(sync.y.data as ArrayLike<unknown>)).toEqual(Array.from(values));
      // Empty tensors work too.
      const empty = await m.infer({ x: new Tensor(type, (type === 'string' ? [] : new (values.constructor as new (n: number) => unknown)(0)) as never, [0]) });
      expect(empty.y.dims).toEqual([0]);
      expect(empty.y.size).toBe(0);
      await m.dispose();
    });
  }

  it('Cast produces the exact float16/bfloat16 bit patterns', async () => {
    const m = await loadModel(model('cast.onnx'));
    const x = new Tensor('float32', new Float32Array([1, 0.5, -2, 65504, 0, 3.140625, -7.9]), [7]);
    const out = await m.infer({ x });
    expect(Array.from(out.f16.data as Uint16Array)).toEqual([0x3c00, 0x3800, 0xc000, 0x7bff, 0x0000, 0x4248, 0xc7e6]);
    expect(Array.from(out.bf16.data as Uint16Array)).toEqual([0x3f80, 0x3f00, 0xc000, 0x4780, 0x0000, 0x4049, 0xc0fd]);
    expect(Array.from(out.f64.data as Float64Array)).toEqual(values(x));
    expect(Array.from(out.i32.data as Int32Array)).toEqual([1, 0, -2, 65504, 0, 3, -7]);
    const F16 = (globalThis as { Float16Array?: new (a: number[]) => ArrayLike<number> }).Float16Array;
    if (F16) {
      const id = await loadModel(model('identity_float16.onnx'));
      const r = await id.infer({ x: new Tensor('float16', new F16([1, 0.5, -2]) as never, [3]) });
      expect(Array.from(r.y.data as Uint16Array)).toEqual([0x3c00, 0x3800, 0xc000]);
      await id.dispose();
    }
    await m.dispose();
  });
});

describe('real models match onnxruntime-node', () => {
  for (const name of ['mlp_tiny', 'convnet', 'convnet_bench', 'embed_int64', 'nonzero', 'two_inputs']) {
    it(`${name}: committed reference outputs`, async () => {
      const ref = reference(name);
      const m = await loadModel(model(ref.model));
      for (const c of ref.cases) {
        const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, decode(v)]));
        for (const out of [await m.infer(feeds), m.inferSync(feeds)]) {
          for (const [k, v] of Object.entries(c.outputs)) {
            const want = decode(v);
            expect(out[k].type).toBe(want.type);
            expect(out[k].dims).toEqual(want.dims);
            if (want.type === 'float32') expect(maxAbsDiff(out[k].data as Float32Array, want.data as Float32Array)).toBeLessThan(1e-4);
            else expect(Array.from(out[k].data as ArrayLike<unknown>)).toEqual(Array.from(want.data as ArrayLike<unknown>));
          }
        }
      }
      await m.dispose();
    });
  }

  it('conv net with a dynamic batch dim agrees with onnxruntime-node live, batches 1..4', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ort = require('onnxruntime-node');
    const sess = await ort.InferenceSession.create(model('convnet.onnx'));
    const m = await loadModel(model('convnet.onnx'));
    expect(m.inputs[0].shape).toEqual(['batch', 3, 32, 32]);
    for (let batch = 1; batch <= 4; batch++) {
      const data = Float32Array.from({ length: batch * 3 * 32 * 32 }, (_, i) => Math.cos(i * 0.37 + batch));
      const want = (await sess.run({ x: new ort.Tensor('float32', data, [batch, 3, 32, 32]) })).y;
      const got = (await m.infer({ x: new Tensor('float32', data, [batch, 3, 32, 32]) })).y;
      expect(got.dims).toEqual(want.dims);
      expect(maxAbsDiff(got.data as Float32Array, want.data)).toBeLessThan(1e-5);
    }
    await sess.release();
    await m.dispose();
  });
});

describe('memory: zero-copy in, in place or zero-copy out', () => {
  let mlp: Model;
  beforeAll(async () => {
    mlp = await loadModel(model('mlp_tiny.onnx'));
  });
  afterAll(() => mlp.dispose());

  it('reads inputs at their byteOffset inside a larger buffer', async () => {
    const whole = new Float32Array(64 * 3);
    whole.set(x64(0.3).data, 64);
    const view = whole.subarray(64, 128);
    expect(view.byteOffset).toBe(256);
    const a = await mlp.infer({ x: new Tensor('float32', view, [1, 64]) });
    const b = await mlp.infer({ x: x64(0.3) });
    expect(values(a.y)).toEqual(values(b.y));
  });

  it('writes a caller-supplied output in place and returns that very tensor', async () => {
    const backing = new ArrayBuffer(4 * 32);
    const bytes = new Uint8Array(backing).fill(0xab);
    const y = new Tensor('float32', new Float32Array(backing, 32, 10), [1, 10]);
    for (const run of [() => mlp.infer({ x: x64() }, { outputs: { y } }), async () => mlp.inferSync({ x: x64() }, { outputs: { y } })]) {
      const out = await run();
      expect(out.y).toBe(y);
      expect(out.y.data).toBe(y.data);
      expect(f32(out.y).buffer).toBe(backing);
      expect(f32(out.y).byteOffset).toBe(32);
      const fresh = await mlp.infer({ x: x64() });
      expect(values(y)).toEqual(values(fresh.y));
      // Bytes outside the view are untouched.
      expect(Array.from(bytes.subarray(0, 32)).every((b) => b === 0xab)).toBe(true);
      expect(Array.from(bytes.subarray(72)).every((b) => b === 0xab)).toBe(true);
    }
  });

  it('lets ORT write outputs straight into fresh JS buffers when the shape is known (zero-copy)', async () => {
    const before = mlp.stats();
    const a = await mlp.infer({ x: x64() });
    const b = mlp.inferSync({ x: x64(0.2, 3) });
    // Written in place by ORT (a 40-byte result then copied into memory of its own, a 120-byte one
    // a view of a pooled block on Node 24: test/runtime/output-pool.test.ts), each its own bytes.
    expect(f32(a.y).byteLength).toBe(40);
    expect(f32(b.y).byteLength).toBe(120);
    if (f32(a.y).buffer === f32(b.y).buffer) expect(f32(b.y).byteOffset).toBeGreaterThanOrEqual(f32(a.y).byteOffset + 40);
    expect(b.y.dims).toEqual([3, 10]);
    const after = mlp.stats();
    expect(after.outputsZeroCopy - before.outputsZeroCopy).toBe(2);
    expect(after.outputsCopied - before.outputsCopied).toBe(0);
    expect(after.bytesCopied).toBe(before.bytesCopied);
    expect(after.runs - before.runs).toBe(2);
  });

  it('each call gets its own shape\'s results whatever calls came before (the reused spec of usual calls)', async () => {
    // Usual calls (every output, none supplied) reuse the last usual call's encoded spec when
    // their input dims match; any other call in between, or other dims, encodes afresh.
    const [a, b, c] = [x64(0.1, 1), x64(0.2, 3), x64(0.3, 2)];
    const want = new Map([a, b, c].map((t) => [t, Array.from(f32(mlp.inferSync({ x: t }, { outputs: { y: new Tensor('float32', new Float32Array(t.dims[0] * 10), [t.dims[0], 10]) } }).y))]));
    type Kind = 'usual' | 'sync' | 'named' | 'supplied' | 'device';
    const seq: Array<[Tensor<'float32'>, Kind]> = [
      [a, 'usual'], [a, 'usual'], [b, 'usual'], [a, 'sync'], [a, 'named'], [a, 'usual'], [c, 'supplied'], [c, 'usual'],
      [b, 'supplied'], [c, 'usual'], [b, 'device'], [b, 'sync'], [b, 'usual'], [a, 'device'], [b, 'usual'], [c, 'usual'], [c, 'sync'],
    ];
    for (const [k, [t, kind]] of seq.entries()) {
      const rows = t.dims[0];
      let y: Tensor;
      if (kind === 'usual') y = (await mlp.infer({ x: t })).y;
      else if (kind === 'sync') y = mlp.inferSync({ x: t }).y;
      else if (kind === 'named') y = (await mlp.infer({ x: t }, { outputs: ['y'] })).y;
      else if (kind === 'supplied') y = (await mlp.infer({ x: t }, { outputs: { y: new Tensor('float32', new Float32Array(rows * 10), [rows, 10]) } })).y;
      else y = await (await mlp.infer({ x: t }, { outputLocation: 'device' })).y.download();
      expect(y.dims, `${k} ${kind}`).toEqual([rows, 10]);
      expect(Array.from(y.data as Float32Array), `${k} ${kind}`).toEqual(want.get(t));
    }
  });

  it('a DeviceTensor feed between usual calls of the same dims is encoded as one (never a reused spec)', async () => {
    const m = await loadModel(model('identity_float32.onnx'));
    try {
      const t = (v: number) => new Tensor('float32', new Float32Array([v, v + 1, v + 2]), [3]);
      const dev = (await m.infer({ x: t(10) }, { outputLocation: 'device' })).y;
      for (const [feed, want] of [[t(1), [1, 2, 3]], [dev, [10, 11, 12]], [t(4), [4, 5, 6]], [dev, [10, 11, 12]], [dev, [10, 11, 12]], [t(7), [7, 8, 9]]] as const) {
        const y = (await m.infer({ x: feed })).y;
        expect(Array.from(y.data as Float32Array)).toEqual(want);
      }
      dev.dispose();
    } finally {
      await m.dispose();
    }
  });

  it('returns outputs whose shape depends on the data', async () => {
    const m = await loadModel(model('nonzero.onnx'));
    const out = await m.infer({ x: new Tensor('float32', new Float32Array([0, 3, 0, 0, 5, 6]), [6]) });
    expect(out.indices.type).toBe('int64');
    expect(out.indices.dims).toEqual([1, 3]);
    expect(Array.from(out.indices.data as BigInt64Array)).toEqual([1n, 4n, 5n]);
    const none = m.inferSync({ x: new Tensor('float32', new Float32Array(4), [4]) });
    expect(none.indices.dims).toEqual([1, 0]);
    // A data-dependent shape cannot be allocated up front: it takes the counted copy path.
    expect(m.stats()).toMatchObject({ runs: 2, outputsZeroCopy: 0, outputsCopied: 2, bytesCopied: 24 });
    await m.dispose();
  });

  it('selects outputs by name', async () => {
    const m = await loadModel(model('two_inputs.onnx'));
    const a = new Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]);
    const b = new Tensor('float32', new Float32Array([2, 2, 2, 2]), [1, 4]);
    const out = await m.infer({ a, b }, { outputs: ['prod'] });
    expect(Object.keys(out)).toEqual(['prod']);
    expect(values(out.prod)).toEqual([2, 4, 6, 8]);
    await m.dispose();
  });

  it('keeps borrowed inputs alive when JS drops every reference mid-run', async () => {
    const m = await loadModel(model('slow.onnx'));
    const iters = new Tensor('int64', new BigInt64Array([40n]), []);
    const make = () => new Tensor('float32', Float32Array.from({ length: 256 * 256 }, (_, i) => Math.sin(i) * 0.1), [256, 256]);
    const expected = m.inferSync({ x: make(), iters });
    const pending: Array<Promise<Record<string, Tensor>>> = [];
    for (let i = 0; i < 4; i++) pending.push(m.infer({ x: make(), iters: new Tensor('int64', new BigInt64Array([40n]), []) }));
    for (let i = 0; i < 10; i++) {
      forceGC();
      // Churn the heap so a freed backing store would be reused and overwritten.
      const junk = Array.from({ length: 20 }, () => new Float32Array(256 * 256).fill(123));
      junk.length = 0;
      await new Promise((r) => setImmediate(r));
    }
    for (const out of await Promise.all(pending)) {
      expect(values(out.y)).toEqual(values(expected.y));
    }
    await m.dispose();
  });
});

describe('bad input is rejected with a clear error and nothing breaks', () => {
  let mlp: Model;
  let two: Model;
  beforeAll(async () => {
    mlp = await loadModel(model('mlp_tiny.onnx'));
    two = await loadModel(model('two_inputs.onnx'));
  });
  afterAll(async () => {
    await mlp.dispose();
    await two.dispose();
  });

  const f4 = (n = 4, dims = [1, 4]) => new Tensor('float32', new Float32Array(n), dims);

  it.each([
    ['unknown input', () => mlp.infer({ x: x64(), z: x64() }), /unknown input 'z' \(model inputs: x\)/],
    ['missing input', () => two.infer({ a: f4() }), /missing input 'b' \(expected float32 \[batch, 4\]\)/],
    ['wrong type', () => mlp.infer({ x: new Tensor('float64', new Float64Array(64), [1, 64]) }), /input 'x': expected type float32, received float64/],
    ['wrong rank', () => mlp.infer({ x: new Tensor('float32', new Float32Array(64), [64]) }), /input 'x': expected shape \[batch, 64\], received \[64\]/],
    ['wrong dim', () => mlp.infer({ x: new Tensor('float32', new Float32Array(63), [1, 63]) }), /input 'x': expected shape \[batch, 64\], received \[1, 63\]/],
    ['length != product(dims)', () => mlp.infer({ x: { type: 'float32', data: new Float32Array(10), dims: [1, 64] } }), /input 'x' data: dims \[1, 64\] need 64 elements, received a Float32Array of length 10/],
    ['negative dims', () => mlp.infer({ x: { type: 'float32', data: new Float32Array(64), dims: [-1, -64] } }), /input 'x' dims\[0\]: expected a non-negative integer, received number -1/],
    ['non-integer dims', () => mlp.infer({ x: { type: 'float32', data: new Float32Array(64), dims: [0.5, 128] } }), /dims\[0\]: expected a non-negative integer, received number 0.5/],
    ['not a tensor', () => mlp.infer({ x: [1, 2, 3] as never }), /input 'x': expected a Tensor, received an array of length 3/],
    ['feeds not an object', () => mlp.infer(null as never), /feeds: expected an object mapping input names to Tensors, received null/],
    ['wrong output buffer size', () => mlp.infer({ x: x64() }, { outputs: { y: new Tensor('float32', new Float32Array(9), [1, 9]) } }), /output 'y': expected shape \[batch, 10\], received \[1, 9\]/],
    ['wrong output buffer type', () => mlp.infer({ x: x64() }, { outputs: { y: new Tensor('int32', new Int32Array(10), [1, 10]) } }), /output 'y': expected type float32, received int32/],
    ['unknown output', () => mlp.infer({ x: x64() }, { outputs: ['nope'] }), /unknown output 'nope' \(model outputs: y\)/],
    ['unknown option', () => mlp.infer({ x: x64() }, { timeout: 5 } as never), /unknown option 'timeout'/],
    ['bad timeoutMs', () => mlp.infer({ x: x64() }, { timeoutMs: -5 }), /timeoutMs: expected a finite number > 0, received number -5/],
    ['bad signal', () => mlp.infer({ x: x64() }, { signal: {} as never }), /signal: expected an AbortSignal/],
  ])('%s → INVALID_ARGUMENT', async (_name, call, pattern) => {
    await rejectsWith(call as () => Promise<unknown>, 'INVALID_ARGUMENT', pattern);
    // inferSync throws the same error synchronously.
  });

  it('inferSync throws synchronously with the same codes', () => {
    expect(() => mlp.inferSync({ x: new Tensor('float32', new Float32Array(63), [1, 63]) })).toThrow(/expected shape \[batch, 64\]/);
    expect(() => mlp.inferSync({ x: x64() }, { timeoutMs: 5 } as never)).toThrow(/inferSync\(\) supports only `outputs`/);
  });

  it('a run-time ORT failure becomes RUNTIME_ERROR and the model keeps working', async () => {
    const m = await loadModel(model('reshape_fail.onnx'));
    const x = new Tensor('float32', new Float32Array(6), [6]);
    await rejectsWith(m.infer({ x, shape: new Tensor('int64', new BigInt64Array([4n, 4n]), [2]) }), 'RUNTIME_ERROR', /running model/);
    expect(() => m.inferSync({ x, shape: new Tensor('int64', new BigInt64Array([5n, 5n]), [2]) })).toThrow(NimifyError);
    const ok = await m.infer({ x, shape: new Tensor('int64', new BigInt64Array([2n, 3n]), [2]) });
    expect(ok.y.dims).toEqual([2, 3]);
    await m.dispose();
  });

  it('the native layer re-checks what TypeScript validated and never crashes', async () => {
    const { getBinding } = await import('../../src/runtime/binding');
    const session = await getBinding().createSession(model('mlp_tiny.onnx'), {});
    const call = (...args: unknown[]) => {
      try {
        (session.runSync as (...a: unknown[]) => unknown)(...args);
      } catch (err) {
        return (err as { code?: string }).code + ': ' + (err as Error).message;
      }
      return 'no error';
    };
    const x = new Float32Array(64);
    // The packed spec of src/runtime/io-plan.ts: [nIn, nOut, predicted, flags, ticket, runId, priority, timeoutUs, copied,
    // outIndex..., per input rank+dims, per output rank|-1 + dims].
    const spec = (inDims: unknown[][], outIndex: unknown[] = [0], outDims: (unknown[] | null)[] = [null], nIn: unknown = inDims.length, flags: unknown = 0, request: unknown[] = [0, 0, 0, 0, 0]) =>
      Float64Array.from([nIn, outIndex.length, 0, flags, ...request, ...outIndex, ...inDims.flatMap((d) => [d.length, ...d]), ...outDims.flatMap((d) => (d ? [d.length, ...d] : [-1]))] as number[]);
    const run = (inData: unknown[], inDims: unknown[][], outData: unknown[] = [null], outDims: (unknown[] | null)[] = [null], outIndex: unknown[] = [0]) =>
      call(inData, outData, spec(inDims, outIndex, outDims));
    expect(call()).toMatch(/^INVALID_ARGUMENT: run\(inputData, outputData, spec\)/);
    expect(call([x], [null], new Float32Array(4))).toMatch(/^INVALID_ARGUMENT: run\(inputData/);
    expect(call([x], [null], new Float64Array(1))).toMatch(/malformed spec header/);
    expect(call([x], [null], new Float64Array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1]))).toMatch(/input 'x': dims must be non-negative integers/);
    // Outputs copied at settlement (the header's copied mask): infer() only, never to the device.
    expect(call([x], [null], spec([[1, 64]], [0], [[1, 10]], 1, 0, [0, 0, 0, 0, 1]))).toMatch(/INVALID_ARGUMENT: run\(\): outputs copied at settlement need infer\(\)/);
    // The flags word: bits 0 (device-resident outputs) and 1 (DeviceTensor inputs) only; outputs never on the device with inferSync.
    expect(call([x], [null], spec([[1, 64]], [0], [null], 1, 4))).toMatch(/malformed spec header/);
    expect(call([x], [null], spec([[1, 64]], [0], [null], 1, 0.5))).toMatch(/malformed spec header/);
    expect(call([x], [null], spec([[1, 64]], [0], [null], 1, 1))).toMatch(/^INVALID_ARGUMENT: device-resident outputs need infer\(\), not inferSync\(\)/);
    expect(run([x], [[1, 63]])).toMatch(/INVALID_ARGUMENT: input 'x': expected shape \[batch, 64\], received \[1, 63\]/);
    expect(run([x], [[2, 64]])).toMatch(/input 'x': dims \[2, 64\] need 128 elements, received 64/);
    expect(run([x], [[-1, 64]])).toMatch(/input 'x': dims must be non-negative integers/);
    expect(run([x], [[0.5, 64]])).toMatch(/input 'x': dims must be non-negative integers/);
    expect(run([new Int32Array(64)], [[1, 64]])).toMatch(/type float32 needs a Float32Array, received a Int32Array/);
    expect(run(['nope'], [[1, 64]])).toMatch(/input 'x': data must be a Float32Array/);
    expect(run([x, x], [[1, 64], [1, 64]])).toMatch(/expected data and dims for 1 inputs/);
    expect(run([x], [[1, 64]], [null], [null], [5])).toMatch(/output 0 of the spec is not an output index/);
    expect(run([x], [[1, 64]], [null, null], [null, null], [0, 0])).toMatch(/output 'y' requested twice/);
    expect(run([x], [[1, 64]], [], [], [])).toMatch(/at least one output/);
    expect(run([x], [[1, 64]], [new Float32Array(3)], [[1, 10]])).toMatch(/output 'y': dims \[1, 10\] need 10 elements, received 3/);
    expect(run([x], [[1, 64]], [new Float32Array(10)], [null])).toMatch(/output 'y': a buffer was given without dims/);
    expect(run([x], [[1, 2 ** 60]])).toMatch(/input 'x': dims must be non-negative integers/); // beyond 2^53
    expect(run([x], [[2 ** 40, 2 ** 40]])).toMatch(/input 'x': dims \[1099511627776, 1099511627776\] are negative or overflow/);
    expect(run([x], [[1, 64]])).toBe('no error');
    // One tensor's data may come alone instead of in a one-entry array; an array is always the list.
    const one = (inArg: unknown, outArg: unknown, outDims: (unknown[] | null)[] = [null]) => call(inArg, outArg, spec([[1, 64]], [0], outDims));
    expect(one(x, null)).toBe('no error');
    expect(one(x, new Float32Array(10), [[1, 10]])).toBe('no error');
    expect(one(x, [null])).toBe('no error');
    expect(one(new Int32Array(64), null)).toMatch(/type float32 needs a Float32Array, received a Int32Array/);
    expect(one(undefined, null)).toMatch(/input 'x': data must be a Float32Array/);
    expect(one(x, new Float32Array(3), [[1, 10]])).toMatch(/output 'y': dims \[1, 10\] need 10 elements, received 3/);
    expect(call([], null, spec([[1, 64]], [0], [null]))).toMatch(/expected data and dims for 1 inputs in model order, received 0/);
    expect(call(x, null, spec([[1, 64]], [0, 0], [null, null]))).toMatch(/outputData and the spec disagree on outputs/);
    // run() is each session's own function (bound to its parts, not looked up through `this`):
    // it works from any receiver while the session lives, and refuses once it is released.
    // It settles the promise its spec's ticket names (src/runtime/settle.ts); the request's
    // numbers (ticket, run id, priority, timeout) are checked like the rest of the header.
    const { open, ticket, useSettler, SETTLE_KIND } = await import('../../src/runtime/settle');
    useSettler(getBinding());
    const asyncRun = session.run as (...a: unknown[]) => void;
    const results = open<unknown>((kind, value) => {
      if (kind === SETTLE_KIND.ERROR) throw value;
      return value;
    }, null, null);
    asyncRun.call(undefined, x, null, spec([[1, 64]], [0], [null], 1, 0, [ticket(), 0, 0, 0, 0]));
    const r = await results;
    expect(Array.isArray(r) && (r as unknown[]).length).toBe(1);
    for (const bad of [[-1, 0, 0, 0, 0], [1.5, 0, 0, 0, 0], [2 ** 31, 0, 0, 0, 0], [NaN, 0, 0, 0, 0], [0, -1, 0, 0, 0], [0, 0.5, 0, 0, 0], [0, 0, 2, 0, 0], [0, 0, 0, -1, 0], [0, 0, 0, Infinity, 0], [0, 0, 0, 0, -1], [0, 0, 0, 0, 0.5]]) {
      expect(() => asyncRun.call(undefined, x, null, spec([[1, 64]], [0], [null], 1, 0, bad))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/malformed spec header/) }));
    }
    // An output copied at settlement: dims and no buffer, numeric, at most copiedOutputBytes; not to the device.
    const copied = (outData: unknown, outDims: unknown[] | null, flags = 0) => {
      try {
        asyncRun.call(undefined, x, outData, spec([[1, 64]], [0], [outDims], 1, flags, [0, 0, 0, 0, 1]));
      } catch (err) {
        return (err as { code?: string }).code + ': ' + (err as Error).message;
      }
      return 'no error';
    };
    expect(copied(new Float32Array(10), [1, 10])).toMatch(/INVALID_ARGUMENT: output 'y': an output copied at settlement takes dims and no buffer/);
    expect(copied(null, null)).toMatch(/an output copied at settlement takes dims and no buffer/);
    expect(copied(null, [1, 11])).toMatch(/output 'y': expected shape \[batch, 10\], received \[1, 11\]/);
    expect(copied(null, [2, 10])).toMatch(/output 'y': an output copied at settlement must be numeric and at most 64 bytes, received \[2, 10\] of float32/);
    expect(copied(null, [1, 10], 1)).toMatch(/outputs copied at settlement need infer\(\) and outputs on the CPU/);
    session.release();
    expect(run([x], [[1, 64]])).toMatch(/^DISPOSED/);
    expect(() => asyncRun.call(session, x, null, spec([[1, 64]]))).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
  });
});

describe('caller code inside a call', () => {
  it('runs before the call is prepared, never between its preparation and submission (re-entrant infer() gets and gives the right results)', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'));
    try {
      const want = (t: Tensor) => Array.from(f32(m.inferSync({ x: t }, { outputs: { y: new Tensor('float32', new Float32Array(t.dims[0] * 10), [t.dims[0], 10]) } }).y));
      const [outerX, innerX] = [x64(0.2, 2), x64(0.5, 1)];
      const inner: Promise<Record<string, Tensor>>[] = [];
      const again = () => inner.push(m.infer({ x: innerX }, { outputs: ['y'] }));
      // An option getter (read once, while the options are validated), a signal's own
      // addEventListener, and a timing array's own fill() each call infer() on the same model.
      const signal = new AbortController().signal;
      signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
        again();
        EventTarget.prototype.addEventListener.apply(signal, args);
      }) as AbortSignal['addEventListener'];
      const timing = new Float64Array(64);
      timing.fill = (() => {
        again();
        return timing;
      }) as never;
      let reads = 0;
      const options = {
        get priority() {
          reads++;
          again();
          return 0 as const;
        },
        signal,
        timeoutMs: 60_000,
        timing,
      };
      const outer = await m.infer({ x: outerX }, options);
      expect(reads).toBe(1);
      expect(outer.y.dims).toEqual([2, 10]);
      expect(Array.from(f32(outer.y))).toEqual(want(outerX));
      expect(inner.length).toBeGreaterThanOrEqual(2);
      for (const r of await Promise.all(inner)) expect(Array.from(f32(r.y))).toEqual(want(innerX));
      // A pre-aborted signal still yields to the call's own validation error, then ABORTED.
      const done = AbortSignal.abort();
      await rejectsWith(m.infer({ nope: outerX } as never, { signal: done }), 'INVALID_ARGUMENT', /unknown input 'nope'/);
      await rejectsWith(m.infer({ x: outerX }, { signal: done }), 'ABORTED', /aborted before it started/);
    } finally {
      await m.dispose();
    }
  });
});

describe('non-blocking runs, abort, timeout and dispose', () => {
  const slowFeeds = (iters: bigint) => ({
    x: new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]),
    iters: new Tensor('int64', new BigInt64Array([iters]), []),
  });

  it('runs off the main thread: timers fire while a long run is in flight', async () => {
    const m = await loadModel(model('slow.onnx'));
    const ac = new AbortController();
    let settled = false;
    const run = m.infer(slowFeeds(1_000_000n), { signal: ac.signal }).finally(() => (settled = true));
    let ticks = 0;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 10));
      ticks++;
    }
    expect(ticks).toBe(5);
    expect(settled).toBe(false);
    ac.abort();
    await rejectsWith(run, 'ABORTED', /aborted/);
    await m.dispose();
  });

  it('AbortSignal terminates a running inference with ABORTED; a pre-aborted signal never starts', async () => {
    const m = await loadModel(model('slow.onnx'));
    const ac = new AbortController();
    const run = m.infer(slowFeeds(1_000_000n), { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await rejectsWith(run, 'ABORTED');
    await rejectsWith(m.infer(slowFeeds(1n), { signal: AbortSignal.abort() }), 'ABORTED', /before it started/);
    expect((await m.infer(slowFeeds(2n))).y.dims).toEqual([256, 256]);
    await m.dispose();
  });

  it('a Canceller (internal) ends a running call with ABORTED, is disarmed when a call settles, and refuses a call once cancelled', async () => {
    const m = await loadModel(model('slow.onnx'));
    const batched = await loadModel(model('slow.onnx'), { batching: {} });
    for (const x of [m, batched]) {
      const c = new Canceller();
      const run = x.infer(slowFeeds(1_000_000n), { canceller: c });
      expect(c.onCancel).not.toBeNull();
      setTimeout(() => c.cancel(), 50);
      await rejectsWith(run, 'ABORTED');
      expect(c.onCancel).toBeNull();
      await rejectsWith(x.infer(slowFeeds(1n), { canceller: c }), 'ABORTED', /before it started/);
      // A call that settles disarms its canceller: a later cancel() touches nothing.
      const d = new Canceller();
      expect((await x.infer(slowFeeds(1n), { canceller: d })).y.dims).toEqual([256, 256]);
      expect(d.onCancel).toBeNull();
      d.cancel();
      expect((await x.infer(slowFeeds(2n))).y.dims).toEqual([256, 256]);
    }
    // A queued call behind a running one is dropped before it runs.
    const first = batched.infer(slowFeeds(3000n));
    const q = new Canceller();
    const queued = batched.infer(slowFeeds(3000n), { canceller: q });
    q.cancel();
    await rejectsWith(queued, 'ABORTED');
    await first;
    await rejectsWith(m.infer(slowFeeds(1n), { canceller: { onCancel: null, cancel() {} } as never }), 'INVALID_ARGUMENT', /options\.canceller: expected a Canceller/);
    await Promise.all([m.dispose(), batched.dispose()]);
  });

  it('timeoutMs terminates the run with TIMEOUT and the model keeps working', async () => {
    const m = await loadModel(model('slow.onnx'));
    await rejectsWith(m.infer(slowFeeds(1_000_000n), { timeoutMs: 50 }), 'TIMEOUT', /timed out/);
    const ok = await m.infer(slowFeeds(1n), { timeoutMs: 60_000 });
    expect(ok.y.dims).toEqual([256, 256]);
    await m.dispose();
  });

  it('many concurrent infer() calls on one model each get their own correct result', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'));
    const inputs = Array.from({ length: 64 }, (_, i) => x64(0.01 * (i + 1)));
    const expected = inputs.map((x) => m.inferSync({ x }).y);
    const results = await Promise.all(inputs.map((x) => m.infer({ x })));
    results.forEach((r, i) => expect(values(r.y)).toEqual(values(expected[i])));
    await m.dispose();
  });

  it('dispose() waits for in-flight runs, then every call fails with DISPOSED', async () => {
    const m = await loadModel(model('slow.onnx'));
    const running = m.infer(slowFeeds(20n));
    const disposed = m.dispose();
    expect(m.disposed).toBe(true);
    expect(m.dispose()).toBe(disposed);
    const out = await running;
    expect(out.y.dims).toEqual([256, 256]);
    await disposed;
    expect(m.pending).toBe(0);
    await rejectsWith(m.infer(slowFeeds(1n)), 'DISPOSED');
    expect(() => m.inferSync(slowFeeds(1n))).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
    expect(m.inputs.map((i) => i.name)).toEqual(['x', 'iters']);
  });
});

describe('whenIdle', () => {
  it('resolves once every pending infer() settled, queued ones included', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 4, maxQueueDelayMicros: 1000, adaptive: false } });
    await m.whenIdle(); // nothing pending: at once
    const x = new Tensor('float32', new Float32Array(64), [1, 64]);
    let settled = 0;
    const calls = Array.from({ length: 10 }, () => m.infer({ x }).then(() => settled++));
    expect(m.pending).toBe(10);
    await m.whenIdle();
    expect(m.pending).toBe(0);
    await Promise.all(calls);
    expect(settled).toBe(10);
    await m.dispose();
  });
});

describe('allowSpinning', () => {
  it('is passed to ORT as a boolean and validated', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, intraOpNumThreads: 2 });
    const { y } = await m.infer({ x: new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) });
    expect(y.dims).toEqual([1, 10]);
    await m.dispose();
    await expect(loadModel(model('mlp_tiny.onnx'), { allowSpinning: 'no' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('options.allowSpinning') });
  });
});

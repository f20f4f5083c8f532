import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { expect } from 'vitest';
import { NimifyError, Tensor, type TensorType } from '../src';

export const ROOT = path.resolve(__dirname, '..');
export const MODELS = path.join(ROOT, 'test', 'fixtures', 'models');
export const model = (name: string): string => path.join(MODELS, name);

const CTORS: Record<Exclude<TensorType, 'string'>, { new (b: ArrayBuffer, o: number, n: number): ArrayLike<unknown>; BYTES_PER_ELEMENT: number }> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array,
  uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array,
} as never;

export interface RefTensor { type: TensorType; dims: number[]; data: string }
export interface RefCase { inputs: Record<string, RefTensor>; outputs: Record<string, RefTensor> }

export function decode(ref: RefTensor): Tensor {
  const bytes = Buffer.from(ref.data, 'base64');
  const ctor = CTORS[ref.type as Exclude<TensorType, 'string'>];
  const ab = new ArrayBuffer(bytes.length);
  new Uint8Array(ab).set(bytes);
  return new Tensor(ref.type, new ctor(ab, 0, bytes.length / ctor.BYTES_PER_ELEMENT) as never, ref.dims);
}

export function reference(name: string): { model: string; cases: RefCase[] } {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'reference', `${name}.json`), 'utf8'));
}

/** A real major GC without --expose-gc. */
export const forceGC: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A tensor's elements as a plain array, for comparisons. */
export const values = (t: Tensor): unknown[] => Array.from(t.data as ArrayLike<unknown>);
export const f32 = (t: Tensor): Float32Array => t.data as Float32Array;

/** Runs `fn` and checks that it throws a NimifyError INVALID_ARGUMENT whose message matches `pattern`. */
export function invalidArg(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected an INVALID_ARGUMENT error');
}

/** A one-node model written on the fly: x float32 `xDims` → y = op(x) float32 `yDims`. */
export function unaryModel(name: string, op: string, xDims: Array<number | string>, yDims: Array<number | string>, attrs?: Record<string, unknown>): Buffer {
  const { encodeModel } = require('../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };
  return encodeModel({ name, nodes: [{ op, inputs: ['x'], outputs: ['y'], ...(attrs ? { attrs } : {}) }], initializers: [], inputs: [{ name: 'x', dims: xDims }], outputs: [{ name: 'y', dims: yDims }] });
}

/**
 * The "slots" model of the I/O-slot tests (io-slots.test.ts, device-tensor.test.ts), written on
 * the fly: x float32 [batch, 1 × (rank - 2), 2] → same = Identity(x); zeros =
 * ConstantOfShape(Shape(x)) declared with last dim 3 though it has x's 2 (ORT's shape inference
 * cannot see through it, so TypeScript allocates a wrong predicted buffer); copied = Identity(x)
 * declared with last dim 3 too (there ORT's inference disagrees: the dim is unknown, the copy path).
 */
export function slotModel(rank: number): Buffer {
  const { encodeModel } = require('../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };
  const middle = Array.from({ length: rank - 2 }, () => 1);
  const dims = ['batch', ...middle, 2];
  const wrong = ['batch', ...middle, 3];
  return encodeModel({
    name: `slots_rank${rank}`,
    nodes: [
      { op: 'Identity', inputs: ['x'], outputs: ['same'] },
      { op: 'Shape', inputs: ['x'], outputs: ['shape'] },
      { op: 'ConstantOfShape', inputs: ['shape'], outputs: ['zeros'] },
      { op: 'Identity', inputs: ['x'], outputs: ['copied'] },
    ],
    initializers: [],
    inputs: [{ name: 'x', dims }],
    outputs: [
      { name: 'same', dims },
      { name: 'zeros', dims: wrong },
      { name: 'copied', dims: wrong },
    ],
  });
}

/** Writes `content` at `rel` under `root`, making its folders (a model repository in a test). */
/**
 * A model repository in a new temporary folder: each `name` gets version 1, a copy of the fixture
 * model `<fixture>.onnx`. The folder is pushed onto `made`, for the caller to remove.
 */
export function fixtureRepo(models: Record<string, string>, made: string[], prefix = 'nimify-repo-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  for (const [name, fixture] of Object.entries(models)) writeFile(dir, path.join(name, '1', 'model.onnx'), fs.readFileSync(path.join(MODELS, `${fixture}.onnx`)));
  return dir;
}

export function writeFile(root: string, rel: string, content: Buffer | string): void {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}

/** Runs `load` with NIMIFY_IO_BINDING=`knob` (read when a model loads), restoring the variable after. */
export async function withIoBinding<T>(knob: string, load: () => Promise<T>): Promise<T> {
  const before = process.env.NIMIFY_IO_BINDING;
  process.env.NIMIFY_IO_BINDING = knob;
  try {
    return await load();
  } finally {
    if (before === undefined) delete process.env.NIMIFY_IO_BINDING;
    else process.env.NIMIFY_IO_BINDING = before;
  }
}

/** setImmediate callbacks that ran while `work` did: how often the event loop turned. */
export async function iterationsDuring(work: () => Promise<unknown>): Promise<number> {
  let iterations = 0;
  let stop = false;
  const tick = () => {
    if (stop) return;
    iterations++;
    setImmediate(tick);
  };
  setImmediate(tick);
  await work();
  stop = true;
  return iterations;
}

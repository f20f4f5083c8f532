import { describe, expect, it } from 'vitest';
import { NimifyError, Tensor, TENSOR_TYPES } from '../../src';
import { invalidArg } from '../helpers';


describe('Tensor', () => {
  it('lists the fourteen element types', () => {
    expect([...TENSOR_TYPES].sort()).toEqual(
      ['bfloat16', 'bool', 'float16', 'float32', 'float64', 'int16', 'int32', 'int64', 'int8', 'string', 'uint16', 'uint32', 'uint64', 'uint8'].sort(),
    );
  });

  it('keeps the caller typed array (no copy)', () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = new Tensor('float32', data, [2, 3]);
    expect(t.data).toBe(data);
    expect(t.dims).toEqual([2, 3]);
    expect(t.size).toBe(6);
    expect(new Tensor('float32', data).dims).toEqual([6]);
  });

  it('converts plain arrays for convenience', () => {
    expect(new Tensor('int64', [1, 2, 3]).data).toEqual(new BigInt64Array([1n, 2n, 3n]));
    expect(new Tensor('bool', [true, false, 1]).data).toEqual(new Uint8Array([1, 0, 1]));
    expect(new Tensor('float64', [0.5], [1, 1]).data).toEqual(new Float64Array([0.5]));
    expect(new Tensor('string', ['a', 'b'], [2]).data).toEqual(['a', 'b']);
  });

  it('accepts the typed array of each type and refuses others', () => {
    expect(new Tensor('float16', new Uint16Array(2)).type).toBe('float16');
    expect(new Tensor('bfloat16', new Uint16Array(2)).type).toBe('bfloat16');
    expect(new Tensor('uint64', new BigUint64Array(2)).type).toBe('uint64');
    invalidArg(() => new Tensor('float32', new Float64Array(2) as never), /Float32Array.*received a Float64Array/);
    invalidArg(() => new Tensor('int64', new Int32Array(2) as never), /BigInt64Array/);
    invalidArg(() => new Tensor('string', new Uint8Array(2) as never), /array of strings/);
  });

  it('rejects bad types, dims and lengths with messages naming them', () => {
    invalidArg(() => new Tensor('float128' as never, new Float32Array(1) as never), /tensor type: expected one of .* received the string "float128"/);
    invalidArg(() => new Tensor('float32', new Float32Array(6), [2, 2]), /dims \[2, 2\] need 4 elements, received a Float32Array of length 6/);
    invalidArg(() => new Tensor('float32', new Float32Array(2), [-1, -2]), /dims\[0\]: expected a non-negative integer, received number -1/);
    invalidArg(() => new Tensor('float32', new Float32Array(2), [1.5, 2]), /non-negative integer, received number 1.5/);
    invalidArg(() => new Tensor('float32', new Float32Array(2), '2' as never), /tensor dims: expected an array/);
    invalidArg(() => new Tensor('float32', ['a'] as never), /data\[0\]: expected a number/);
    invalidArg(() => new Tensor('string', ['a', 3] as never), /data\[1\]: expected a string, received number 3/);
    invalidArg(() => new Tensor('float32', 42 as never), /Float32Array/);
  });

  it('Tensor.from accepts tensor-like objects (e.g. onnxruntime-node tensors) and names the tensor in errors', () => {
    const like = { type: 'float32', data: new Float32Array(4), dims: [2, 2] };
    const t = Tensor.from(like) as Tensor<'float32'>;
    expect(t).toBeInstanceOf(Tensor);
    expect(t.data).toBe(like.data);
    invalidArg(() => Tensor.from({ type: 'float32', data: new Float32Array(3), dims: [2, 2] }, "input 'x'"), /^input 'x' data: dims/);
    invalidArg(() => Tensor.from(7, "input 'x'"), /input 'x': expected a Tensor/);
  });
});

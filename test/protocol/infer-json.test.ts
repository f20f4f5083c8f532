/**
 * parseInferJson (src/protocol/infer-json.ts, native/json_scan.cc): numeric `inputs[i].data`
 * arrays read by the addon's scanner. The oracle is the plain path (secure-json-parse over the
 * whole text, then the codec): for every body — valid, malformed, hostile, random — both give the
 * same value (the same doubles, -0 included) or the same error, and decoding gives the same
 * tensors or the same error.
 */
import { describe, expect, it } from 'vitest';
import { addonIfLoadable } from '../../src/runtime/binding';
import { NimifyError } from '../../src/runtime/errors';
import type { Datatype } from '../../src/protocol/datatypes';
import { JsonNumbers, parseInferJson } from '../../src/protocol/infer-json';
import { parseUntrustedJson } from '../../src/protocol/json';
import { decodeInferRequest, type WireModel } from '../../src/protocol/request';

const addon = addonIfLoadable()!;

/** An array's leaves in row-major order and how deep its arrays nest (1: flat; empty ones count). */
function leaves(a: unknown[]): { values: unknown[]; depth: number } {
  const values: unknown[] = [];
  let deepest = 0;
  const walk = (x: unknown[], d: number) => {
    deepest = Math.max(deepest, d);
    for (const v of x) if (Array.isArray(v)) walk(v, d + 1); else values.push(v);
  };
  walk(a, 1);
  return { values, depth: deepest };
}

/**
 * The value as the codec sees it: every inputs[i].data array whose leaves are all numbers (and
 * every JsonNumbers) as its leaves and depth — all the codec reads of one (jsonElements).
 */
function plain(v: unknown): unknown {
  const inputs = (v as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs)) return v;
  return {
    ...(v as object),
    inputs: inputs.map((input) => {
      if (input === null || typeof input !== 'object' || !('data' in input)) return input;
      const data = (input as { data: unknown }).data;
      if (data instanceof JsonNumbers) return { ...input, data: { values: Array.from(data.values), depth: data.depth } };
      if (Array.isArray(data)) {
        const l = leaves(data);
        if (l.values.length > 0 && l.values.every((x) => typeof x === 'number')) return { ...input, data: l };
      }
      return input;
    }),
  };
}

/** Deep equality that tells -0 from 0 and NaN from NaN (Object.is at the leaves). */
function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a !== null && typeof a === 'object') {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b as object);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return Object.is(a, b);
}

type Outcome = { value: unknown } | { code: string; message: string };

function outcome(fn: () => unknown): Outcome {
  try {
    return { value: fn() };
  } catch (err) {
    if (!(err instanceof NimifyError)) throw err;
    return { code: err.code, message: err.message };
  }
}

/** Both paths on `text`: the same value or the same error. Returns whether the scanner took an array. */
function check(text: string): boolean {
  const body = Buffer.from(text);
  const fast = outcome(() => parseInferJson('request body', body));
  const slow = outcome(() => parseUntrustedJson('request body', text));
  if ('value' in slow) {
    expect('value' in fast, `${text.slice(0, 200)}: ${JSON.stringify(fast)}`).toBe(true);
    const v = (fast as { value: unknown }).value;
    expect(same(plain(v), plain(slow.value)), text.slice(0, 200)).toBe(true);
    return JSON.stringify(v, (_k, x) => (x instanceof JsonNumbers ? 'JsonNumbers' : x)).includes('JsonNumbers');
  }
  expect(fast, text.slice(0, 200)).toEqual(slow);
  return false;
}

const f32 = (n: number, seed = 1) => {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 16807) % 2147483647;
    return Math.fround((s / 2147483647) * 2 - 1);
  });
};

describe('parseInferJson: the scanner takes flat numeric data arrays', () => {
  it('takes a Triton-client body and gives JSON.parse\'s doubles', () => {
    const data = f32(64);
    const text = JSON.stringify({ id: 'a', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data }], outputs: [{ name: 'y' }] });
    const v = parseInferJson('request body', Buffer.from(text)) as { inputs: Array<{ data: unknown }> };
    expect(v.inputs[0].data).toBeInstanceOf(JsonNumbers);
    expect(Array.from((v.inputs[0].data as JsonNumbers).values)).toEqual(data);
    expect(check(text)).toBe(true);
  });

  it('reads every number form JSON allows as JSON.parse does', () => {
    const numbers = [
      '0', '-0', '1', '-1', '0.5', '-0.0', '1e3', '1E3', '1e+3', '1e-3', '-1.5e-7', '123456789012345678901234567890',
      '0.1', '0.30000000000000004', '9007199254740993', '1.7976931348623157e308', '5e-324', '2.2250738585072014e-308',
      '4.9406564584124654e-324', '1.00000000000000011102230246251565404236316680908203125', '0.000000000000000000000000000001',
    ];
    for (const n of numbers) expect(check(`{"inputs":[{"name":"x","datatype":"FP64","shape":[8],"data":[${n}, ${n},${n} ,${n},${n},${n},${n},${n}]}]}`), n).toBe(true);
  });

  it('leaves to JSON.parse what it does not take, with the same result', () => {
    const bodies = [
      // out of double range: JSON.parse gives Infinity or 0
      '{"inputs":[{"name":"x","datatype":"FP64","shape":[3],"data":[1e400, 1.0, 2.0000000]}]}',
      '{"inputs":[{"name":"x","datatype":"FP64","shape":[3],"data":[1e-400, 1.0, 2.0000000]}]}',
      // mixed, booleans, strings, empty, short, nested past the scanner's depth
      `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":${'['.repeat(70)}1.5${']'.repeat(70)}}]}`,
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[4],"data":[[1.5,2.5],[3.5,"4.5"]]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[4],"data":[[1.5,2.5],{"a":3.5}]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1.5,"2.5",3.5,4.555555]}]}',
      '{"inputs":[{"name":"x","datatype":"BOOL","shape":[3],"data":[true,false,true,true,false]}]}',
      '{"inputs":[{"name":"x","datatype":"BYTES","shape":[2],"data":["abc","\\u0000def"]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[0],"data":[]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[],"data":2.5}]}',
      // numeric arrays elsewhere are never taken
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2,3,4,5,6,7,8],"data":null}],"parameters":{"data":[1,2,3,4,5,6,7,8,9]}}',
      '{"data":[1,2,3,4,5,6,7,8,9,10,11],"inputs":[]}',
      '{"outputs":[{"name":"y","data":[1,2,3,4,5,6,7,8,9,10]}],"inputs":[]}',
      '{"inputs":{"data":[1,2,3,4,5,6,7,8,9,10]}}',
      '{"inputs":[[{"data":[1,2,3,4,5,6,7,8,9,10]}]]}',
      // a key spelled with an escape is the same key to JSON.parse; the scanner leaves it
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"d\\u0061ta":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      // placeholder forging: a string where an array would be taken
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]},{"name":"z","datatype":"FP32","shape":[6],"data":"\\u00000"}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5],"data":"\\u00000"}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":"\\u00000"}]}',
      // … or behind a key JSON.parse reads as data or inputs (escapes), which the scanner leaves
      '{"inputs":[{"name":"a","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5],"d\\u0061ta":"\\u00000"}]}',
      '{"inputs":[{"name":"a","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5],"d\\u0061ta":"\\u0000"}]}',
      '{"inputs":[{"name":"a","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}],"inp\\u0075ts":[{"name":"b","data":"\\u00000"}]}',
      '{"inputs":[{"name":"a","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}],"inp\\u0075ts":[{"name":"b","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      // byte-order mark, whitespace of every kind
      '\uFEFF{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      ' \t\r\n{ "inputs" : [ { "name" : "x" , "datatype":"FP32","shape":[6],"data" : [ 1.5 ,\n2.5\t,\r3.5 , 4.5,5.5,6.5 ] } ] }\n ',
    ];
    for (const b of bodies) check(b);
  });

  it('keeps JSON.parse\'s last value for a duplicate key, and its other arrays', () => {
    expect(check('{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5],"data":[7.5,8.5,9.5,10.5,11.5,12.5]}]}')).toBe(true);
    expect(check('{"inputs":[{"name":"a","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}],"inputs":[{"name":"b","datatype":"FP32","shape":[6],"data":[7.5,8.5,9.5,10.5,11.5,12.5]},{"name":"c","datatype":"FP32","shape":[6],"data":[1.25,2.5,3.5,4.5,5.5,6.5]}]}')).toBe(true);
  });

  it('gives the plain path\'s error for malformed and hostile bodies', () => {
    const bodies = [
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5,]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[01.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[+1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1e,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[NaN,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[Infinity,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5 2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[0x10,2.5,3.5,4.5,5.5,6.5]}]}',
      // what std::from_chars reads beyond JSON's grammar (the scanner reads values with it)
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.e5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[-inf,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[-nan,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[-Infinity,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[-01.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[00,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[2.5,3.5,4.5,5.5,6.5,1.]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1e+,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[-,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[2.5,3.5,4.5,5.5,6.5,7e]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[2.5,3.5,4.5,5.5,6.5,-',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[2.5,3.5,4.5,5.5,6.5,0',
      '{"inputs":[{"name":"x\u0001","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"\\x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]} x',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}{}',
      '{"__proto__":{"a":1},"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"constructor":{"prototype":{"a":1}},"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}],"x":tru}',
      `${'['.repeat(100)}${']'.repeat(100)}`,
      `{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}],"deep":${'['.repeat(100)}1${']'.repeat(100)}}`,
      '[1.5,2.5,3.5,4.5,5.5,6.5,7.5,8.5,9.5,10.5,11.5,12.5]',
      '"inputs inputs inputs inputs inputs inputs inputs inputs inputs"',
    ];
    for (const b of bodies) check(b);
  });

  it('agrees with the plain path on 3,000 random and mutated bodies', () => {
    let s = 12345;
    const rnd = (n: number) => {
      s = (s * 16807) % 2147483647;
      return s % n;
    };
    const numberText = () => {
      const forms = [
        () => String(Math.fround((rnd(2000001) - 1000000) / 7777)),
        () => String(rnd(1000) - 500),
        // Now and then out of double range (JSON.parse: Infinity or 0; the scanner leaves the body).
        () => `${rnd(10)}.${rnd(100000)}e${['', '+', '-'][rnd(3)]}${rnd(50) === 0 ? 300 + rnd(30) : rnd(300)}`,
        () => `-0${rnd(2) ? '.0' : ''}`,
        () => String((rnd(1000) - 500) * 1e300),
        () => `${1 + rnd(9)}${'0'.repeat(rnd(30))}.9${'9'.repeat(rnd(30))}`,
      ];
      return forms[rnd(forms.length)]();
    };
    const ws = () => [' ', '', '\n', '\t', '  ', '\r\n'][rnd(6)];
    let taken = 0;
    for (let i = 0; i < 3000; i++) {
      const inputs = Array.from({ length: 1 + rnd(3) }, (_, j) => {
        const count = 2 + rnd(40);
        const nums = Array.from({ length: count }, numberText);
        const data = rnd(5) === 0 ? `[${nums.map((n) => (rnd(3) ? `[${ws()}${n}]` : `[[${n}],${ws()}[]]`)).join(',')}]` : `[${ws()}${nums.join(`${ws()},${ws()}`)}${ws()}]`;
        // Now and then a member JSON.parse reads as a second `data` (an escaped key), holding a would-be placeholder.
        const forged = rnd(8) === 0 ? `,"d\\u0061ta":"\\u0000${rnd(3)}"` : '';
        return `{${ws()}"name":"in${j}","datatype":"FP32","shape":[${count}],${ws()}"data"${ws()}:${ws()}${data}${forged}}`;
      });
      const key = rnd(12) === 0 ? 'inp\\u0075ts' : 'inputs';
      let text = `{"id":"r${i}",${ws()}"${key}":${ws()}[${inputs.join(',')}],"parameters":{"p":${rnd(9)}}}`;
      // A third are mutated: a byte changed, a cut, or a byte inserted.
      const m = rnd(9);
      const at = rnd(text.length);
      const junk = '[]{},:"\\-+.eE0123456789 tfnu\u0000x';
      if (m === 0) text = text.slice(0, at) + junk[rnd(junk.length)] + text.slice(at + 1);
      else if (m === 1) text = text.slice(0, at);
      else if (m === 2) text = text.slice(0, at) + junk[rnd(junk.length)] + text.slice(at);
      if (check(text)) taken++;
    }
    // The comparison means something only if the scanner took many of them (mutations, forged
    // members, escaped keys and out-of-range numbers send the rest the plain way).
    expect(taken).toBeGreaterThan(1000);
  });
});

describe('parseInferJson: decoding what it took', () => {
  const model = (datatype: Datatype, rank: number): WireModel => ({ inputs: [{ name: 'x', datatype, shape: new Array(rank).fill(-1) }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }], batched: false });

  function decodeBoth(datatype: Datatype, dataText: string, shape: number[]) {
    const text = `{"inputs":[{"name":"x","datatype":"${datatype}","shape":[${shape.join(',')}],"data":${dataText}}]}`;
    const fastJson = parseInferJson('request body', Buffer.from(text)) as Record<string, unknown>;
    const slowJson = parseUntrustedJson('request body', text) as Record<string, unknown>;
    const fast = outcome(() => decodeInferRequest(model(datatype, shape.length), fastJson, null).feeds.x);
    const slow = outcome(() => decodeInferRequest(model(datatype, shape.length), slowJson, null).feeds.x);
    return { fast, slow, took: ((fastJson.inputs as Array<{ data: unknown }>)[0].data instanceof JsonNumbers) };
  }

  it('gives the same tensors and the same errors for every datatype', () => {
    const cases: Array<[Datatype, string, number | number[]]> = [
      ['FP32', '[0.1, -0.0, 3.4028235677973366e38, 1e-46, 16777217, 0.30000000000000004]', 6],
      ['FP64', '[0.1, -0.0, 1.7976931348623157e308, 5e-324, 9007199254740993, 2.5]', 6],
      ['FP16', '[0.1, -0.0, 65504, 65520, 1e-8, 2.5]', 6],
      ['BF16', '[0.1, -0.0, 3.4e38, 1e-40, 7.0, 2.5]', 6],
      ['INT8', '[-128, 127, 0, 1, 2, 3]', 6],
      ['INT8', '[-128, 128, 0, 1, 2, 3]', 6],
      ['UINT8', '[0, 255, 1.5, 1, 2, 3]', 6],
      ['INT32', '[-2147483648, 2147483647, 0, 1, 2, 3]', 6],
      ['UINT32', '[4294967295, 0, 1, 2, 3, -1]', 6],
      ['INT64', '[9007199254740991, -9007199254740991, 0, 1, 2, 3]', 6],
      ['INT64', '[9007199254740992, 0, 0, 1, 2, 3]', 6],
      ['UINT64', '[0, 1, 2, 3, 4, 5]', 6],
      ['BOOL', '[0, 1, 0, 1, 0, 1]', 6],
      ['BYTES', '[10, 11, 12, 13, 14, 15]', 6],
      ['FP32', '[1.5, 2.5, 3.5, 4.5, 5.5, 6.5]', 5],
      ['FP32', '[1.5, 2.5, 3.5, 4.5, 5.5, 6.5]', 7],
      // nested (row-major lists): as deep as the rank, deeper, ragged, with empty lists
      ['FP32', '[[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]', [2, 3]],
      ['FP32', '[[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]', [6]],
      ['FP32', '[[[1.5, 2.5, 3.5]], [[4.5, 5.5, 6.5]]]', [2, 3]],
      ['FP32', '[[1.5], [2.5, 3.5, 4.5, 5.5], [6.5]]', [3, 2]],
      ['INT32', '[[1, 2, 3], [], [4, 5, 6], [[]]]', [2, 3]],
      ['INT32', '[[1, 2, 3], [], [4, 5, 6], [[]]]', [2, 3, 1]],
      ['UINT8', '[[1, 2, 3], [4, 5, 256]]', [2, 3]],
      ['FP32', '[[1.5, 2.5, 3.5], [4.5, 5.5]]', [2, 3]],
    ];
    for (const [datatype, data, count] of cases) {
      const { fast, slow, took } = decodeBoth(datatype, data, typeof count === 'number' ? [count] : count);
      expect(took, `${datatype} ${data}`).toBe(true);
      if ('value' in slow) {
        expect('value' in fast, `${datatype} ${data}: ${'message' in fast ? fast.message : ''}`).toBe(true);
        const a = (fast as { value: { type: string; dims: number[]; data: unknown } }).value;
        const b = slow.value as { type: string; dims: number[]; data: unknown };
        expect([a.type, a.dims]).toEqual([b.type, b.dims]);
        expect(Object.prototype.toString.call(a.data)).toBe(Object.prototype.toString.call(b.data));
        expect(same(Array.from(a.data as ArrayLike<unknown>), Array.from(b.data as ArrayLike<unknown>)), `${datatype} ${data}`).toBe(true);
      } else {
        expect(fast, `${datatype} ${data}`).toEqual(slow);
      }
    }
  });
});

describe('scanInferJson (native): distrusts its arguments', () => {
  const body = Buffer.from('{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":[1.5,2.5,3.5,4.5,5.5,6.5]}]}');
  const nums = new Float64Array(64);
  const out = Buffer.alloc(body.length);
  const spans = new Uint32Array(9);

  it('takes a body into buffers of the right kinds', () => {
    expect(addon.scanInferJson(body, body.length, nums, out, spans)).toBe(1);
    expect(out.toString('utf8', 0, spans[0])).toBe('{"inputs":[{"name":"x","datatype":"FP32","shape":[6],"data":"\\u00000"}]}');
    expect([spans[1], spans[2], spans[3]]).toEqual([0, 6, 1]);
    expect(Array.from(nums.subarray(0, 6))).toEqual([1.5, 2.5, 3.5, 4.5, 5.5, 6.5]);
  });

  it('asks for room when nums is too small, and falls back when spans is', () => {
    expect(addon.scanInferJson(body, body.length, new Float64Array(5), out, spans)).toBe(-2);
    expect(addon.scanInferJson(body, body.length, nums, out, new Uint32Array(3))).toBe(-1);
  });

  it('refuses wrong kinds, a length past the body or the output, and missing arguments', () => {
    const bad: unknown[][] = [
      [body, body.length, new Float32Array(64), out, spans],
      [body, body.length, nums, new Uint16Array(200), spans],
      [body, body.length, nums, out, new Int32Array(9)],
      ['text', 4, nums, out, spans],
      [body, body.length + 1, nums, out, spans],
      [body, -1, nums, out, spans],
      [body, Number.NaN, nums, out, spans],
      [body, body.length, nums, Buffer.alloc(10), spans],
      [body, body.length, nums, out, new Uint32Array(0)],
      [body, '5', nums, out, spans],
      [body, body.length, nums, out],
    ];
    for (const args of bad) {
      expect(() => (addon.scanInferJson as (...a: unknown[]) => number)(...args)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
    }
  });
});

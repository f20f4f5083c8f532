/**
 * Malformed-input suite for the HTTP server (SPEC R1): every malformed request class is answered
 * with a 4xx and a stable `code` from ERROR_TABLE; fuzzed requests never produce a 5xx or a crash;
 * the server keeps serving valid inferences (checked after every group and at the end).
 *
 * Also covers R5's "repository API refuses path traversal": names and versions with `..`, encoded
 * slashes and the like in every route that takes them, over a real socket (inject() normalizes
 * `%2e%2e` segments the way a WHATWG URL does, which a real client need not do), and the repository
 * load/unload API with file-system spies proving nothing outside the repository is read.
 *
 * Assertions marked `// Regression:` pin bugs this suite found (now fixed in src); their comments
 * say what used to happen.
 *
 * Every server here turns off the event-loop-delay probe of load shedding
 * (`shedding: { maxEventLoopDelayMs: 0 }`): on a shared 2-core machine a slow tick would turn an
 * expected 400 into a legitimate 503 OVERLOADED and make exact-status assertions flaky. Concurrency
 * and queue shedding stay on; the circuit breaker keeps its defaults.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ERROR_TABLE, loadModel, Tensor } from '../../src';
import { buildServer } from '../../src/server';
import { fixtureRepo, maxAbsDiff, MODELS } from '../helpers';

// Records every model file the repository asks ONNX Runtime to open (the native side reads it, so
// file-system spies alone would miss it).
const loadedFiles: string[] = [];
vi.mock('../../src/runtime/model', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../src/runtime/model')>();
  return {
    ...orig,
    // The repository's entry point (loadModel() with its config's pipeline already checked).
    loadModelWith: (...args: Parameters<typeof orig.loadModelWith>) => {
      if (typeof args[0] === 'string') loadedFiles.push(args[0]);
      return orig.loadModelWith(...args);
    },
  };
});

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers

const FIXTURES = ['mlp_tiny', 'two_inputs', 'identity_string', 'embed_int64'];
/** A valid model name of 120 characters (NAME_RE allows up to 128). */
const LONG_NAME = `m${'a'.repeat(119)}`;
const NO_SHED = { maxEventLoopDelayMs: 0 };
const tmpDirs: string[] = [];

const makeRepo = (models: Record<string, string>): string => fixtureRepo(models, tmpDirs, 'nimify-malformed-');

/** The valid request every "still serving" check sends: x = [2, 64]. */
const X = Array.from({ length: 128 }, (_, i) => Math.round(Math.sin(i) * 1000) / 1000);
const VALID = { inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: X }] };
const VALID_TEXT = JSON.stringify(VALID);
/** y for X, computed by loading mlp_tiny directly (no server). */
let expectedY: number[] = [];

interface Res {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
  rawPayload: Buffer;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Asserts the exact status and code, and the protocol's error shape. */
function expectError(res: Res, status: number, code: keyof typeof ERROR_TABLE): void {
  const body = parseJson(res.body) as { error?: unknown; code?: unknown } | undefined;
  expect({ status: res.statusCode, code: body?.code, body: res.body.slice(0, 400) }).toMatchObject({ status, code });
  expect(typeof body?.error).toBe('string');
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  expect(ERROR_TABLE[code].httpStatus).toBe(status);
}

const infer = (app: FastifyInstance, payload: string | Buffer | object, headers: Record<string, string> = { 'content-type': 'application/json' }, url = '/v2/models/mlp_tiny/infer') =>
  app.inject({ method: 'POST', url, payload: payload as string, headers }) as unknown as Promise<Res>;

/** JSON header + binary tail, with Inference-Header-Content-Length (default: the header's length). */
function binaryRequest(header: object | string, tail: Buffer, headerLength?: string): { payload: Buffer; headers: Record<string, string> } {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  return {
    payload: Buffer.concat([json, tail]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': headerLength ?? String(json.length) },
  };
}

const f32bytes = (values: number[]): Buffer => Buffer.from(new Float32Array(values).buffer);

/** BYTES binary encoding: per element a u32 LE length, then the bytes. */
function bytesElements(items: Array<{ len: number; data: Buffer }>): Buffer {
  return Buffer.concat(items.flatMap(({ len, data }) => {
    const l = Buffer.alloc(4);
    l.writeUInt32LE(len);
    return [l, data];
  }));
}

/** A valid inference answers 200 with y [2, 10] equal to the direct model run. */
async function expectServing(app: FastifyInstance): Promise<void> {
  const res = await infer(app, VALID_TEXT);
  expect({ status: res.statusCode, body: res.body.slice(0, 300) }).toMatchObject({ status: 200 });
  const out = (JSON.parse(res.body) as { model_name: string; outputs: Array<{ name: string; datatype: string; shape: number[]; data: number[] }> });
  expect(out.model_name).toBe('mlp_tiny');
  expect(out.outputs).toHaveLength(1);
  expect(out.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP32', shape: [2, 10] });
  expect(out.outputs[0].data).toHaveLength(20);
  expect(maxAbsDiff(out.outputs[0].data, expectedY)).toBeLessThan(1e-5);
}

/** A request over a real socket with the path sent byte for byte (no client-side normalization). */
function rawRequest(port: number, method: string, rawPath: string, body?: string, extraHeaders: Record<string, string | string[]> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...extraHeaders };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: rawPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const rawPayload = Buffer.concat(chunks);
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers as Res['headers'], body: rawPayload.toString('utf8'), rawPayload });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Bytes written straight to a socket; returns the status line's code and the body. */
function rawSocket(port: number, bytes: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(bytes));
    let text = '';
    s.on('data', (c) => (text += c.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

const deepArray = (n: number): string => '['.repeat(n) + ']'.repeat(n);
const deepObject = (n: number, key = 'a', leaf = '1'): string => `{"${key}":`.repeat(n) + leaf + '}'.repeat(n);
const withInput = (fields: Record<string, unknown>): object => ({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: X, ...fields }] });

// ---------------------------------------------------------------------------------------------
// The main server: a repository directory in a tmp folder, control mode 'none'.

let app: FastifyInstance;
let port: number;

beforeAll(async () => {
  const m = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
  const r = await m.infer({ x: new Tensor('float32', Float32Array.from(X), [2, 64]) });
  expectedY = Array.from(r.y.data as Float32Array);
  await m.dispose();

  const repo = makeRepo({ ...Object.fromEntries(FIXTURES.map((f) => [f, f])), [LONG_NAME]: 'mlp_tiny' });
  app = await buildServer({ repository: repo, logger: false, shedding: NO_SHED });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as net.AddressInfo).port;
  await expectServing(app);
});

afterAll(async () => {
  await app?.close();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('binary framing (Inference-Header-Content-Length, binary_data_size)', () => {
  const header = (size: number, extra: Record<string, unknown> = {}) => ({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: size }, ...extra }] });

  it('a valid binary request is served (control)', async () => {
    const { payload, headers } = binaryRequest({ ...header(512), outputs: [{ name: 'y', parameters: { binary_data: true } }] }, f32bytes(X));
    const res = await infer(app, payload, headers);
    expect(res.statusCode).toBe(200);
    const n = Number(res.headers['inference-header-content-length']);
    const h = JSON.parse(res.rawPayload.subarray(0, n).toString()) as { outputs: Array<{ shape: number[]; parameters: { binary_data_size: number } }> };
    expect(h.outputs[0].shape).toEqual([2, 10]);
    expect(h.outputs[0].parameters.binary_data_size).toBe(80);
    expect(res.rawPayload.length - n).toBe(80);
  });

  it('truncated binary body: binary_data_size larger than what follows', async () => {
    const { payload, headers } = binaryRequest(header(512), f32bytes(X).subarray(0, 300));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('binary body one byte short', async () => {
    const { payload, headers } = binaryRequest(header(512), f32bytes(X).subarray(0, 511));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('Inference-Header-Content-Length larger than the body', async () => {
    const { payload, headers } = binaryRequest(header(512), f32bytes(X));
    expectError(await infer(app, payload, { ...headers, 'inference-header-content-length': String(payload.length + 1) }), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, payload, { ...headers, 'inference-header-content-length': '999999999999999' }), 400, 'INVALID_ARGUMENT');
  });

  it.each(['abc', '12abc', '0x10', '1e3', '12.5', '', '-5', '-0', '+5', ' ', '9'.repeat(16), '99999999999999999999999', 'NaN', 'Infinity'])(
    'non-numeric or negative Inference-Header-Content-Length %j',
    async (value) => {
      const { payload, headers } = binaryRequest(header(512), f32bytes(X));
      expectError(await infer(app, payload, { ...headers, 'inference-header-content-length': value }), 400, 'INVALID_ARGUMENT');
    },
  );

  it('two Inference-Header-Content-Length headers (real socket)', async () => {
    const json = JSON.stringify(header(512));
    const body = Buffer.concat([Buffer.from(json), f32bytes(X)]);
    const lines = [
      'POST /v2/models/mlp_tiny/infer HTTP/1.1', 'Host: x', 'Connection: close', 'Content-Type: application/octet-stream',
      `Inference-Header-Content-Length: ${json.length}`, `Inference-Header-Content-Length: ${json.length}`, `Content-Length: ${body.length}`,
    ];
    const r = await rawSocket(port, Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), body]));
    // Node joins repeated unknown headers as "n, n": not a number.
    expect({ status: r.status, code: (parseJson(r.body) as { code?: string } | undefined)?.code }).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
  });

  it('header length cutting the JSON in half, one byte short, one byte long', async () => {
    const json = JSON.stringify(header(512));
    for (const n of [Math.floor(json.length / 2), json.length - 1, json.length + 1, 1]) {
      const { payload, headers } = binaryRequest(json, f32bytes(X), String(n));
      expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
    }
  });

  it('binary bytes left after the last binary input', async () => {
    const { payload, headers } = binaryRequest(header(512), Buffer.concat([f32bytes(X), Buffer.alloc(4)]));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('binary_data_size that does not match the shape', async () => {
    const { payload, headers } = binaryRequest(header(256), f32bytes(X).subarray(0, 256));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
    const odd = binaryRequest(header(510), f32bytes(X).subarray(0, 510));
    expectError(await infer(app, odd.payload, odd.headers), 400, 'INVALID_ARGUMENT');
  });

  it.each([[-1], ['512'], [511.5], [true], [2 ** 53], [1e300]])('binary_data_size %j', async (size) => {
    const h = { inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: size } }] };
    const { payload, headers } = binaryRequest(h, f32bytes(X));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('binary_data_size together with data', async () => {
    const { payload, headers } = binaryRequest(header(512, { data: X }), f32bytes(X));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('binary_data_size in a JSON-only body (no Inference-Header-Content-Length)', async () => {
    expectError(await infer(app, JSON.stringify(header(512))), 400, 'INVALID_ARGUMENT');
  });

  it('huge dims with binary data: [1e13, 64] and 4 bytes', async () => {
    const h = { inputs: [{ name: 'x', shape: [1e13, 64], datatype: 'FP32', parameters: { binary_data_size: 4 } }] };
    const { payload, headers } = binaryRequest(h, Buffer.alloc(4));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('raw binary mode (header length 0) with the wrong byte count, and on a two-input model', async () => {
    const hdr = { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' };
    expectError(await infer(app, Buffer.alloc(100), hdr), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, Buffer.alloc(0), hdr), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, Buffer.alloc(257), hdr), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, Buffer.alloc(32), hdr, '/v2/models/two_inputs/infer'), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, Buffer.alloc(7), hdr, '/v2/models/embed_int64/infer'), 400, 'INVALID_ARGUMENT');
  });

  it('BYTES element whose length prefix runs past the data', async () => {
    const url = '/v2/models/identity_string/infer';
    const h = (size: number, n = 1) => ({ inputs: [{ name: 'x', shape: [n], datatype: 'BYTES', parameters: { binary_data_size: size } }] });
    const beyond = bytesElements([{ len: 100, data: Buffer.from('abc') }]);
    let r = binaryRequest(h(beyond.length), beyond);
    expectError(await infer(app, r.payload, r.headers, url), 400, 'INVALID_ARGUMENT');
    const huge = bytesElements([{ len: 0xffffffff, data: Buffer.from('abc') }]);
    r = binaryRequest(h(huge.length), huge);
    expectError(await infer(app, r.payload, r.headers, url), 400, 'INVALID_ARGUMENT');
    // second element's length prefix is cut short
    const cut = Buffer.concat([bytesElements([{ len: 1, data: Buffer.from('a') }]), Buffer.from([1, 0])]);
    r = binaryRequest(h(cut.length, 2), cut);
    expectError(await infer(app, r.payload, r.headers, url), 400, 'INVALID_ARGUMENT');
    // bytes left after the declared elements
    const extra = Buffer.concat([bytesElements([{ len: 1, data: Buffer.from('a') }]), Buffer.from('zz')]);
    r = binaryRequest(h(extra.length, 1), extra);
    expectError(await infer(app, r.payload, r.headers, url), 400, 'INVALID_ARGUMENT');
  });

  it('BYTES binary input with a huge element count and 8 bytes of data', async () => {
    const data = bytesElements([{ len: 4, data: Buffer.from('abcd') }]);
    const h = { inputs: [{ name: 'x', shape: [5e9], datatype: 'BYTES', parameters: { binary_data_size: data.length } }] };
    const r = binaryRequest(h, data);
    // Regression: src/protocol/request.ts decodeBytesElements() does `new Array(count)` before looking at
    // the bytes; count > 2**32-1 throws RangeError → 500 INTERNAL instead of 400.
    expectError(await infer(app, r.payload, r.headers, '/v2/models/identity_string/infer'), 400, 'INVALID_ARGUMENT');
  });

  it('still serves a valid inference after the binary-framing group', async () => {
    await expectServing(app);
  });
});

describe('shape and data', () => {
  const req = (shape: unknown, data: unknown = X) => JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', data }] });

  it('too few and too many elements', async () => {
    expectError(await infer(app, req([2, 64], X.slice(0, 127))), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, req([2, 64], [...X, 1])), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, req([2, 64], [])), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, req([2, 64], [X.slice(0, 64), X.slice(0, 63)])), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['[1e15, 64]', [1e15, 64]],
    ['[2**53, 2]', [2 ** 53, 2]],
    ['[2**53, 64]', [2 ** 53, 64]],
    ['[2**52, 64] (count over MAX_SAFE_INTEGER)', [2 ** 52, 64]],
    ['[1e300, 64]', [1e300, 64]],
  ])('huge dims %s with small data', async (_label, shape) => {
    expectError(await infer(app, req(shape, [1, 2, 3])), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['[1e13, 64]', [1e13, 64]],
    ['[2**40, 64]', [2 ** 40, 64]],
    ['[1e10, 64]', [1e10, 64]],
  ])('huge but safe element count %s with small data', async (_label, shape) => {
    // Regression: the codec used to allocate the declared element count before counting the JSON
    // elements (RangeError → 500 INTERNAL here; fixed in fc00fa4 by counting first).
    expectError(await infer(app, req(shape, [1, 2, 3])), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['negative batch', [-1, 64]],
    ['negative fixed dim', [2, -64]],
    ['fractional', [1.5, 64]],
    ['fractional fixed dim', [2, 64.5]],
    ['rank 100', Array(100).fill(1)],
    ['rank 33', Array(33).fill(1)],
    ['rank 0', []],
    ['rank 1', [128]],
    ['rank 3', [2, 64, 1]],
    ['fixed dim mismatch', [2, 63]],
    ['dims as strings', ['2', '64']],
    ['null dim', [null, 64]],
    ['boolean dim', [true, 64]],
    ['nested dim', [[2], 64]],
  ])('bad shape: %s', async (_label, shape) => {
    expectError(await infer(app, req(shape)), 400, 'INVALID_ARGUMENT');
  });

  it('data nested deeper than the rank', async () => {
    expectError(await infer(app, req([2, 64], [[X.slice(0, 64)], [X.slice(64)]])), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, req([2, 64], [[[[1]]]])), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['a string element', 'a'],
    ['null', null],
    ['a boolean', true],
    ['an object', { v: 1 }],
    ['a numeric string', '1.5'],
  ])('element of the wrong type: %s', async (_label, bad) => {
    const data = X.slice() as unknown[];
    data[77] = bad;
    expectError(await infer(app, req([2, 64], data)), 400, 'INVALID_ARGUMENT');
  });

  it('a scalar where 128 elements are needed', async () => {
    expectError(await infer(app, req([2, 64], 1.5)), 400, 'INVALID_ARGUMENT');
  });

  it('a batch larger than maxBatchSize (33 rows; default 32)', async () => {
    expectError(await infer(app, req([33, 64], Array(33 * 64).fill(0))), 400, 'INVALID_ARGUMENT');
  });

  it('edge cases that are valid: nested data, empty batch', async () => {
    let res = await infer(app, req([2, 64], [X.slice(0, 64), X.slice(64)]));
    expect(res.statusCode).toBe(200);
    res = await infer(app, req([0, 64], []));
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body).outputs[0].shape).toEqual([0, 10]);
  });

  it('still serves a valid inference after the shape group', async () => {
    await expectServing(app);
  });
});

describe('datatypes, names and parameters', () => {
  it.each([['INT32'], ['FP64'], ['FP16'], ['INT64'], ['BOOL']])('wrong datatype %s for the FP32 input', async (datatype) => {
    expectError(await infer(app, JSON.stringify({ inputs: [{ name: 'x', shape: [2, 64], datatype, data: X.map(() => 0) }] })), 400, 'INVALID_ARGUMENT');
  });

  it.each([['FLOAT32'], ['fp32'], ['FP 32'], [''], ['__proto__'], ['constructor'], ['toString']])('unknown datatype string %j', async (datatype) => {
    expectError(await infer(app, JSON.stringify({ inputs: [{ name: 'x', shape: [2, 64], datatype, data: X }] })), 400, 'INVALID_ARGUMENT');
  });

  it('BYTES strings for the FP32 input', async () => {
    expectError(await infer(app, JSON.stringify({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'BYTES', data: X.map(String) }] })), 400, 'INVALID_ARGUMENT');
  });

  it('INT64 values outside the exact JSON range, fractional INT64', async () => {
    const url = '/v2/models/embed_int64/infer';
    for (const v of [2 ** 63, -(2 ** 60), 1.5, '1']) {
      expectError(await infer(app, JSON.stringify({ inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: [1, v] }] }), undefined, url), 400, 'INVALID_ARGUMENT');
    }
  });

  it('BYTES JSON input with a huge element count', async () => {
    // Regression: `new Array(count)` before counting threw RangeError → 500 (fixed in fc00fa4).
    expectError(await infer(app, JSON.stringify({ inputs: [{ name: 'x', shape: [5e9], datatype: 'BYTES', data: ['a'] }] }), undefined, '/v2/models/identity_string/infer'), 400, 'INVALID_ARGUMENT');
  });

  it('missing, duplicated and unknown inputs', async () => {
    const a = { name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
    const url = '/v2/models/two_inputs/infer';
    expectError(await infer(app, JSON.stringify({ inputs: [a] }), undefined, url), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ inputs: [a, a] }), undefined, url), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ inputs: [a, { ...a, name: 'z' }] }), undefined, url), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ inputs: [a, { ...a, name: 'A' }] }), undefined, url), 400, 'INVALID_ARGUMENT');
  });

  it('unknown, duplicated or malformed output names', async () => {
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'nope' }] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'Y' }] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'x' }] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'y' }, { name: 'y' }] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{}] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 7 }] })), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [] })), 400, 'INVALID_ARGUMENT');
  });

  it('reserved and unsupported parameters', async () => {
    expectError(await infer(app, JSON.stringify({ ...VALID, parameters: { sequence_id: 1 } })), 400, 'UNSUPPORTED');
    expectError(await infer(app, JSON.stringify({ ...VALID, parameters: { triton_enable_empty_final_response: true } })), 400, 'UNSUPPORTED');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'y', parameters: { classification: 3 } }] })), 400, 'UNSUPPORTED');
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'y', parameters: { shared_memory_region: 'r' } }] })), 400, 'UNSUPPORTED');
  });

  it.each([
    ['priority -1', { priority: -1 }],
    ['priority "1"', { priority: '1' }],
    ['timeout 0', { timeout: 0 }],
    ['timeout -5', { timeout: -5 }],
    ['timeout 1.5', { timeout: 1.5 }],
    ['timeout "100"', { timeout: '100' }],
    ['binary_data_output "yes"', { binary_data_output: 'yes' }],
  ])('bad request parameter: %s', async (_label, parameters) => {
    expectError(await infer(app, JSON.stringify({ ...VALID, parameters })), 400, 'INVALID_ARGUMENT');
  });

  it('bad output parameter binary_data', async () => {
    expectError(await infer(app, JSON.stringify({ ...VALID, outputs: [{ name: 'y', parameters: { binary_data: 1 } }] })), 400, 'INVALID_ARGUMENT');
  });

  it('still serves a valid inference after the datatype group', async () => {
    await expectServing(app);
  });
});

describe('wrong JSON types', () => {
  it.each([
    ['inputs not an array', { inputs: { name: 'x' } }],
    ['inputs a string', { inputs: 'x' }],
    ['inputs empty', { inputs: [] }],
    ['inputs missing', {}],
    ['inputs [null]', { inputs: [null] }],
    ['inputs [[]]', { inputs: [[]] }],
    ['inputs [1]', { inputs: [1] }],
    ['shape as string', withInput({ shape: '[2,64]' })],
    ['shape as object', withInput({ shape: { 0: 2, 1: 64 } })],
    ['shape missing', { inputs: [{ name: 'x', datatype: 'FP32', data: X }] }],
    ['data as object', withInput({ data: { 0: 1 } })],
    ['data as string', withInput({ data: 'abc' })],
    ['data null', withInput({ data: null })],
    ['data missing', { inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32' }] }],
    ['name as number', withInput({ name: 1 })],
    ['name empty', withInput({ name: '' })],
    ['name null', withInput({ name: null })],
    ['datatype as number', withInput({ datatype: 32 })],
    ['id as number', { ...VALID, id: 42 }],
    ['id as object', { ...VALID, id: { a: 1 } }],
    ['parameters as array', { ...VALID, parameters: [1] }],
    ['parameters as string', { ...VALID, parameters: 'p' }],
    ['parameter value an object', { ...VALID, parameters: { a: { b: 1 } } }],
    ['parameter value null', { ...VALID, parameters: { a: null } }],
    ['input parameters an array', withInput({ parameters: [] })],
    ['input parameter value an array', withInput({ parameters: { binary_data_size: [512] } })],
    ['outputs as object', { ...VALID, outputs: { name: 'y' } }],
    ['outputs [null]', { ...VALID, outputs: [null] }],
    ['output parameters a string', { ...VALID, outputs: [{ name: 'y', parameters: 'p' }] }],
  ])('%s', async (_label, body) => {
    expectError(await infer(app, JSON.stringify(body)), 400, 'INVALID_ARGUMENT');
  });

  it.each([['[]'], ['[1,2]'], ['"x"'], ['42'], ['null'], ['true']])('top-level JSON that is not an object: %s', async (text) => {
    expectError(await infer(app, text), 400, 'INVALID_ARGUMENT');
  });

  it('still serves a valid inference after the JSON-types group', async () => {
    await expectServing(app);
  });
});

describe('deeply nested JSON (bodies under 256 KiB: decoded on the event loop)', () => {
  // Depths are chosen so that each inference body stays under the JSON worker's threshold; the
  // same shapes over it are in the large-bodies group.
  const x = JSON.stringify(X);
  const OBJ = 40_000; // '{"a":' × 40000 ≈ 200 KB

  it('100000 levels of [ in data (balanced)', async () => {
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${deepArray(100_000)}}]}`), 400, 'INVALID_ARGUMENT');
  });

  it('1000000 levels of [ in data (balanced, 2 MB)', async () => {
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${deepArray(1_000_000)}}]}`), 400, 'INVALID_ARGUMENT');
  });

  it('100000 levels of [ in data, never closed', async () => {
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${'['.repeat(100_000)}`), 400, 'INVALID_ARGUMENT');
  });

  it('deep objects in request, input and output parameters', async () => {
    expectError(await infer(app, `{"parameters":${deepObject(OBJ)},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"parameters":{"p":${deepObject(OBJ)}},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","parameters":${deepObject(OBJ)},"data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}],"outputs":[{"name":"y","parameters":${deepObject(OBJ)}}]}`), 400, 'INVALID_ARGUMENT');
  });

  it('deep objects whose keys are "constructor" (the prototype scan has to walk them)', async () => {
    expectError(await infer(app, `{"parameters":${deepObject(15_000, 'constructor')},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
  });

  it('deep arrays as id, inputs, shape, outputs and name', async () => {
    const deep = deepArray(100_000);
    expectError(await infer(app, `{"id":${deep},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":${deep}}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":${deep},"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":[{"name":${deep},"shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}],"outputs":${deep}}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, deep), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, deepObject(OBJ)), 400, 'INVALID_ARGUMENT');
  });

  it('deep nesting inside a binary request header', async () => {
    const h = `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","parameters":${deepObject(100_000)}}]}`;
    const { payload, headers } = binaryRequest(h, f32bytes(X));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('deep nesting with a forbidden key at the bottom', async () => {
    expectError(await infer(app, `{"extra":${deepObject(OBJ, 'a', '{"constructor":{"prototype":{"polluted":1}}}')},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, `{"extra":${deepObject(OBJ, 'a', '{"__proto__":{"polluted":1}}')},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`), 400, 'INVALID_ARGUMENT');
  });

  it('a deep value under an unknown top-level key is ignored (200), not a crash', async () => {
    const res = await infer(app, `{"extra":${deepArray(100_000)},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`);
    expect(res.statusCode).toBe(200);
  });

  it('deep nesting in the repository API bodies', async () => {
    const post = (url: string, payload: string) => app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } }) as unknown as Promise<Res>;
    expectError(await post('/v2/repository/index', `{"ready":${deepArray(100_000)}}`), 400, 'INVALID_ARGUMENT');
    expectError(await post('/v2/repository/index', deepArray(100_000)), 400, 'INVALID_ARGUMENT');
    // unknown keys under parameters pass the schema; control mode 'none' then refuses the load
    expectError(await post('/v2/repository/models/mlp_tiny/load', `{"parameters":${deepObject(100_000)}}`), 400, 'UNSUPPORTED');
    expectError(await post('/v2/repository/models/mlp_tiny/load', `{"parameters":{"config":${deepObject(100_000)}}}`), 400, 'INVALID_ARGUMENT');
    expectError(await post('/v2/repository/models/mlp_tiny/load', JSON.stringify({ parameters: { config: `{"warmup":${deepArray(100_000)}}` } })), 400, 'INVALID_ARGUMENT');
  });

  it('still serves a valid inference after the nesting group', async () => {
    await expectServing(app);
  });
});

describe('prototype pollution keys', () => {
  const x = JSON.stringify(X);
  const input = `{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}`;

  it.each([
    ['top-level __proto__', `{"__proto__":{"polluted":1},"inputs":[${input}]}`],
    ['top-level constructor.prototype', `{"constructor":{"prototype":{"polluted":1}},"inputs":[${input}]}`],
    ['top-level escaped \\u005f\\u005fproto\\u005f\\u005f', `{"\\u005f\\u005fproto\\u005f\\u005f":{"polluted":1},"inputs":[${input}]}`],
    ['__proto__ inside inputs[0]', `{"inputs":[{"__proto__":{"polluted":1},"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['constructor.prototype inside inputs[0]', `{"inputs":[{"constructor":{"prototype":{"polluted":1}},"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['__proto__ inside parameters', `{"parameters":{"__proto__":{"polluted":1}},"inputs":[${input}]}`],
    ['__proto__ inside input parameters', `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","parameters":{"__proto__":{"binary_data_size":1}},"data":${x}}]}`],
    ['__proto__ inside outputs[0]', `{"inputs":[${input}],"outputs":[{"__proto__":{"name":"y"},"name":"y"}]}`],
    ['__proto__ as a string-valued key', `{"__proto__":"x","inputs":[${input}]}`],
  ])('%s', async (_label, text) => {
    expectError(await infer(app, text), 400, 'INVALID_ARGUMENT');
  });

  it('__proto__ inside a binary request header', async () => {
    const { payload, headers } = binaryRequest('{"__proto__":{"polluted":1},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","parameters":{"binary_data_size":512}}]}', f32bytes(X));
    expectError(await infer(app, payload, headers), 400, 'INVALID_ARGUMENT');
  });

  it('__proto__ and constructor.prototype in repository API bodies', async () => {
    const post = (url: string, payload: string) => app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } }) as unknown as Promise<Res>;
    expectError(await post('/v2/repository/index', '{"__proto__":{"polluted":1}}'), 400, 'INVALID_ARGUMENT');
    expectError(await post('/v2/repository/index', '{"constructor":{"prototype":{"polluted":1}}}'), 400, 'INVALID_ARGUMENT');
    expectError(await post('/v2/repository/models/mlp_tiny/load', JSON.stringify({ parameters: { config: '{"__proto__":{"polluted":1}}' } })), 400, 'INVALID_ARGUMENT');
    expectError(await post('/v2/repository/models/mlp_tiny/load', JSON.stringify({ parameters: { config: '{"constructor":{"prototype":{"polluted":1}}}' } })), 400, 'INVALID_ARGUMENT');
  });

  it('nothing was polluted and the server still serves', async () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
    expect(({} as Record<string, unknown>).binary_data_size).toBeUndefined();
    await expectServing(app);
  });
});

describe('bodies', () => {
  it('empty body, with and without a content type', async () => {
    expectError(await infer(app, '', {}), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, ''), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, '', { 'content-type': 'application/octet-stream' }), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['plain text', 'hello'],
    ['truncated JSON', VALID_TEXT.slice(0, 50)],
    ['trailing garbage', `${VALID_TEXT}xyz`],
    ['two JSON documents', `${VALID_TEXT}${VALID_TEXT}`],
    ['single quotes', "{'inputs': []}"],
    ['NaN literal', VALID_TEXT.replace('"data":[', '"data":[NaN,')],
    ['a lone BOM', '\ufeff'],
    ['whitespace only', '   \n\t '],
  ])('body that is not JSON: %s', async (_label, text) => {
    expectError(await infer(app, text), 400, 'INVALID_ARGUMENT');
  });

  it('invalid UTF-8 bytes', async () => {
    expectError(await infer(app, Buffer.from([0x7b, 0xff, 0xfe, 0x80, 0x7d])), 400, 'INVALID_ARGUMENT');
  });

  it('a non-JSON content type carrying JSON is still parsed (not an error)', async () => {
    const res = await infer(app, VALID_TEXT, { 'content-type': 'text/plain' });
    expect(res.statusCode).toBe(200);
  });

  it('a 10 MB+ body over a 1 MiB bodyLimit → 413 PAYLOAD_TOO_LARGE', async () => {
    const small = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, bodyLimit: 1024 * 1024, shedding: NO_SHED });
    try {
      await small.ready();
      const big = JSON.stringify({ inputs: [{ name: 'x', shape: [100_000, 64], datatype: 'FP32', data: new Array(100_000 * 64).fill(0.5) }] });
      expect(big.length).toBeGreaterThan(10 * 1024 * 1024);
      expectError(await infer(small, big), 413, 'PAYLOAD_TOO_LARGE');
      const bin = binaryRequest({ inputs: [{ name: 'x', shape: [41_000, 64], datatype: 'FP32', parameters: { binary_data_size: 41_000 * 256 } }] }, Buffer.alloc(41_000 * 256));
      expectError(await infer(small, bin.payload, bin.headers), 413, 'PAYLOAD_TOO_LARGE');
      expectError(await small.inject({ method: 'POST', url: '/v2/repository/index', payload: `{"x":"${'a'.repeat(11 * 1024 * 1024)}"}`, headers: { 'content-type': 'application/json' } }) as unknown as Res, 413, 'PAYLOAD_TOO_LARGE');
      // over a real socket too (streamed, Content-Length announced up front)
      await small.listen({ host: '127.0.0.1', port: 0 });
      const res = await rawRequest((small.server.address() as net.AddressInfo).port, 'POST', '/v2/models/mlp_tiny/infer', big);
      expectError(res, 413, 'PAYLOAD_TOO_LARGE');
      await expectServing(small);
    } finally {
      await small.close();
    }
  });

  it('a too-large body sent to an unknown route → the protocol error shape', async () => {
    const small = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, bodyLimit: 1024 * 1024, shedding: NO_SHED });
    try {
      await small.ready();
      // Regression: answered by Fastify's default error handler: 413 {"statusCode":413,"code":
      // "FST_ERR_CTP_BODY_TOO_LARGE",...} (src/server/build.ts has no root error handler; see
      // the framework-errors group). 413 PAYLOAD_TOO_LARGE or 404 NOT_FOUND are acceptable.
      const res = (await small.inject({ method: 'POST', url: '/v2/models/mlp_tiny/predict', payload: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/json' } })) as unknown as Res;
      const code = (parseJson(res.body) as { code?: string } | undefined)?.code;
      expect([[413, 'PAYLOAD_TOO_LARGE'], [404, 'NOT_FOUND']], `${res.statusCode} ${res.body.slice(0, 160)}`).toContainEqual([res.statusCode, code]);
    } finally {
      await small.close();
    }
  });

  it('still serves a valid inference after the bodies group', async () => {
    await expectServing(app);
  });
});

describe('large JSON bodies (over 256 KiB: the size the server decodes in its JSON worker)', () => {
  // Whitespace padding keeps the meaning of each body and pushes it over the worker threshold
  // (jsonWorkerBytes, default 256 KiB), so the same malformed classes are checked on that path.
  const PAD = ' '.repeat(300 * 1024);
  const big = (body: string | object) => (typeof body === 'string' ? body : JSON.stringify(body)) + PAD;
  const x = JSON.stringify(X);

  it('a valid padded request is served with the right result', async () => {
    const res = await infer(app, big(VALID_TEXT));
    expect(res.statusCode).toBe(200);
    const out = JSON.parse(res.body) as { outputs: Array<{ shape: number[]; data: number[] }> };
    expect(out.outputs[0].shape).toEqual([2, 10]);
    expect(maxAbsDiff(out.outputs[0].data, expectedY)).toBeLessThan(1e-5);
    const nested = await infer(app, big({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: [X.slice(0, 64), X.slice(64)] }] }));
    expect(nested.statusCode).toBe(200);
  });

  it.each([
    ['not JSON', 'hello'],
    ['truncated JSON', VALID_TEXT.slice(0, 60)],
    ['top-level array', '[1,2,3]'],
    ['top-level __proto__', `{"__proto__":{"polluted":1},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['constructor.prototype in inputs[0]', `{"inputs":[{"constructor":{"prototype":{"polluted":1}},"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['inputs not an array', { inputs: { name: 'x' } }],
    ['inputs empty', { inputs: [] }],
    ['shape as string', withInput({ shape: '[2,64]' })],
    ['data as object', withInput({ data: { 0: 1 } })],
    ['name as number', withInput({ name: 7 })],
    ['unknown input name', withInput({ name: 'z' })],
    ['INT32 for the FP32 input', withInput({ datatype: 'INT32', data: X.map(() => 1) })],
    ['BOOL for the FP32 input', withInput({ datatype: 'BOOL', data: X.map(() => true) })],
    ['unknown datatype', withInput({ datatype: 'FLOAT' })],
    ['too few elements', withInput({ data: X.slice(0, 127) })],
    ['too many elements', withInput({ data: [...X, 1] })],
    ['nested deeper than the rank', withInput({ data: [[X.slice(0, 64)], [X.slice(64)]] })],
    ['a string element', withInput({ data: [...X.slice(0, 127), 'a'] })],
    ['a null element', withInput({ data: [...X.slice(0, 127), null] })],
    ['huge dims [1e13, 64]', withInput({ shape: [1e13, 64], data: [1, 2, 3] })],
    ['huge dims [2**53, 64]', withInput({ shape: [2 ** 53, 64], data: [1, 2, 3] })],
    ['negative dim', withInput({ shape: [-2, 64] })],
    ['fractional dim', withInput({ shape: [1.5, 64] })],
    ['rank 100', withInput({ shape: Array(100).fill(1) })],
    ['100000 levels of [ in data', `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${deepArray(100_000)}}]}`],
    ['1000000 levels of [ in data', `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${deepArray(1_000_000)}}]}`],
    ['unknown output', { ...VALID, outputs: [{ name: 'nope' }] }],
  ])('%s → 400 INVALID_ARGUMENT', async (_label, body) => {
    expectError(await infer(app, big(body as string | object)), 400, 'INVALID_ARGUMENT');
  });

  it.each([
    ['deep objects in parameters', `{"parameters":${deepObject(100_000)},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['deep objects in input parameters', `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","parameters":${deepObject(100_000)},"data":${x}}]}`],
    ['deep objects with "constructor" keys', `{"parameters":${deepObject(100_000, 'constructor')},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['a deep array as id', `{"id":${deepArray(100_000)},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`],
    ['a deep array as inputs', `{"inputs":${deepArray(100_000)}}`],
    ['a deep array as outputs', `{"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}],"outputs":${deepArray(100_000)}}`],
    ['a deep object as the whole body', deepObject(100_000)],
  ])('%s → 400 INVALID_ARGUMENT', async (_label, body) => {
    // Regression: src/protocol/json-worker.ts returns the parsed header to the main thread with
    // Piscina.move(); a header nested ~10000+ levels deep anywhere outside `data` overflows the
    // structured clone ("RangeError: Maximum call stack size exceeded" in piscina's worker
    // onMessage), JsonDecodePool.decode() (src/protocol/json-pool.ts) rejects with that plain
    // RangeError and the request is answered 500 INTERNAL. The same body under 256 KiB is a 400.
    expectError(await infer(app, big(body)), 400, 'INVALID_ARGUMENT');
  });

  it('a deep value under an unknown top-level key is ignored (200), as it is in a small body', async () => {
    // Regression: same cause as above (structured clone of the parsed header) → 500 INTERNAL.
    const res = await infer(app, big(`{"extra":${deepArray(100_000)},"inputs":[{"name":"x","shape":[2,64],"datatype":"FP32","data":${x}}]}`));
    expect({ status: res.statusCode, body: res.body.slice(0, 200) }).toMatchObject({ status: 200 });
  });

  it('large bodies for other models: INT64 out of range, BYTES with a huge count', async () => {
    expectError(await infer(app, big({ inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: [1, 2 ** 63] }] }), undefined, '/v2/models/embed_int64/infer'), 400, 'INVALID_ARGUMENT');
    expectError(await infer(app, big({ inputs: [{ name: 'x', shape: [5e9], datatype: 'BYTES', data: ['a'] }] }), undefined, '/v2/models/identity_string/infer'), 400, 'INVALID_ARGUMENT');
  });

  it('nothing was polluted and the server still serves after the large-body group', async () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await expectServing(app);
  });
});

describe('model names and versions in every route that takes them (real socket)', () => {
  const body = VALID_TEXT;
  type Route = { method: 'GET' | 'POST'; path: (name: string) => string };
  const nameRoutes: Route[] = [
    { method: 'GET', path: (n) => `/v2/models/${n}` },
    { method: 'GET', path: (n) => `/v2/models/${n}/ready` },
    { method: 'GET', path: (n) => `/v2/models/${n}/config` },
    { method: 'GET', path: (n) => `/v2/models/${n}/stats` },
    { method: 'POST', path: (n) => `/v2/models/${n}/infer` },
    { method: 'GET', path: (n) => `/v2/models/${n}/versions/1` },
    { method: 'GET', path: (n) => `/v2/models/${n}/versions/1/ready` },
    { method: 'GET', path: (n) => `/v2/models/${n}/versions/1/config` },
    { method: 'GET', path: (n) => `/v2/models/${n}/versions/1/stats` },
    { method: 'POST', path: (n) => `/v2/models/${n}/versions/1/infer` },
    { method: 'POST', path: (n) => `/v2/repository/models/${n}/load` },
    { method: 'POST', path: (n) => `/v2/repository/models/${n}/unload` },
  ];
  const versionRoutes: Route[] = [
    { method: 'GET', path: (v) => `/v2/models/mlp_tiny/versions/${v}` },
    { method: 'GET', path: (v) => `/v2/models/mlp_tiny/versions/${v}/ready` },
    { method: 'GET', path: (v) => `/v2/models/mlp_tiny/versions/${v}/config` },
    { method: 'GET', path: (v) => `/v2/models/mlp_tiny/versions/${v}/stats` },
    { method: 'POST', path: (v) => `/v2/models/mlp_tiny/versions/${v}/infer` },
  ];

  /** Sends `segment` in every route; returns "METHOD path → status code" lines. */
  async function sweep(routes: Route[], segment: string): Promise<string[]> {
    const out: string[] = [];
    for (const r of routes) {
      const p = r.path(segment);
      const res = await rawRequest(port, r.method, p, r.method === 'POST' ? (p.includes('/repository/') ? '{}' : body) : undefined);
      const parsed = parseJson(res.body) as { code?: string; error?: unknown } | undefined;
      const shape = typeof parsed?.error === 'string' ? '' : ' (no {error} body)';
      out.push(`${r.method} ${r.path('{}')} → ${res.statusCode} ${parsed?.code ?? ''}${shape}`);
    }
    return out;
  }
  const expectAll = (routes: Route[], status: number, code: string) => routes.map((r) => `${r.method} ${r.path('{}')} → ${status} ${code}`);

  it.each([
    ['..%2F..%2Fetc%2Fpasswd'],
    ['%2e%2e'],
    ['%2E%2E'],
    ['..'],
    ['.'],
    ['%2e%2e%2f%2e%2e%2fetc%2fpasswd'],
    ['..%5C..%5Cwindows'],
    ['a%2Fb'],
    ['mlp_tiny%2F..%2F..%2Fetc'],
    ['mlp_tiny%00'],
    ['%00'],
    ['__proto__'],
    ['-mlp_tiny'],
    ['mlp%20tiny'],
    ['%C3%A9'],
  ])('model name %s → 400 INVALID_ARGUMENT', async (name) => {
    // the repository routes answer for the name before looking at the control mode
    expect(await sweep(nameRoutes, name)).toEqual(expectAll(nameRoutes, 400, 'INVALID_ARGUMENT'));
  });

  it.each([['nosuchmodel'], ['constructor'], ['hasOwnProperty'], ['toString'], ['mlp_tiny.onnx'], ['MLP_TINY']])('unknown model %s → 404 NOT_FOUND', async (name) => {
    const got = await sweep(nameRoutes.filter((r) => !r.path('').includes('/repository/')), name);
    expect(got).toEqual(expectAll(nameRoutes.filter((r) => !r.path('').includes('/repository/')), 404, 'NOT_FOUND'));
  });

  it.each([['etc/passwd'], ['../../etc/passwd'], ['a/b/c']])('name with a literal slash %s → 404 NOT_FOUND (no such route)', async (name) => {
    expect(await sweep(nameRoutes, name)).toEqual(expectAll(nameRoutes, 404, 'NOT_FOUND'));
  });

  it.each([['a'.repeat(129)], ['a'.repeat(300)], ['a'.repeat(5000)]])('very long model name (%#) → 400 INVALID_ARGUMENT', async (name) => {
    // Regression: src/server/build.ts creates Fastify with the default maxParamLength (100); find-my-way
    // answers a longer path parameter itself with 414 {"error":"Bad Request","code":
    // "FST_ERR_MAX_PARAM_LENGTH","message":...}: a status and code outside ERROR_TABLE, from a
    // path that bypasses nimify's error handler (no frameworkErrors option).
    expect(await sweep(nameRoutes, name)).toEqual(expectAll(nameRoutes, 400, 'INVALID_ARGUMENT'));
  });

  it('a valid 120-character model name is served', async () => {
    // Regression: same cause: NAME_RE allows 128 characters (and the route schema 256), but Fastify's
    // default maxParamLength of 100 makes every route answer 414 FST_ERR_MAX_PARAM_LENGTH for a
    // model whose name has 101..128 characters. Fix: maxParamLength >= 256 in buildServer().
    const res = await rawRequest(port, 'POST', `/v2/models/${LONG_NAME}/infer`, body);
    expect({ status: res.statusCode, body: res.body.slice(0, 200) }).toMatchObject({ status: 200 });
  });

  it.each([['-1'], ['abc'], ['%2e%2e'], ['..'], ['1.0'], ['01'], ['1e3'], ['%2B1'], ['0x1'], ['%00'], ['1%2F..%2F..'], ['%20'], ['9'.repeat(19)], ['9'.repeat(40)], ['%C3%A9']])(
    'model version %s → 400 INVALID_ARGUMENT',
    async (v) => {
      expect(await sweep(versionRoutes, v)).toEqual(expectAll(versionRoutes, 400, 'INVALID_ARGUMENT'));
    },
  );

  it.each([['99'], ['0'], ['2'], ['999999999999999999']])('unknown version %s → 404 NOT_FOUND', async (v) => {
    expect(await sweep(versionRoutes, v)).toEqual(expectAll(versionRoutes, 404, 'NOT_FOUND'));
  });

  it('a malformed percent-encoding in a path → 400 in the protocol error shape', async () => {
    // Regression: find-my-way rejects '%ZZ' before routing and Fastify answers it itself with
    // {"error":"Bad Request","code":"FST_ERR_BAD_URL","message":...,"statusCode":400}: the code is
    // not one of ERROR_TABLE's (src/server/build.ts: no `frameworkErrors` hook mapping it through
    // toHttpError / sendError).
    for (const p of ['/v2/models/%ZZ', '/v2/models/mlp_tiny/versions/%ZZ', '/v2/repository/models/%ZZ/load', '/v2/models/%E0%A4%A']) {
      const res = await rawRequest(port, p.includes('/load') ? 'POST' : 'GET', p, p.includes('/load') ? '{}' : undefined);
      expect({ path: p, status: res.statusCode, code: (parseJson(res.body) as { code?: string } | undefined)?.code }).toEqual({ path: p, status: 400, code: 'INVALID_ARGUMENT' });
    }
  });

  it('repository load/unload in control mode none: UNSUPPORTED for a valid name', async () => {
    const res = await rawRequest(port, 'POST', '/v2/repository/models/mlp_tiny/load', '{}');
    expectError(res, 400, 'UNSUPPORTED');
  });

  it('still serves a valid inference after the names group', async () => {
    await expectServing(app);
  });
});

describe('repository API in explicit control mode: no file outside the repository is read', () => {
  let xapp: FastifyInstance;
  let xport: number;
  let top: string;
  let root: string;
  let realRoot: string;
  const touched: Array<{ fn: string; p: string }> = [];
  const spies: Array<{ mockRestore(): void }> = [];

  beforeAll(async () => {
    top = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-traversal-'));
    tmpDirs.push(top);
    root = path.join(top, 'repo');
    // a valid model and a "secret" outside the repository
    fs.mkdirSync(path.join(top, 'outside', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(top, 'outside', '1', 'model.onnx'));
    fs.writeFileSync(path.join(top, 'secret.json'), '{"batching": false}');
    fs.mkdirSync(path.join(root, 'mlp_tiny', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(root, 'mlp_tiny', '1', 'model.onnx'));
    // a model directory that is a symlink out of the repository
    fs.symlinkSync(path.join(top, 'outside'), path.join(root, 'escape'), 'dir');
    // a version file that is a symlink out of the repository
    fs.mkdirSync(path.join(root, 'linkmodel', '1'), { recursive: true });
    fs.symlinkSync(path.join(top, 'outside', '1', 'model.onnx'), path.join(root, 'linkmodel', '1', 'model.onnx'));
    // a config.json that is a symlink out of the repository
    fs.mkdirSync(path.join(root, 'cfglink', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(root, 'cfglink', '1', 'model.onnx'));
    fs.symlinkSync(path.join(top, 'secret.json'), path.join(root, 'cfglink', 'config.json'));
    realRoot = fs.realpathSync(root);

    xapp = await buildServer({ repository: root, controlMode: 'explicit', startupModels: ['mlp_tiny'], logger: false, shedding: NO_SHED });
    await xapp.listen({ host: '127.0.0.1', port: 0 });
    xport = (xapp.server.address() as net.AddressInfo).port;

    const fsp = fs.promises as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const fn of ['readFile', 'readdir', 'open', 'opendir', 'stat', 'lstat', 'realpath', 'access', 'readlink']) {
      const orig = fsp[fn];
      spies.push(vi.spyOn(fsp, fn as never).mockImplementation(((...args: unknown[]) => {
        const a = args[0];
        touched.push({ fn, p: typeof a === 'string' ? a : a instanceof URL ? a.pathname : String(a) });
        return orig.apply(fs.promises, args);
      }) as never));
    }
    loadedFiles.length = 0;
  });

  afterAll(async () => {
    for (const s of spies) s.mockRestore();
    await xapp?.close();
  });

  const load = (name: string, payload = '{}') => rawRequest(xport, 'POST', `/v2/repository/models/${name}/load`, payload);
  const unload = (name: string) => rawRequest(xport, 'POST', `/v2/repository/models/${name}/unload`, '{}');

  it.each([
    ['..%2Foutside'],
    ['..%2F..%2Fetc%2Fpasswd'],
    ['%2e%2e'],
    ['..'],
    ['%2e%2e%2foutside'],
    ['mlp_tiny%2F..%2F..%2Foutside'],
    ['..%5Coutside'],
    ['%2Fetc%2Fpasswd'],
    ['%00'],
  ])('load and unload %s → 400 INVALID_ARGUMENT', async (name) => {
    expectError(await load(name), 400, 'INVALID_ARGUMENT');
    expectError(await unload(name), 400, 'INVALID_ARGUMENT');
  });

  it('load and unload of names outside the repository or never seen → 404 NOT_FOUND', async () => {
    expectError(await load('outside'), 404, 'NOT_FOUND');
    expectError(await load('secret.json'), 404, 'NOT_FOUND');
    expectError(await load('nosuchmodel'), 404, 'NOT_FOUND');
    expectError(await unload('nosuchmodel'), 404, 'NOT_FOUND');
  });

  it('a model directory symlinked out of the repository is not a model', async () => {
    expectError(await load('escape'), 404, 'NOT_FOUND');
    expectError(await rawRequest(xport, 'GET', '/v2/models/escape'), 404, 'NOT_FOUND');
  });

  it('a version file or config.json symlinked out of the repository does not load', async () => {
    // The model directory exists, but nothing loadable is inside the repository: the load fails
    // (INVALID_MODEL: "model failed to load") without the outside file being opened.
    expectError(await load('linkmodel'), 400, 'INVALID_MODEL');
    expectError(await load('cfglink'), 400, 'INVALID_MODEL');
    // a model whose load failed is NOT_READY (ERROR_TABLE: "... or failed to load")
    expectError(await rawRequest(xport, 'GET', '/v2/models/linkmodel'), 503, 'NOT_READY');
    expectError(await rawRequest(xport, 'GET', '/v2/models/cfglink'), 503, 'NOT_READY');
  });

  it('very long names on the repository API → 400 INVALID_ARGUMENT', async () => {
    // Regression: 414 FST_ERR_MAX_PARAM_LENGTH from Fastify (see the names group; src/server/build.ts).
    expectError(await load('a'.repeat(300)), 400, 'INVALID_ARGUMENT');
  });

  it('malformed load bodies', async () => {
    expectError(await load('mlp_tiny', '{"parameters":{"config":7}}'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', '{"parameters":{"config":"{"}}'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', '{"parameters":{"config":"[]"}}'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', '{"parameters":{"config":"{\\"timeoutMs\\":-1}"}}'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', `{"parameters":{"config":${JSON.stringify(`{"warmup":${deepArray(100_000)}}`)}}}`), 400, 'INVALID_ARGUMENT');
    // unknown keys under `parameters` are ignored, however deep: a plain reload
    expect((await load('mlp_tiny', `{"parameters":${deepObject(100_000)}}`)).statusCode).toBe(200);
    expectError(await load('mlp_tiny', '{"parameters":[]}'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', 'not json'), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', '[]'), 400, 'INVALID_ARGUMENT');
    // A `name` in the override is not checked against the directory (config.json's is) but is
    // ignored: the model keeps its directory name and nothing else is loaded.
    const named = await load('mlp_tiny', '{"parameters":{"config":"{\\"name\\":\\"../outside\\"}"}}');
    expect([200, 400]).toContain(named.statusCode);
    expect(JSON.parse((await rawRequest(xport, 'GET', '/v2/models/mlp_tiny/config')).body).name).toBe('mlp_tiny');
    expectError(await rawRequest(xport, 'GET', '/v2/models/outside'), 404, 'NOT_FOUND');
  });

  it('a deeply nested config override → 400, not 500', async () => {
    // Regression: parseModelConfig() accepts any plain object under `batching` / `runtime`, and
    // ModelRepository #syncModel (src/repository/repository.ts, the fingerprint line
    // `JSON.stringify(override)`) overflows the stack on a 10000-level object: RangeError →
    // 500 INTERNAL. The same override at 10 levels answers 200 (see the next test).
    expectError(await load('mlp_tiny', `{"parameters":{"config":${JSON.stringify(`{"batching":${deepObject(10_000)}}`)}}}`), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', `{"parameters":{"config":${JSON.stringify(`{"runtime":{"graphOptimizationLevel":${deepObject(10_000)}}}`)}}}`), 400, 'INVALID_ARGUMENT');
  });

  it('a config override the model cannot load with is refused, not answered 200', async () => {
    // Regression: ModelRepository.load() (src/repository/repository.ts) only fails when no version is
    // ready; when a version is already serving, a reload with a bad override fails ("reload
    // failed; the previous load keeps serving" in the log) and the API still answers 200 {}:
    // the caller is told its config was applied when it was rejected.
    expectError(await load('mlp_tiny', JSON.stringify({ parameters: { config: '{"batching":{"a":1}}' } })), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', JSON.stringify({ parameters: { config: '{"batching":{"maxBatchSize":"big"}}' } })), 400, 'INVALID_ARGUMENT');
    expectError(await load('mlp_tiny', JSON.stringify({ parameters: { config: '{"runtime":{"intraOpNumThreads":-3}}' } })), 400, 'INVALID_ARGUMENT');
    // the model keeps serving with its previous config either way
    const res = await rawRequest(xport, 'POST', '/v2/models/mlp_tiny/infer', VALID_TEXT);
    expect(res.statusCode).toBe(200);
  });

  it('a config override cannot make the server write a file outside the repository', async () => {
    // Regression (security, R5): `runtime.optimizedModelFilePath` is an accepted key of a load request's
    // config override (src/repository/config.ts RUNTIME_KEYS → parseModelConfig, used by
    // src/server/routes/repository.ts for `parameters.config`). ONNX Runtime then writes the
    // optimized model to that path: any path the server can write, outside the repository,
    // creating or overwriting files (the load answers 200 {}). It should be refused (400) for an
    // API override (or confined to the repository).
    const created = path.join(top, 'pwned.onnx');
    const victim = path.join(top, 'victim.txt');
    fs.writeFileSync(victim, 'precious');
    for (const target of [created, victim]) {
      const res = await load('mlp_tiny', JSON.stringify({ parameters: { config: JSON.stringify({ runtime: { optimizedModelFilePath: target } }) } }));
      expect({ target: path.basename(target), written: fs.existsSync(target) && fs.readFileSync(target, 'latin1') !== 'precious' }).toEqual({ target: path.basename(target), written: false });
      expectError(res, 400, 'INVALID_ARGUMENT');
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('no file outside the repository was read, listed or loaded', async () => {
    // a fresh load (unload first, so that the model file is opened again) still works afterwards
    expect((await unload('mlp_tiny')).statusCode).toBe(200);
    expect((await load('mlp_tiny')).statusCode).toBe(200);
    const inside = (p: string) => {
      const abs = path.resolve(p);
      return abs === root || abs.startsWith(root + path.sep) || abs === realRoot || abs.startsWith(realRoot + path.sep);
    };
    const realInside = (p: string) => {
      let real: string;
      try {
        real = fs.realpathSync(p);
      } catch {
        return true; // does not exist: nothing was read
      }
      return real === realRoot || real.startsWith(realRoot + path.sep);
    };
    expect(touched.length).toBeGreaterThan(0);
    // every path the repository touched is spelled inside the repository...
    expect(touched.filter((t) => !inside(t.p))).toEqual([]);
    // ...and what it read, listed or loaded resolves inside it (symlinks followed)
    expect(touched.filter((t) => ['readFile', 'readdir', 'open', 'opendir'].includes(t.fn) && !realInside(t.p))).toEqual([]);
    expect(loadedFiles.length).toBeGreaterThan(0);
    expect(loadedFiles.filter((p) => !realInside(p))).toEqual([]);
    const index = JSON.parse((await rawRequest(xport, 'POST', '/v2/repository/index', '{}')).body) as Array<{ name: string; state?: string }>;
    expect(index.filter((e) => e.state === 'READY').map((e) => e.name)).toEqual(['mlp_tiny']);
    expect(index.map((e) => e.name)).not.toContain('escape');
    expect(index.map((e) => e.name)).not.toContain('outside');
    const res = await rawRequest(xport, 'POST', '/v2/models/mlp_tiny/infer', VALID_TEXT);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body).outputs[0].shape).toEqual([2, 10]);
  });
});

describe('framework-level and transport errors', () => {
  it('Content-Length that disagrees with the body (inject)', async () => {
    const res = (await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', payload: VALID_TEXT, headers: { 'content-type': 'application/json', 'content-length': '10' } })) as unknown as Res;
    expectError(res, 400, 'INVALID_ARGUMENT');
  });

  it('unknown routes and methods → 404 NOT_FOUND', async () => {
    expectError(await rawRequest(port, 'GET', '/v2/models/mlp_tiny/infer'), 404, 'NOT_FOUND');
    expectError(await rawRequest(port, 'PUT', '/v2/models/mlp_tiny/infer', VALID_TEXT), 404, 'NOT_FOUND');
    expectError(await rawRequest(port, 'POST', '/v2/models/mlp_tiny/predict', VALID_TEXT), 404, 'NOT_FOUND');
    expectError(await rawRequest(port, 'GET', '/v3/models'), 404, 'NOT_FOUND');
  });

  it('a body Fastify cannot parse, sent to an unknown route → the protocol error shape', async () => {
    // Regression: buildServer() (src/server/build.ts) sets only a not-found handler at the root; nimify's
    // error handler lives in the plugin's encapsulated context. An unknown route still gets its
    // body parsed by the root's default JSON parser, and a parse failure is answered by Fastify's
    // default error handler: 400 {"statusCode":400,"code":"FST_ERR_CTP_INVALID_JSON_BODY" /
    // "FST_ERR_CTP_EMPTY_JSON_BODY",...}, a code outside ERROR_TABLE. (The fuzz finds this too.)
    // Either 404 NOT_FOUND or 400 INVALID_ARGUMENT is acceptable.
    for (const payload of ['not json', '', '{"__proto__":{}}', '{"constructor":{"prototype":{}}}']) {
      for (const [method, p] of [['POST', '/v2/models/mlp_tiny/predict'], ['DELETE', '/v2/models/mlp_tiny'], ['PUT', '/v2/repository/index']]) {
        const res = await rawRequest(port, method, p, payload);
        const code = (parseJson(res.body) as { code?: string } | undefined)?.code;
        expect([[404, 'NOT_FOUND'], [400, 'INVALID_ARGUMENT']], `${method} ${p} ${JSON.stringify(payload)} → ${res.statusCode} ${res.body.slice(0, 160)}`).toContainEqual([res.statusCode, code]);
      }
    }
  });

  it('a request the HTTP parser rejects answers 400 and the server keeps serving', async () => {
    const bad = [
      'POST /v2/models/mlp_tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}',
      'GARBAGE\r\n\r\n',
      // Transfer-Encoding and Content-Length together (a request-smuggling shape)
      'POST /v2/models/mlp_tiny/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
      // a chunk size that is not hex
      'POST /v2/models/mlp_tiny/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n',
    ];
    const results = [];
    for (const bytes of bad) results.push(await rawSocket(port, bytes));
    expect(results.map((r) => r.status)).toEqual([400, 400, 400, 400]);
    await expectServing(app);
    // Regression (minor): these are answered by Fastify's default clientError handler,
    // {"error":"Bad Request","message":"Client Error","statusCode":400}, without a `code`;
    // buildServer() (src/server/build.ts) could pass Fastify's `clientErrorHandler` option to
    // answer in the protocol's shape like every other error.
    for (const r of results) expect((parseJson(r.body) as { code?: string } | undefined)?.code, r.body).toBe('INVALID_ARGUMENT');
  });
});

describe('client-controlled timeouts', () => {
  let tapp: FastifyInstance;
  beforeAll(async () => {
    tapp = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, shedding: NO_SHED });
    await tapp.ready();
  });
  afterAll(async () => {
    await tapp?.close();
  });

  it('a huge parameters.timeout is not an immediate timeout', async () => {
    // Regression: 3e12 µs = 3e9 ms > 2**31-1, so setTimeout() in src/runtime/model.ts (infer, the TIMEOUT timer)
    // overflows to 1 ms and the request fails 504 TIMEOUT at once (plus a TimeoutOverflowWarning).
    // src/protocol/request.ts accepts any positive integer `timeout`; it should bound it (400) or
    // the model should clamp it. Either 200 or 400 is acceptable here; 504 is not.
    const res = await infer(tapp, JSON.stringify({ ...VALID, parameters: { timeout: 3e12 } }));
    expect([200, 400], `status ${res.statusCode}: ${res.body.slice(0, 200)}`).toContain(res.statusCode);
  });

  it("a client's own tiny timeouts do not open the model's circuit breaker for everyone", async () => {
    for (let i = 0; i < 6; i++) await infer(tapp, JSON.stringify({ ...VALID, parameters: { timeout: 1 } }));
    // Regression: src/server/routes/infer.ts isModelFault() counts every TIMEOUT, including one caused by
    // the request's own `parameters.timeout` (1 µs here); five such requests open the breaker and
    // every other client then gets 503 CIRCUIT_OPEN for resetTimeoutMs (10 s).
    await expectServing(tapp);
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzz: 10,000 mutated requests from a seeded PRNG.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Fuzzer {
  constructor(readonly rnd: () => number) {}

  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }

  chance(p: number): boolean {
    return this.rnd() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  dim(): number {
    return this.pick([0, 1, 2, 3, 64, 63, 65, -1, -64, 1.5, 0.5, 1e3, 1e7, 1e10, 1e13, 1e15, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, this.int(100)]);
  }

  dims(): unknown {
    if (this.chance(0.1)) return this.value(2);
    const rank = this.pick([0, 1, 2, 2, 2, 3, 33, 100]);
    const d = Array.from({ length: rank }, () => this.dim());
    if (rank === 2 && this.chance(0.5)) d[1] = 64;
    return d;
  }

  str(): string {
    return this.pick(['', 'x', 'y', 'X', 'FP32', 'BYTES', '__proto__', 'constructor', 'prototype', 'binary_data_size', '\u0000', '\ud800', 'é', '../..', '%2e', 'a'.repeat(1000)]);
  }

  value(depth = 0): unknown {
    switch (this.int(depth > 3 ? 8 : 11)) {
      case 0: return this.dim();
      case 1: return this.rnd() * 2e6 - 1e6;
      case 2: return this.str();
      case 3: return null;
      case 4: return this.chance(0.5);
      case 5: return [];
      case 6: return {};
      case 7: return -this.int(1000);
      case 8: return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
      case 9: return Object.fromEntries(Array.from({ length: this.int(3) }, () => [this.key(), this.value(depth + 1)]));
      default: {
        let v: unknown = 1;
        for (let i = this.int(200); i > 0; i--) v = this.chance(0.5) ? [v] : { a: v };
        return v;
      }
    }
  }

  key(): string {
    // 'timeout' is left out on purpose: a tiny client timeout legitimately answers 504 (and trips
    // the breaker, see the timeouts group), which would drown the fuzz in one known behaviour.
    return this.pick(['id', 'inputs', 'outputs', 'parameters', 'name', 'shape', 'datatype', 'data', 'binary_data_size', 'binary_data',
      'binary_data_output', 'priority', 'sequence_id', 'classification', 'shared_memory_region', 'extra', 'x', 'y', '', '0']);
  }

  /** Applies one structural mutation somewhere inside `root` (in place). */
  mutateTree(root: Record<string, unknown>): void {
    const containers: Array<Record<string, unknown> | unknown[]> = [];
    const walk = (v: unknown, depth: number) => {
      if (depth > 6 || v === null || typeof v !== 'object') return;
      containers.push(v as Record<string, unknown>);
      if (Array.isArray(v)) {
        if (v.length > 0 && typeof v[0] === 'number' && v.length > 8) return; // don't descend into data
        v.forEach((c) => walk(c, depth + 1));
      } else {
        for (const c of Object.values(v)) walk(c, depth + 1);
      }
    };
    walk(root, 0);
    const input = (Array.isArray(root.inputs) && root.inputs.length > 0 && root.inputs[0] !== null && typeof root.inputs[0] === 'object' ? root.inputs[0] : null) as Record<string, unknown> | null;
    switch (this.int(12)) {
      case 0: case 1: { // replace a value anywhere
        const c = this.pick(containers);
        if (Array.isArray(c)) { if (c.length > 0) c[this.int(c.length)] = this.value(); } else {
          const ks = Object.keys(c);
          if (ks.length > 0) c[this.pick(ks)] = this.value();
        }
        break;
      }
      case 2: { // delete a key / element
        const c = this.pick(containers);
        if (Array.isArray(c)) c.splice(this.int(c.length + 1), 1);
        else { const ks = Object.keys(c); if (ks.length > 0) delete c[this.pick(ks)]; }
        break;
      }
      case 3: { // add a key
        const c = this.pick(containers);
        if (Array.isArray(c)) c.push(this.value()); else c[this.key()] = this.value();
        break;
      }
      case 4: if (input) input.shape = this.dims(); break;
      case 5: if (input) input.datatype = this.chance(0.8) ? this.pick(['BOOL', 'UINT8', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES', 'BF16']) : this.value(); break;
      case 6: if (input && Array.isArray(input.data)) { // change the data length or nesting
        const d = input.data as unknown[];
        const k = this.int(4);
        if (k === 0) input.data = d.slice(0, this.int(d.length));
        else if (k === 1) input.data = [...d, ...d.slice(0, this.int(70))];
        else if (k === 2) input.data = [d.slice(0, 64), d.slice(64)];
        else input.data = [[d]];
      } break;
      case 7: if (input) input.name = this.chance(0.5) ? this.str() : this.value(); break;
      case 8: if (Array.isArray(root.inputs)) root.inputs.push(JSON.parse(JSON.stringify(root.inputs[0] ?? null))); break;
      case 9: { // request-level or tensor-level parameters
        const target = this.chance(0.5) || !input ? root : input;
        target.parameters = this.chance(0.2) ? this.value() : { ...(target.parameters as object | undefined), [this.key()]: this.value() };
        break;
      }
      case 10: root.outputs = this.chance(0.5) ? [{ name: this.pick(['y', 'x', 'Y', '']), parameters: { [this.key()]: this.value() } }] : this.value(); break;
      default: if (input) { const d = this.dims(); input.shape = d; if (Array.isArray(d)) input.data = new Array(Math.min(200, this.int(200))).fill(0.25); } break;
    }
  }

  /** Applies one byte-level mutation to `b`. */
  mutateBytes(b: Buffer): Buffer {
    if (b.length === 0) return Buffer.from(this.pick(['{', '[', '"', '0']));
    const pos = this.int(b.length);
    switch (this.int(7)) {
      case 0: { const c = Buffer.from(b); c[pos] ^= 1 << this.int(8); return c; }
      case 1: { const c = Buffer.from(b); c[pos] = this.int(256); return c; }
      case 2: return b.subarray(0, pos);
      case 3: {
        const tok = this.pick(['[', ']', '{', '}', '"', ',', ':', 'null', '-1', '1e999', '-0', '"__proto__":{},', '"constructor":{"prototype":{}},', '\\u0000', '\\ud800', '\u00ff', '\t', '"', '9999999999999999999999', '[[[[[[[[', '{"a":']);
        return Buffer.concat([b.subarray(0, pos), Buffer.from(tok), b.subarray(pos)]);
      }
      case 4: return Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + this.int(16)))]);
      case 5: { const end = Math.min(b.length, pos + 1 + this.int(32)); return Buffer.concat([b.subarray(0, end), b.subarray(pos, end), b.subarray(end)]); }
      default: { const junk = Buffer.alloc(1 + this.int(8)); for (let i = 0; i < junk.length; i++) junk[i] = this.int(256); return Buffer.concat([b.subarray(0, pos), junk, b.subarray(pos)]); }
    }
  }

  headerLength(correct: number, total: number): string {
    switch (this.int(10)) {
      case 0: return String(correct + this.int(9) - 4);
      case 1: return String(this.int(total + 10));
      case 2: return '0';
      case 3: return this.pick(['', '-1', 'abc', '1e3', '12.5', '0x10', ' ', '999999999999999', '9999999999999999', '+1', `${correct},${correct}`]);
      case 4: return String(total + 1);
      default: return String(correct);
    }
  }
}

interface FuzzRequest { kind: string; url: string; headers: Record<string, string>; payload: Buffer }
const FUZZ_PAD = Buffer.alloc(300 * 1024, 0x20);

function makeFuzzRequest(f: Fuzzer): FuzzRequest {
  const batch = f.pick([1, 2]);
  const data = X.slice(0, batch * 64);
  const url = f.chance(0.9) ? '/v2/models/mlp_tiny/infer' : f.pick(['/v2/models/mlp_tiny/versions/1/infer', `/v2/models/mlp_tiny/versions/${f.pick(['0', '2', '-1', 'x', '%2e%2e', '1.5'])}/infer`, `/v2/models/${f.pick(['two_inputs', 'identity_string', 'embed_int64', 'nope', '%2e%2e', 'a%2Fb'])}/infer`, '/v2/models/mlp_tiny/infer/', '/v2/models/mlp_tiny/predict']);
  const contentType = f.pick(['application/json', 'application/json', 'application/octet-stream', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '']);
  const headers: Record<string, string> = contentType ? { 'content-type': contentType } : {};
  const kind = f.int(10);
  if (kind < 5) {
    // a JSON request: structural mutations, byte mutations, or both
    const tree: Record<string, unknown> = { id: 'fuzz', inputs: [{ name: 'x', shape: [batch, 64], datatype: 'FP32', data }] };
    if (f.chance(0.3)) tree.outputs = [{ name: 'y' }];
    const structural = f.chance(0.75);
    if (structural) for (let i = 1 + f.int(3); i > 0; i--) f.mutateTree(tree);
    let payload: Buffer = Buffer.from(JSON.stringify(tree) ?? '');
    const bytewise = !structural || f.chance(0.25);
    if (bytewise) for (let i = 1 + f.int(3); i > 0; i--) payload = f.mutateBytes(payload);
    if (f.chance(0.05)) headers['inference-header-content-length'] = f.headerLength(payload.length, payload.length);
    // a few bodies padded past the JSON worker's threshold, so the fuzz covers that path too
    const padded = f.chance(0.03);
    if (padded) payload = Buffer.concat([payload, FUZZ_PAD]);
    return { kind: `json${structural ? '+tree' : ''}${bytewise ? '+bytes' : ''}${padded ? '+padded' : ''}`, url, headers, payload };
  }
  if (kind < 9) {
    // a binary request: header mutations, length mutations, byte mutations
    const tree: Record<string, unknown> = { inputs: [{ name: 'x', shape: [batch, 64], datatype: 'FP32', parameters: { binary_data_size: batch * 256 } }] };
    if (f.chance(0.5)) tree.outputs = [{ name: 'y', parameters: { binary_data: f.chance(0.5) } }];
    if (f.chance(0.5)) for (let i = 1 + f.int(2); i > 0; i--) f.mutateTree(tree);
    let json: Buffer = Buffer.from(JSON.stringify(tree) ?? '');
    if (f.chance(0.2)) json = f.mutateBytes(json);
    let tail: Buffer = f32bytes(data);
    if (f.chance(0.3)) tail = f.mutateBytes(tail);
    let payload: Buffer = Buffer.concat([json, tail]);
    if (f.chance(0.15)) payload = f.mutateBytes(payload);
    headers['inference-header-content-length'] = f.headerLength(json.length, payload.length);
    return { kind: 'binary', url, headers, payload };
  }
  // raw binary mode
  const size = f.pick([0, 1, 4, 255, 256, 257, 512, 1024, 64 * 4 * 3]);
  const payload = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) payload.writeFloatLE(f.rnd(), i);
  headers['inference-header-content-length'] = f.chance(0.8) ? '0' : f.headerLength(0, size);
  return { kind: 'raw', url, headers, payload };
}

/** Checks one fuzz response; returns a problem description or null. */
function checkFuzzResponse(res: Res): string | null {
  if (res.statusCode >= 500) return `status ${res.statusCode}: ${res.body.slice(0, 200)}`;
  if (res.statusCode >= 400) {
    const body = parseJson(res.body) as { error?: unknown; code?: unknown } | undefined;
    if (body === undefined || typeof body !== 'object' || body === null) return `status ${res.statusCode} with a non-JSON body: ${res.body.slice(0, 200)}`;
    if (typeof body.error !== 'string') return `status ${res.statusCode} without a string error: ${res.body.slice(0, 200)}`;
    if (typeof body.code !== 'string' || !Object.prototype.hasOwnProperty.call(ERROR_TABLE, body.code)) return `status ${res.statusCode} with code ${JSON.stringify(body.code)} not in ERROR_TABLE: ${res.body.slice(0, 200)}`;
    if (ERROR_TABLE[body.code as keyof typeof ERROR_TABLE].httpStatus !== res.statusCode) return `status ${res.statusCode} but code ${body.code}`;
    return null;
  }
  if (res.statusCode !== 200) return `unexpected status ${res.statusCode}`;
  const hl = res.headers['inference-header-content-length'];
  const headerText = hl === undefined ? res.body : res.rawPayload.subarray(0, Number(hl)).toString();
  const parsed = parseJson(headerText) as { outputs?: Array<{ name: string; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } }> } | undefined;
  if (!parsed || !Array.isArray(parsed.outputs) || parsed.outputs.length === 0) return `200 without outputs: ${res.body.slice(0, 200)}`;
  let binary = 0;
  for (const o of parsed.outputs) {
    if (!Array.isArray(o.shape)) return `200 output without a shape: ${headerText.slice(0, 200)}`;
    const count = o.shape.reduce((a, b) => a * b, 1);
    if (o.parameters?.binary_data_size !== undefined) binary += o.parameters.binary_data_size;
    else if (!Array.isArray(o.data) || o.data.length !== count) return `200 output data does not match shape: ${headerText.slice(0, 200)}`;
  }
  if (hl !== undefined && res.rawPayload.length - Number(hl) !== binary) return `200 binary part ${res.rawPayload.length - Number(hl)} bytes, header says ${binary}`;
  return null;
}

describe('fuzz', () => {
  const N = 10_000;
  const CONCURRENCY = 8;

  it(`${N} mutated requests (seeded): no 5xx, every error in the protocol shape, still serving`, async () => {
    const fapp = await buildServer({ repository: makeRepo(Object.fromEntries(FIXTURES.map((f) => [f, f]))), logger: false, shedding: NO_SHED });
    try {
      await fapp.ready();
      await expectServing(fapp);
      const f = new Fuzzer(mulberry32(0x5eed_1234));
      const failures: string[] = [];
      const statuses = new Map<string, number>();
      const t0 = performance.now();
      let next = 0;
      const worker = async () => {
        while (next < N) {
          const i = next++;
          const req = makeFuzzRequest(f);
          const res = (await fapp.inject({ method: 'POST', url: req.url, headers: req.headers, payload: req.payload })) as unknown as Res;
          const key = `${res.statusCode} ${(parseJson(res.body) as { code?: string } | undefined)?.code ?? ''}`.trim();
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
          const problem = checkFuzzResponse(res);
          if (problem !== null) {
            failures.push(`#${i} [${req.kind}] ${req.url} ${JSON.stringify(req.headers)} ${JSON.stringify(req.payload.subarray(0, 240).toString('latin1'))} → ${problem}`);
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      const seconds = (performance.now() - t0) / 1000;
      console.log(`fuzz: ${N} requests in ${seconds.toFixed(1)} s; responses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => b[1] - a[1])))}`);
      // the server still answers, with the right result
      await expectServing(fapp);
      // Most requests are refused, but a good share of mutations stay valid and get answered.
      expect(statuses.get('200') ?? 0).toBeGreaterThan(N / 50);
      expect(seconds).toBeLessThan(60);
      // Regression: a body sent to an unknown route (e.g. /v2/models/mlp_tiny/
      // infer/ or a path inject() normalizes away) that is not valid JSON is answered by Fastify's
      // default error handler, 400 FST_ERR_CTP_INVALID_JSON_BODY (src/server/build.ts, no root
      // error handler; see the framework-errors group).
      expect(failures.length, `${failures.length} bad responses, first ones:\n${failures.slice(0, 8).join('\n')}`).toBe(0);
    } finally {
      await fapp.close();
    }
  }, 120_000);
});

describe('after the whole suite', () => {
  it('the main server still serves a valid inference (JSON and binary)', async () => {
    await expectServing(app);
    const { payload, headers } = binaryRequest({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: 512 } }] }, f32bytes(X));
    const res = await infer(app, payload, headers);
    expect(res.statusCode).toBe(200);
    const out = JSON.parse(res.body) as { outputs: Array<{ shape: number[]; data: number[] }> };
    expect(out.outputs[0].shape).toEqual([2, 10]);
    expect(maxAbsDiff(out.outputs[0].data, expectedY)).toBeLessThan(1e-5);
  });
});

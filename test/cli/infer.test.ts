/**
 * `nimify infer`: in-process with JSON and .npy inputs (an .npy output read back equals
 * Model.infer()'s own result), an image through the digits demo's pipeline, against a real
 * `nimify serve` on a real port (tensors and an image), the .npy reader/writer, and the errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../../src';
import { main } from '../../src/cli/index';
import { readNpy, writeNpy } from '../../src/cli/npy';
import { MODELS, ROOT } from '../helpers';
import { capture } from './capture';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-infer-'));
const DIGITS = path.join(ROOT, 'examples', 'digits');
const SEVEN = path.join(DIGITS, 'samples', 'digit-7.png');
const xs = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i) / 2);

async function infer(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = capture();
  const code = await main(['infer', ...args], io);
  return { code, out: io.stdout(), err: io.stderr() };
}

describe('npy.ts', () => {
  it('round-trips every type it supports, v1 header aligned to 64 bytes; refuses what it cannot read', () => {
    for (const t of [new Tensor('float32', xs, [2, 64]), new Tensor('int64', [1n, -2n, 3n], [3]), new Tensor('uint8', [1, 2, 3, 4], [2, 2]), new Tensor('bool', [1, 0], [2]), new Tensor('float64', [1.5], [])]) {
      const bytes = writeNpy(t);
      expect((bytes.readUInt16LE(8) + 10) % 64).toBe(0);
      const back = readNpy(bytes);
      expect(back.type).toBe(t.type);
      expect(back.dims).toEqual(t.dims);
      expect(Array.from(back.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
    }
    const good = writeNpy(new Tensor('float32', [1, 2], [2]));
    const header = good.toString('latin1');
    expect(() => readNpy(Buffer.from(header.replace("'fortran_order': False", "'fortran_order': True "), 'latin1'))).toThrow(/Fortran-order/);
    expect(() => readNpy(Buffer.from(header.replace("'<f4'", "'>f4'"), 'latin1'))).toThrow(/big-endian/);
    expect(() => readNpy(Buffer.from(header.replace("'<f4'", "'<c8'"), 'latin1'))).toThrow(/dtype '<c8' is not supported/);
    expect(() => readNpy(good.subarray(0, good.length - 1))).toThrow(/needs 8 data bytes, the file has 7/);
    expect(() => readNpy(Buffer.from('not numpy at all'))).toThrow(/not a .npy file/);
    // Version 2.0 header (u32 length).
    const v2 = Buffer.concat([good.subarray(0, 6), Buffer.from([2, 0]), Buffer.alloc(4), good.subarray(10)]);
    v2.writeUInt32LE(good.readUInt16LE(8), 8);
    expect(Array.from(readNpy(v2).data as Float32Array)).toEqual([1, 2]);
    expect(() => writeNpy(new Tensor('string', ['a'], [1]))).toThrow(/no .npy dtype/);
  });
});

describe('nimify infer, in-process', () => {
  it('JSON input: nested arrays give the shape; the answer is the model\'s own', async () => {
    const r = await infer([path.join(MODELS, 'two_inputs.onnx'), '--input', 'a=[[1,2,3,4],[5,6,7,8]]', '--input', 'b=[[2,2,2,2],[1,1,1,1]]']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toEqual({
      model_name: 'two_inputs', model_version: '1',
      outputs: [{ name: 'sum', datatype: 'FP32', shape: [2, 4], data: [3, 4, 5, 6, 6, 7, 8, 9] }, { name: 'prod', datatype: 'FP32', shape: [2, 4], data: [2, 4, 6, 8, 5, 6, 7, 8] }],
    });
  });

  it('.npy in, .npy out: the file read back equals Model.infer() on the same input', async () => {
    fs.writeFileSync(path.join(tmp, 'x.npy'), writeNpy(new Tensor('float32', xs, [2, 64])));
    const out = path.join(tmp, 'out');
    const r = await infer([path.join(MODELS, 'mlp_tiny.onnx'), '--input', `x=@${path.join(tmp, 'x.npy')}`, '--output', 'npy', '--out-dir', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim()).toBe(path.join(out, 'y.npy'));
    const y = readNpy(fs.readFileSync(path.join(out, 'y.npy')));
    const model = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
    const expected = (await model.infer({ x: new Tensor('float32', xs, [2, 64]) })).y!;
    await model.dispose();
    expect(y.dims).toEqual([2, 10]);
    expect(Array.from(y.data as Float32Array)).toEqual(Array.from(expected.data as Float32Array));
  });

  it('int64 JSON and a scalar', async () => {
    const r = await infer([path.join(MODELS, 'embed_int64.onnx'), '--input', 'ids=[[1,2,3]]']);
    expect(r.code, r.err).toBe(0);
    const doc = JSON.parse(r.out) as { outputs: Array<{ name: string; datatype: string; shape: number[]; data: number[] }> };
    expect(doc.outputs.find((o) => o.name === 'argmax')).toMatchObject({ datatype: 'INT64', shape: [1] });
  });

  it('int64 beyond 2^53 prints exact digits, as the server\'s JSON encoding writes them (not a string, not rounded)', async () => {
    fs.writeFileSync(path.join(tmp, 'big.npy'), writeNpy(new Tensor('int64', BigInt64Array.from([2n ** 60n + 1n, -(2n ** 62n), 7n]), [3])));
    const r = await infer([path.join(MODELS, 'identity_int64.onnx'), '--input', `x=@${path.join(tmp, 'big.npy')}`]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('"data":[1152921504606846977,-4611686018427387904,7]');
  });

  it('an image through the digits demo\'s preprocess pipeline: its predictions', async () => {
    const r = await infer([DIGITS, '--input', `image=@${SEVEN}`]);
    expect(r.code, r.err).toBe(0);
    const doc = JSON.parse(r.out) as { model_name: string; predictions: Array<{ label: string; score: number }> };
    expect(doc.model_name).toBe('digits');
    expect(doc.predictions[0]!.label).toBe('7');
    expect(doc.predictions).toHaveLength(3);
  });

  it('errors name the input: missing, unknown, wrong dtype, wrong shape, ragged, image without pipeline (exit 2); a missing file (exit 1)', async () => {
    const tiny = path.join(MODELS, 'mlp_tiny.onnx');
    const two = path.join(MODELS, 'two_inputs.onnx');
    expect(await infer([two, '--input', 'a=[[1,2,3,4]]'])).toMatchObject({ code: 2, err: expect.stringContaining("--input: missing 'b'") });
    expect(await infer([two, '--input', 'a=[[1,2,3,4]]', '--input', 'b=[[1,2,3,4]]', '--input', 'c=1'])).toMatchObject({ code: 2, err: expect.stringContaining("the model has no input 'c'") });
    fs.writeFileSync(path.join(tmp, 'i.npy'), writeNpy(new Tensor('int32', new Int32Array(64), [1, 64])));
    expect(await infer([tiny, '--input', `x=@${path.join(tmp, 'i.npy')}`])).toMatchObject({ code: 2, err: expect.stringContaining("--input x: the .npy file holds int32, the model's input is float32") });
    expect(await infer([tiny, '--input', 'x=[[1,2]]'])).toMatchObject({ code: 2, err: expect.stringContaining("input 'x': expected shape [batch, 64], received [1, 2]") });
    expect(await infer([two, '--input', 'a=[[1,2],[3]]', '--input', 'b=1'])).toMatchObject({ code: 2, err: expect.stringContaining('--input a[1]: ragged') });
    expect(await infer([tiny, '--input', 'x=not json'])).toMatchObject({ code: 2, err: expect.stringContaining('--input x: expected JSON') });
    expect(await infer([tiny, '--input', `x=@${SEVEN}`])).toMatchObject({ code: 2, err: expect.stringContaining('has no image preprocess pipeline') });
    expect(await infer([tiny, '--input', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('expected name=') });
    expect(await infer([tiny])).toMatchObject({ code: 2, err: expect.stringContaining('at least one --input') });
    expect(await infer([tiny, '--input', `x=@${path.join(tmp, 'none.npy')}`])).toMatchObject({ code: 1, err: expect.stringContaining('NOT_FOUND') });
    expect(await infer(['http://127.0.0.1:9', '--input', 'x=1'])).toMatchObject({ code: 2, err: expect.stringContaining('--model: required with a server URL') });
  });
});

describe('nimify infer against a real nimify serve', () => {
  let child: ChildProcess;
  let base = '';
  beforeAll(async () => {
    const repo = path.join(tmp, 'repo');
    fs.mkdirSync(path.join(repo, 'tiny', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(repo, 'tiny', '1', 'model.onnx'));
    fs.mkdirSync(path.join(repo, 'ids', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'identity_int64.onnx'), path.join(repo, 'ids', '1', 'model.onnx'));
    fs.cpSync(path.join(DIGITS, 'digits'), path.join(repo, 'digits'), { recursive: true });
    child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'serve', repo, '--port', '0', '--log-level', 'warn', '--api-key', 'secret-key-1234'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    base = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d) => {
        out += d;
        const m = /serving .* at (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.stderr!.on('data', (d) => (out += d));
      child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
    });
  }, 60_000);
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('tensors over KServe v2 JSON give what in-process gives; npy output too', async () => {
    fs.writeFileSync(path.join(tmp, 'x2.npy'), writeNpy(new Tensor('float32', xs, [2, 64])));
    const local = await infer([path.join(MODELS, 'mlp_tiny.onnx'), '--input', `x=@${path.join(tmp, 'x2.npy')}`]);
    const remote = await infer([base, '--model', 'tiny', '--api-key', 'secret-key-1234', '--input', `x=@${path.join(tmp, 'x2.npy')}`]);
    expect(remote.code, remote.err).toBe(0);
    const [l, r] = [JSON.parse(local.out), JSON.parse(remote.out)] as Array<{ outputs: Array<{ data: number[] }> }>;
    expect(r).toMatchObject({ model_name: 'tiny', model_version: '1' });
    expect(r.outputs[0]!.data).toEqual(l.outputs[0]!.data.map((v) => Math.fround(v)));
    const npy = await infer([base, '--model', 'tiny', '--version', '1', '--api-key', 'secret-key-1234', '--input', `x=@${path.join(tmp, 'x2.npy')}`, '--output', 'npy', '--out-dir', path.join(tmp, 'remote')]);
    expect(npy.code, npy.err).toBe(0);
    expect(readNpy(fs.readFileSync(path.join(tmp, 'remote', 'y.npy'))).dims).toEqual([2, 10]);
  });

  it('a URL that names the model (/v2/models/<m>[/versions/<v>]) needs no --model; int64 comes back exact, as in-process', async () => {
    const input = 'x=[9007199254740991,-9007199254740991,0]';
    const local = await infer([path.join(MODELS, 'identity_int64.onnx'), '--input', input]);
    const remote = await infer([`${base}/v2/models/ids/versions/1`, '--api-key', 'secret-key-1234', '--input', input]);
    expect(remote.code, remote.err).toBe(0);
    expect(remote.out).toContain('"data":[9007199254740991,-9007199254740991,0]');
    expect(remote.out.replace(/"model_name":"ids"/, '"model_name":"identity_int64"')).toBe(local.out);
    expect(await infer([`${base}/v2/models/ids`, '--model', 'tiny', '--input', input])).toMatchObject({ code: 2, err: expect.stringContaining("--model: the URL names model 'ids', --model says 'tiny'") });
    // A %-escape that is not UTF-8: a usage error naming <url>, before anything is sent.
    expect(await infer(['http://127.0.0.1:9/v2/models/%E0', '--input', input])).toMatchObject({ code: 2, err: expect.stringContaining('<url>: expected a path whose %-escapes are UTF-8') });
    expect(await infer(['ftp://127.0.0.1:9/', '--model', 'ids', '--input', input])).toMatchObject({ code: 2, err: expect.stringContaining('<url>: expected an http: or https: URL') });
  });

  it('an image goes to /v1/models/<m>/predict', async () => {
    const r = await infer([base, '--model', 'digits', '--api-key', 'secret-key-1234', '--input', `image=@${SEVEN}`]);
    expect(r.code, r.err).toBe(0);
    expect((JSON.parse(r.out) as { predictions: Array<{ label: string }> }).predictions[0]!.label).toBe('7');
  });

  it('server-side errors: no key (401), unknown model (404), missing input checked against the server\'s metadata', async () => {
    expect(await infer([base, '--model', 'tiny', '--input', 'x=[[1]]'])).toMatchObject({ code: 1, err: expect.stringContaining('HTTP 401') });
    expect(await infer([base, '--model', 'nope', '--api-key', 'secret-key-1234', '--input', 'x=[[1]]'])).toMatchObject({ code: 1, err: expect.stringContaining('HTTP 404') });
    expect(await infer([base, '--model', 'tiny', '--api-key', 'secret-key-1234', '--input', 'z=[[1]]'])).toMatchObject({ code: 2, err: expect.stringContaining("the model has no input 'z'") });
    expect(await infer([base, '--model', 'tiny', '--api-key', 'secret-key-1234', '--input', 'x=[[1]]'])).toMatchObject({ code: 2, err: expect.stringContaining('HTTP 400') });
  });
});

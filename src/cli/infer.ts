/**
 * `nimify infer <model.onnx | repository | url> --input name=<json|@file.npy|@image> …`: one
 * inference, in-process (the model or repository opened as `nimify serve` would, without
 * batching) or against a running server (KServe v2: GET /v2/models/<m> for the inputs'
 * datatypes, POST …/infer with JSON inputs and binary outputs asked for; an image goes to
 * /v1/models/<m>/predict). Tensors are encoded and decoded by the server's own protocol layer
 * (src/protocol). Outputs go to stdout as JSON
 * or into <out-dir>/<name>.npy files (npy.ts).
 *
 * Input values: inline JSON (nested arrays give the shape, a bare number is a scalar; the element
 * type is the model's), `@file.npy` (dtype and shape from the file; the dtype must be the
 * model's), or `@image.png|jpg|jpeg|webp` for a model whose config.json has a `preprocess` image
 * pipeline (that input is then the only one, and the answer is the model's predictions).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NimifyError } from '../runtime/errors';
import type { Model, Outputs } from '../runtime/model';
import { DATATYPE_TO_TYPE, isDatatype, toDatatype, type Datatype } from '../protocol/datatypes';
import { fromBytes, jsonElements } from '../protocol/request';
import { tensorJson } from '../protocol/response';
import { ModelRepository } from '../repository/repository';
import { Tensor } from '../runtime/tensor';
import { flagHelp, parseFlags, type FlagSpec, onePositional } from './flags';
import { EXIT, type CliIo } from './io';
import { readNpy, writeNpy } from './npy';
import { isUrl, parseServerUrl, urlModel } from './target';

export const INFER_FLAGS = {
  input: { type: 'string', short: 'i', multiple: true, arg: 'name=value', help: "an input: name=<json>, name=@file.npy or name=@image.png (repeatable)" },
  output: { type: 'string', short: 'o', arg: 'format', help: 'json (stdout) or npy (<out-dir>/<name>.npy per output) (default json)', choices: ['json', 'npy'] },
  'out-dir': { type: 'string', arg: 'dir', help: 'where --output npy writes (default: the current directory)' },
  model: { type: 'string', short: 'm', arg: 'name', help: 'the model: required with a repository holding several models, or a URL that does not name one (/v2/models/<m>)' },
  version: { type: 'string', arg: 'v', help: 'model version (default: the newest ready one)' },
  'api-key': { type: 'string', arg: 'key', help: 'URL only: sent as Authorization: Bearer <key>' },
  'timeout-ms': { type: 'string', arg: 'ms', help: 'give up after this long (default 60000)', integer: { min: 1 } },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify infer <model.onnx | repository-dir | http(s)://server> --input name=value … [options]

One inference. With a model file or repository it runs in this process; with a URL it asks a
running server (nimify serve, or any KServe v2 server): the model is the URL's /v2/models/<m>[/versions/<v>],
else --model. Outputs come back exact (the binary tensor extension is asked for; JSON where a
server answers JSON).

  --input x='[[0.1, 0.2], [0.3, 0.4]]'   inline JSON: nested arrays give the shape, the type is the model's
  --input x=@batch.npy                   a NumPy file (little-endian, C order; its dtype must be the model's)
  --input image=@digit.png               an image, for a model whose config.json has an image \`preprocess\`:
                                         prints its predictions (postprocess) or raw outputs

options (each also read from the environment variable in brackets):
${flagHelp(INFER_FLAGS, 'infer')}`;

const IMAGE_EXT = /\.(png|jpe?g|webp)$/i;

type Value = { kind: 'tensor'; tensor: Tensor } | { kind: 'json'; value: unknown } | { kind: 'image'; bytes: Buffer; file: string };

/** Splits `name=value` and reads @files; JSON is parsed here and typed later against the model. */
async function parseInputs(raw: readonly string[]): Promise<Map<string, Value>> {
  const inputs = new Map<string, Value>();
  for (const arg of raw) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new NimifyError('INVALID_ARGUMENT', `--input: expected name=<json|@file.npy|@image.png>, received ${JSON.stringify(arg)}`);
    const name = arg.slice(0, eq);
    const text = arg.slice(eq + 1);
    if (inputs.has(name)) throw new NimifyError('INVALID_ARGUMENT', `--input ${name}: given twice`);
    if (text.startsWith('@')) {
      const file = text.slice(1);
      let bytes: Buffer;
      try {
        bytes = await fsp.readFile(file);
      } catch (err) {
        throw new NimifyError('NOT_FOUND', `--input ${name}: cannot read '${file}' (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      if (file.toLowerCase().endsWith('.npy')) inputs.set(name, { kind: 'tensor', tensor: readNpy(bytes, `--input ${name} (${file})`) });
      else if (IMAGE_EXT.test(file)) inputs.set(name, { kind: 'image', bytes, file });
      else throw new NimifyError('INVALID_ARGUMENT', `--input ${name}: '${file}' is neither a .npy file nor an image (.png, .jpg, .jpeg, .webp)`);
      continue;
    }
    try {
      inputs.set(name, { kind: 'json', value: JSON.parse(text) });
    } catch (err) {
      throw new NimifyError('INVALID_ARGUMENT', `--input ${name}: expected JSON (a number or nested arrays), @file.npy or @image; ${(err as Error).message}`);
    }
  }
  if (inputs.size === 0) throw new NimifyError('INVALID_ARGUMENT', 'infer: expected at least one --input name=value');
  return inputs;
}

/** Shape and flat elements of nested JSON arrays; refuses ragged arrays and non-scalars. */
export function flattenJson(where: string, value: unknown): { dims: number[]; flat: unknown[] } {
  const dims: number[] = [];
  for (let v = value; Array.isArray(v); v = v[0]) dims.push(v.length);
  const flat: unknown[] = [];
  const walk = (v: unknown, depth: number, at: string) => {
    if (depth === dims.length) {
      if (Array.isArray(v)) throw new NimifyError('INVALID_ARGUMENT', `${where}${at}: ragged nested arrays (expected a value, received an array)`);
      if (typeof v !== 'number' && typeof v !== 'boolean' && typeof v !== 'string') throw new NimifyError('INVALID_ARGUMENT', `${where}${at}: expected a number, boolean or string, received ${JSON.stringify(v)}`);
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== dims[depth]) throw new NimifyError('INVALID_ARGUMENT', `${where}${at}: ragged nested arrays (expected ${dims[depth]} elements at depth ${depth})`);
    v.forEach((x, i) => walk(x, depth + 1, `${at}[${i}]`));
  };
  walk(value, 0, '');
  return { dims, flat };
}

/** Inline JSON typed as the model's input: the shape from the nesting, the elements as a request's JSON `data` (protocol/request.ts). */
function jsonTensor(name: string, value: unknown, datatype: Datatype): Tensor {
  const { dims, flat } = flattenJson(`--input ${name}`, value);
  return new Tensor(DATATYPE_TO_TYPE[datatype], jsonElements(`--input ${name}`, datatype, flat, [flat.length], flat.length) as never, dims);
}

/** Checks the given names against the model's inputs: every one known, none missing. */
function checkNames(given: ReadonlyMap<string, Value>, inputs: readonly { name: string }[]): void {
  const names = inputs.map((i) => i.name);
  const unknown = [...given.keys()].filter((n) => !names.includes(n));
  if (unknown.length > 0) throw new NimifyError('INVALID_ARGUMENT', `--input: the model has no input ${unknown.map((n) => `'${n}'`).join(', ')} (its inputs: ${names.map((n) => `'${n}'`).join(', ')})`);
  const missing = names.filter((n) => !given.has(n));
  if (missing.length > 0) throw new NimifyError('INVALID_ARGUMENT', `--input: missing ${missing.map((n) => `'${n}'`).join(', ')} (the model's inputs: ${names.map((n) => `'${n}'`).join(', ')})`);
}

function imageOnly(given: ReadonlyMap<string, Value>): { name: string; bytes: Buffer; file: string } | null {
  const images = [...given].filter(([, v]) => v.kind === 'image');
  if (images.length === 0) return null;
  if (given.size > 1) throw new NimifyError('INVALID_ARGUMENT', `--input ${images[0]![0]}: an image input must be the only --input (the model's preprocess pipeline makes all of its inputs)`);
  const [name, v] = images[0]! as [string, { bytes: Buffer; file: string }];
  return { name, bytes: v.bytes, file: v.file };
}

/** Outputs as the JSON a KServe v2 server answers (response.ts writes both). */
function outputsJson(model: string, version: string, outputs: ReadonlyArray<[string, Tensor]>): string {
  return `{"model_name":${JSON.stringify(model)},"model_version":${JSON.stringify(version)},"outputs":[${outputs.map(([n, t]) => tensorJson(n, t)).join(',')}]}`;
}

/** The datatype an input or output travels as; refuses a type the protocol cannot carry. */
function datatypeOf(what: string, type: string): Datatype {
  const d = toDatatype(type);
  if (d === null) throw new NimifyError('UNSUPPORTED', `${what}: a ${type}, which the inference protocol cannot carry`);
  return d;
}

interface Answer {
  model: string;
  version: string;
  outputs?: Record<string, Tensor>;
  predictions?: unknown;
}

async function inProcess(target: string, given: Map<string, Value>, opts: { model?: string; version?: string; timeoutMs: number }): Promise<Answer> {
  const repo = await ModelRepository.open({ path: target, controlMode: 'explicit', startupModels: opts.model ? [opts.model] : ['*'], defaults: { batching: false } });
  try {
    const names = repo.names();
    const name = opts.model ?? (names.length === 1 ? names[0]! : undefined);
    if (name === undefined) throw new NimifyError('INVALID_ARGUMENT', `--model: the repository holds ${names.length} models (${names.join(', ')}); name one`);
    if (!repo.has(name)) throw new NimifyError('NOT_FOUND', `--model: no model '${name}' in ${repo.root} (it has ${names.join(', ')})`);
    const v = repo.resolve(name, opts.version);
    const model = v.model as Model;
    const image = imageOnly(given);
    if (image) {
      if (model.pipeline?.preprocess?.type !== 'image') throw new NimifyError('INVALID_ARGUMENT', `--input ${image.name}: model '${name}' has no image preprocess pipeline in its config.json; give tensors (JSON or .npy) instead`);
      if (model.pipeline.postprocess !== null) return { model: name, version: v.version, predictions: await model.predict(image.bytes, { timeoutMs: opts.timeoutMs }) };
      const runs = await model.runPipeline(image.bytes, { timeoutMs: opts.timeoutMs });
      return { model: name, version: v.version, outputs: runs[0] };
    }
    checkNames(given, model.inputs);
    const feeds: Record<string, Tensor> = {};
    for (const info of model.inputs) feeds[info.name] = typed(info.name, given.get(info.name)!, datatypeOf(`input '${info.name}'`, info.type));
    const outputs: Outputs = await model.infer(feeds, { timeoutMs: opts.timeoutMs });
    return { model: name, version: v.version, outputs };
  } finally {
    await repo.close();
  }
}

function typed(name: string, v: Value, datatype: Datatype): Tensor {
  const type = DATATYPE_TO_TYPE[datatype];
  if (v.kind === 'json') return jsonTensor(name, v.value, datatype);
  if (v.kind === 'tensor') {
    if (v.tensor.type !== type) throw new NimifyError('INVALID_ARGUMENT', `--input ${name}: the .npy file holds ${v.tensor.type}, the model's input is ${type}`);
    return v.tensor;
  }
  throw new NimifyError('INVALID_ARGUMENT', `--input ${name}: an image input needs a model with an image preprocess pipeline`);
}

interface HttpAnswer {
  status: number;
  headers: Headers;
  bytes: Buffer;
}

async function http(url: string, init: RequestInit & { timeoutMs: number; apiKey?: string }): Promise<HttpAnswer> {
  const headers = new Headers(init.headers);
  if (init.apiKey) headers.set('authorization', `Bearer ${init.apiKey}`);
  let res: Response;
  let bytes: Buffer;
  try {
    res = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(init.timeoutMs) });
    bytes = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    throw new NimifyError(cause === 'TimeoutError' ? 'TIMEOUT' : 'NOT_READY', `${init.method ?? 'GET'} ${url}: ${cause === 'TimeoutError' ? `no answer within ${init.timeoutMs} ms` : `cannot connect (${cause})`}`);
  }
  if (res.status >= 400) {
    const text = bytes.toString('utf8');
    const body = parseJson(text) ?? { error: text.slice(0, 500) };
    const code = typeof body.code === 'string' ? `${body.code}: ` : '';
    throw new NimifyError(res.status === 404 ? 'NOT_FOUND' : res.status === 401 ? 'UNAUTHORIZED' : res.status === 400 ? 'INVALID_ARGUMENT' : 'RUNTIME_ERROR', `${init.method ?? 'GET'} ${url}: HTTP ${res.status}: ${code}${String(body.error ?? text).slice(0, 500)}`);
  }
  return { status: res.status, headers: res.headers, bytes };
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function jsonBody(url: string, a: HttpAnswer): Record<string, unknown> {
  const body = parseJson(a.bytes.toString('utf8'));
  if (body === null) throw new NimifyError('RUNTIME_ERROR', `${url}: expected a JSON object, received ${JSON.stringify(a.bytes.toString('utf8').slice(0, 200))}`);
  return body;
}

/**
 * The outputs of an inference response, decoded as the server decodes requests (protocol/request.ts):
 * binary outputs (asked for: exact 64-bit integers) from their bytes, JSON `data` otherwise.
 */
function decodeOutputs(url: string, a: HttpAnswer): { body: Record<string, unknown>; outputs: Record<string, Tensor> } {
  const headerLength = a.headers.get('inference-header-content-length');
  const n = headerLength === null ? a.bytes.length : Number(headerLength);
  if (!Number.isSafeInteger(n) || n < 0 || n > a.bytes.length) throw new NimifyError('RUNTIME_ERROR', `${url}: Inference-Header-Content-Length ${headerLength} does not fit a ${a.bytes.length}-byte body`);
  const body = jsonBody(url, { ...a, bytes: a.bytes.subarray(0, n) });
  const binary = a.bytes.subarray(n);
  const outputs: Record<string, Tensor> = {};
  let offset = 0;
  for (const [i, o] of ((body.outputs ?? []) as Array<{ name: string; datatype: unknown; shape: number[]; data?: unknown; parameters?: { binary_data_size?: number } }>).entries()) {
    const where = `${url}: outputs[${i}]`;
    if (!isDatatype(o.datatype)) throw new NimifyError('RUNTIME_ERROR', `${where}.datatype: unknown datatype ${JSON.stringify(o.datatype)}`);
    const count = o.shape.reduce((x, y) => x * y, 1);
    const size = o.parameters?.binary_data_size;
    if (size !== undefined) {
      outputs[o.name] = fromBytes(where, o.datatype, binary.subarray(offset, offset + size), o.shape, count);
      offset += size;
    } else {
      outputs[o.name] = new Tensor(DATATYPE_TO_TYPE[o.datatype], jsonElements(where, o.datatype, o.data, o.shape, count) as never, o.shape);
    }
  }
  return { body, outputs };
}

async function remote(target: string, given: Map<string, Value>, opts: { model?: string; version?: string; apiKey?: string; timeoutMs: number }): Promise<Answer> {
  const u = parseServerUrl(target);
  const { model, version } = urlModel(u, opts);
  if (!model) throw new NimifyError('INVALID_ARGUMENT', '--model: required with a server URL that does not name one (/v2/models/<name>)');
  const m = encodeURIComponent(model);
  const at = version ? `${m}/versions/${encodeURIComponent(version)}` : m;
  const image = imageOnly(given);
  if (image) {
    const type = `image/${path.extname(image.file).slice(1).toLowerCase().replace('jpg', 'jpeg')}`;
    const url = `${u.base}/v1/models/${at}/predict`;
    const body = jsonBody(url, await http(url, { method: 'POST', body: image.bytes, headers: { 'content-type': type }, apiKey: opts.apiKey, timeoutMs: opts.timeoutMs }));
    return { model: String(body.model_name ?? model), version: String(body.model_version ?? ''), predictions: body.predictions };
  }
  const metaUrl = `${u.base}/v2/models/${at}`;
  const meta = jsonBody(metaUrl, await http(metaUrl, { apiKey: opts.apiKey, timeoutMs: opts.timeoutMs })) as { inputs?: Array<{ name: string; datatype: unknown }> };
  const infos = (meta.inputs ?? []).map((i) => {
    if (!isDatatype(i.datatype)) throw new NimifyError('UNSUPPORTED', `${metaUrl}: input '${i.name}' has datatype ${JSON.stringify(i.datatype)}, which nimify cannot send`);
    return { name: i.name, datatype: i.datatype };
  });
  checkNames(given, infos);
  const inputs = infos.map((info) => tensorJson(info.name, typed(info.name, given.get(info.name)!, info.datatype)));
  const url = `${u.base}/v2/models/${at}/infer`;
  const answer = await http(url, { method: 'POST', body: `{"inputs":[${inputs.join(',')}],"parameters":{"binary_data_output":true}}`, headers: { 'content-type': 'application/json' }, apiKey: opts.apiKey, timeoutMs: opts.timeoutMs });
  const { body, outputs } = decodeOutputs(url, answer);
  return { model: String(body.model_name ?? model), version: String(body.model_version ?? ''), outputs };
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, INFER_FLAGS, io.env, 'infer');
  if (v.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  const target = onePositional('infer', positionals, 'one model (.onnx), repository directory or server URL', USAGE);
  const given = await parseInputs((v.input as string[] | undefined) ?? []);
  const opts = { model: v.model as string | undefined, version: v.version as string | undefined, apiKey: v['api-key'] as string | undefined, timeoutMs: (v['timeout-ms'] as number | undefined) ?? 60_000 };
  const url = isUrl(target);
  if (!url && opts.apiKey) throw new NimifyError('INVALID_ARGUMENT', '--api-key: only for a server URL');
  const answer = url ? await remote(target, given, opts) : await inProcess(target, given, opts);
  const format = (v.output as string | undefined) ?? 'json';
  if (answer.predictions !== undefined) {
    if (format === 'npy') throw new NimifyError('INVALID_ARGUMENT', '--output npy: this model answers an image with predictions (its postprocess), which are JSON; use --output json');
    io.out(JSON.stringify({ model_name: answer.model, model_version: answer.version, predictions: answer.predictions }, null, 2));
    return EXIT.OK;
  }
  const outputs = Object.entries(answer.outputs ?? {});
  if (format === 'json') {
    io.out(outputsJson(answer.model, answer.version, outputs));
    return EXIT.OK;
  }
  const dir = (v['out-dir'] as string | undefined) ?? process.cwd();
  await fsp.mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const [name, t] of outputs) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith('.')) throw new NimifyError('UNSUPPORTED', `--output npy: output name '${name}' is not a safe file name; use --output json`);
    const file = path.resolve(dir, `${name}.npy`);
    await fsp.writeFile(file, writeNpy(t, `output '${name}'`));
    files.push(file);
  }
  io.out(files.join('\n'));
  return EXIT.OK;
}

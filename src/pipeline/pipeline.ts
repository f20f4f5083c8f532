/**
 * A model's pipeline: its `preprocess` (image or text) and `postprocess` sections resolved
 * against the loaded model — input and output names, element types and fixed dims checked, the
 * tokenizer loaded and its padding token found (in a pool worker), the labels read — and the
 * steps of a prediction: request items → feeds (in the preprocessing pool) → model →
 * predictions.
 *
 * Batching: the items of one request become one batch on the model's batch dim (dim 0) when
 * that dim is dynamic, cut into chunks of at most the scheduler's maxBatchSize rows, each run as
 * soon as it is preprocessed; a model whose dim 0 is fixed at 1 gets one run per item (the
 * scheduler may still batch them).
 *
 * Owned by its Model (created in loadModel, immutable after). Event-loop thread only, except
 * the pool's work.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NimifyError } from '../runtime/errors';
import { Tensor, type TensorType } from '../runtime/tensor';
import { expectBoolean, expectKnownKeys, expectPlainObject, invalid, isPlainObject } from '../runtime/validate';
import type { Model, Outputs, TensorInfo } from '../runtime/model';
import { checkInferOptions, type InferOptions } from '../runtime/options';
import { checkImagePreprocess, imageDims, sharpModule, type ImagePreprocessConfig, type ImageSpec } from './image';
import { checkPostprocess, classify, parseLabels, type PostprocessConfig, type PostprocessSpec, type Prediction } from './postprocess';
import { PreprocessPool, sharedPreprocessPool } from './pool';
import { checkTextPreprocess, fileStamp, type TextPreprocessConfig, type TextSpec } from './text';

export type PreprocessSpec = ImageSpec | TextSpec;

/** LoadOptions.pipeline: the same sections as a config.json, and where their files are. */
export interface PipelineOptions {
  preprocess?: ImagePreprocessConfig | TextPreprocessConfig;
  postprocess?: PostprocessConfig;
  /** The folder of the files the sections name (tokenizer, labels); default: the model file's folder. */
  dir?: string;
}

/** One item of a prediction: image bytes, or a text (optionally with a second text, for pair models). */
export type PredictInput = Uint8Array | string | { text: string; pair?: string };

/** Most items one prediction may hold. */
export const MAX_PREDICT_ITEMS = 1024;

/** Validates a `preprocess` section of either type; `where` names it in errors. */
export function checkPreprocess(where: string, value: unknown): PreprocessSpec {
  const o = expectPlainObject(where, value);
  if (o.type === 'image') return checkImagePreprocess(where, o);
  if (o.type === 'text') return checkTextPreprocess(where, o);
  throw invalid(`${where}.type`, "'image' or 'text'", o.type);
}

/** A resolved spec as shown to clients (a served model's config): no server file paths. */
export function publicPreprocess(spec: PreprocessSpec | null): PreprocessSpec | null {
  if (spec === null || spec.type === 'image') return spec;
  const { file: _file, stamp: _stamp, ...shown } = spec;
  return shown as TextSpec;
}

/** Validates LoadOptions.pipeline (sections checked, files not yet read). */
export function checkPipelineOptions(where: string, value: unknown): { preprocess: PreprocessSpec | null; postprocess: PostprocessSpec | null; dir: string | null } {
  const o = expectPlainObject(where, value);
  expectKnownKeys(where, o, ['preprocess', 'postprocess', 'dir']);
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir.length === 0)) throw invalid(`${where}.dir`, 'a folder path', o.dir);
  return {
    preprocess: o.preprocess === undefined ? null : checkPreprocess(`${where}.preprocess`, o.preprocess),
    postprocess: o.postprocess === undefined ? null : checkPostprocess(`${where}.postprocess`, o.postprocess),
    dir: (o.dir as string | undefined) ?? null,
  };
}

const dynamic = (d: number | string | undefined): boolean => typeof d !== 'number' || d < 0;

function shapeText(t: TensorInfo): string {
  return t.shape === null ? '(rank unknown)' : `[${t.shape.join(', ')}]`;
}

/** The tensor `name` names, or the only one when it is null. */
function pickTensor(where: string, name: string | null, tensors: readonly TensorInfo[]): TensorInfo {
  if (name === null) {
    if (tensors.length === 1) return tensors[0];
    throw new NimifyError('INVALID_ARGUMENT', `${where}: the model has ${tensors.length} (${tensors.map((t) => `'${t.name}'`).join(', ')}); name one`);
  }
  const t = tensors.find((x) => x.name === name);
  if (t === undefined) throw new NimifyError('INVALID_ARGUMENT', `${where}: the model has no '${name}' (it has ${tensors.map((x) => `'${x.name}'`).join(', ')})`);
  return t;
}

/** How a fed input's dim 0 takes a request's items: as one batch, or one run per item. */
function batchMode(where: string, t: TensorInfo): 'batch' | 'single' {
  const d0 = t.shape?.[0];
  if (t.shape === null || dynamic(d0)) return 'batch';
  if (d0 === 1) return 'single';
  throw new NimifyError('INVALID_ARGUMENT', `${where}: input '${t.name}' ${shapeText(t)} has a fixed batch dim of ${d0}; the pipeline needs it dynamic or 1`);
}

function resolveImage(where: string, spec: ImageSpec, inputs: readonly TensorInfo[]): { spec: ImageSpec; mode: 'batch' | 'single' } {
  // sharp is an optional peer dependency: a model whose pipeline decodes images fails to load
  // (UNSUPPORTED, naming `npm install sharp`) rather than failing each request.
  sharpModule();
  const t = pickTensor(`${where}.input`, spec.input, inputs);
  if (inputs.length > 1) throw new NimifyError('INVALID_ARGUMENT', `${where}: the model has ${inputs.length} inputs; image preprocessing feeds only '${t.name}'`);
  const dims = imageDims(spec);
  if (t.type !== spec.dtype) throw new NimifyError('INVALID_ARGUMENT', `${where}.dtype: input '${t.name}' is ${t.type}; the preprocessing makes ${spec.dtype}`);
  const fits = t.shape === null || (t.shape.length === dims.length && t.shape.every((d, i) => i === 0 || dynamic(d) || d === dims[i]));
  if (!fits) throw new NimifyError('INVALID_ARGUMENT', `${where}: makes [${dims.join(', ')}] (${spec.layout}), which input '${t.name}' ${shapeText(t)} does not take`);
  return { spec: { ...spec, input: t.name }, mode: batchMode(where, t) };
}

async function resolveText(where: string, spec: TextSpec, inputs: readonly TensorInfo[], file: string): Promise<{ spec: TextSpec; mode: 'batch' | 'single' }> {
  const has = (n: string) => inputs.some((t) => t.name === n);
  const names = {
    ids: spec.inputs.ids ?? (has('input_ids') || inputs.length !== 1 ? 'input_ids' : inputs[0].name),
    attentionMask: spec.inputs.attentionMask ?? (has('attention_mask') ? 'attention_mask' : null),
    typeIds: spec.inputs.typeIds ?? (has('token_type_ids') ? 'token_type_ids' : null),
  };
  const fed: TensorInfo[] = [];
  let dtype: TensorType | null = null;
  let seq: number | null = null;
  for (const key of ['ids', 'attentionMask', 'typeIds'] as const) {
    const name = names[key];
    if (name === null) continue;
    const t = pickTensor(`${where}.inputs.${key}`, name, inputs);
    if (t.type !== 'int64' && t.type !== 'int32') throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs.${key}: input '${t.name}' is ${t.type}; token tensors are int64 or int32`);
    if (dtype !== null && t.type !== dtype) throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs.${key}: input '${t.name}' is ${t.type} but '${fed[0].name}' is ${dtype}; token inputs must share one type`);
    dtype = t.type;
    if (t.shape !== null && t.shape.length !== 2) throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs.${key}: input '${t.name}' ${shapeText(t)} is not [batch, sequence]`);
    const s = t.shape?.[1];
    if (!dynamic(s)) {
      if (seq !== null && seq !== s) throw new NimifyError('INVALID_ARGUMENT', `${where}: inputs '${fed[0].name}' and '${t.name}' have different sequence lengths`);
      seq = s as number;
    }
    fed.push(t);
  }
  const unfed = inputs.filter((t) => !fed.includes(t));
  if (unfed.length > 0) throw new NimifyError('INVALID_ARGUMENT', `${where}.inputs: model input '${unfed[0].name}' is not fed by the text preprocessing; map it as ids, attentionMask or typeIds`);
  const modes = new Set(fed.map((t) => batchMode(where, t)));
  if (modes.size > 1) throw new NimifyError('INVALID_ARGUMENT', `${where}: the token inputs disagree on the batch dim`);
  const padding = spec.padding ?? (seq !== null ? 'max_length' : 'longest');
  const maxLength = spec.maxLength ?? seq ?? 512;
  if (seq !== null && (padding !== 'max_length' || maxLength !== seq)) {
    throw new NimifyError('INVALID_ARGUMENT', `${where}: the model's sequence dim is fixed at ${seq}; use padding 'max_length' with maxLength ${seq} (or leave both out)`);
  }
  // Loading a tokenizer.json (megabytes for multilingual ones) is parsing work: done in a pool
  // worker, so that a model (re)load never stalls a serving event loop.
  const pad = await sharedPreprocessPool().inspectTokenizer(where, file, spec.padToken);
  const stamp = await fileStamp(file);
  return {
    spec: { ...spec, file, stamp, maxLength, padding, padToken: pad.token, padId: pad.id, inputs: names, dtype: dtype as 'int64' | 'int32' },
    mode: [...modes][0],
  };
}

/** Options of model.predict() / runPipeline(). */
export interface PredictOptions extends Pick<InferOptions, 'signal' | 'timeoutMs' | 'priority'> {
  /** The preprocessing pool to use (default: the process's shared pool, one thread per core). */
  pool?: PreprocessPool;
  /**
   * Move image bytes into the pool instead of copying them (default false). The caller's
   * buffers are then detached (unusable) once predict() returns.
   */
  transfer?: boolean;
}

/** The infer() options predict() passes on (its results are host Tensors, never DeviceTensors). */
type PredictInferOptions = Pick<InferOptions, 'signal' | 'timeoutMs' | 'priority'>;

function checkPredictOptions(options: unknown): { infer: PredictInferOptions | undefined; pool: PreprocessPool | null; transfer: boolean } {
  if (options === undefined) return { infer: undefined, pool: null, transfer: false };
  const o = expectPlainObject('options', options);
  expectKnownKeys('options', o, ['signal', 'timeoutMs', 'priority', 'pool', 'transfer']);
  if (o.pool !== undefined && !(o.pool instanceof PreprocessPool)) throw invalid('options.pool', 'a PreprocessPool', o.pool);
  const { pool, transfer, ...infer } = o;
  return {
    infer: Object.keys(infer).length > 0 ? checkInferOptions(infer) : undefined,
    pool: (pool as PreprocessPool | undefined) ?? null,
    transfer: transfer === undefined ? false : expectBoolean('options.transfer', transfer),
  };
}

export class Pipeline {
  /** With input names, tokenizer file, padding and lengths resolved against the model. */
  readonly preprocess: PreprocessSpec | null;
  readonly postprocess: PostprocessSpec | null;
  /** The lines of the labels file, when postprocess names one. */
  readonly labels: string[] | null;
  /** 'batch': a request's items share one run (per maxBatchSize chunk); 'single': one run each. */
  readonly mode: 'batch' | 'single';

  private constructor(pre: PreprocessSpec | null, post: PostprocessSpec | null, labels: string[] | null, mode: 'batch' | 'single') {
    this.preprocess = pre;
    this.postprocess = post;
    this.labels = labels;
    this.mode = mode;
    Object.freeze(this);
  }

  /**
   * Resolves checked sections against the model's inputs and outputs; `dir` holds the files they
   * name. Every failure names the field (`where` = e.g. 'config' or 'options.pipeline').
   */
  static async resolve(where: string, sections: { preprocess: PreprocessSpec | null; postprocess: PostprocessSpec | null }, io: { inputs: readonly TensorInfo[]; outputs: readonly TensorInfo[] }, dir: string): Promise<Pipeline> {
    let pre: PreprocessSpec | null = null;
    let mode: 'batch' | 'single' = 'batch';
    if (sections.preprocess !== null) {
      const p = sections.preprocess;
      const r = p.type === 'image' ? resolveImage(`${where}.preprocess`, p, io.inputs) : await resolveText(`${where}.preprocess`, p, io.inputs, await existing(`${where}.preprocess.tokenizer`, dir, p.tokenizer));
      pre = r.spec;
      mode = r.mode;
    }
    let post: PostprocessSpec | null = null;
    let labels: string[] | null = null;
    if (sections.postprocess !== null) {
      const out = pickTensor(`${where}.postprocess.output`, sections.postprocess.output, io.outputs);
      if (out.type === 'string' || out.type === 'bool' || !/^(float|int|uint|bfloat)/.test(out.type)) throw new NimifyError('INVALID_ARGUMENT', `${where}.postprocess.output: '${out.name}' is ${out.type}; class scores must be numbers`);
      post = { ...sections.postprocess, output: out.name };
      if (post.labels !== null) {
        const file = await existing(`${where}.postprocess.labels`, dir, post.labels);
        labels = parseLabels(await fsp.readFile(file, 'utf8'));
        const classes = out.shape?.at(-1);
        if (typeof classes === 'number' && classes >= 0 && labels.length !== classes) {
          throw new NimifyError('INVALID_ARGUMENT', `${where}.postprocess.labels: ${post.labels} has ${labels.length} labels; output '${out.name}' has ${classes} classes`);
        }
      }
    }
    return new Pipeline(pre, post, labels, mode);
  }

  /** The files this pipeline read (for change detection), relative to its folder. */
  files(): string[] {
    const out: string[] = [];
    if (this.preprocess?.type === 'text') out.push(this.preprocess.tokenizer);
    if (this.postprocess?.labels) out.push(this.postprocess.labels);
    return out;
  }

  /**
   * Checks the items of a prediction against the preprocessing type; `where` names them in
   * errors. Returns them as a list (a single item becomes a list of one).
   */
  checkInputs(where: string, value: unknown): PredictInput[] {
    const pre = this.preprocess;
    if (pre === null) throw new NimifyError('INVALID_ARGUMENT', `${where}: the model has no preprocess section; use infer() with tensors`);
    const items = Array.isArray(value) ? value : [value];
    if (items.length === 0 || items.length > MAX_PREDICT_ITEMS) throw invalid(where, `1 to ${MAX_PREDICT_ITEMS} items`, `${items.length} items`);
    items.forEach((item, i) => {
      const name = Array.isArray(value) ? `${where}[${i}]` : where;
      if (pre.type === 'image') {
        if (!(item instanceof Uint8Array)) throw invalid(name, 'the bytes of an image (a Buffer or Uint8Array of JPEG, PNG or WebP)', item);
        if (item.byteLength === 0) throw new NimifyError('INVALID_ARGUMENT', `${name}: empty; expected the bytes of an image (JPEG, PNG or WebP)`);
      } else if (typeof item !== 'string') {
        if (!isPlainObject(item) || typeof item.text !== 'string') throw invalid(name, 'a string or { text, pair? }', item);
        expectKnownKeys(name, item, ['text', 'pair']);
        if (item.pair !== undefined && typeof item.pair !== 'string') throw invalid(`${name}.pair`, 'a string', item.pair);
      }
    });
    return items as PredictInput[];
  }

  /**
   * Preprocesses checked `items` in `pool` and hands each run's feeds to `infer` as soon as they
   * are ready (see the batching note above): resolves with every run's outputs, in order.
   *
   * Memory stays bounded for large requests: the next chunk is prepared while one runs, and
   * no more than `window` runs' tensors are alive at once (2 chunks; for one-item runs, up to
   * maxRows of them, so that the scheduler can still batch them). Image bytes are moved into the
   * pool when `transfer` (the caller's buffers are detached), copied otherwise. `signal` stops
   * the work between images and before each run: its reason is thrown when it is a
   * NimifyError (e.g. TIMEOUT), else ABORTED. `where` names the items in errors.
   */
  async run(
    items: readonly PredictInput[],
    pool: PreprocessPool,
    options: { maxRows: number; transfer: boolean; infer: (feeds: Record<string, Tensor>) => Promise<Outputs>; signal?: AbortSignal; where?: string },
  ): Promise<{ runs: Outputs[]; preprocessUs: number }> {
    const pre = this.preprocess!;
    const { signal, infer } = options;
    const stop = () => {
      if (!signal?.aborted) return;
      if (signal.reason instanceof NimifyError) throw signal.reason;
      throw new NimifyError('ABORTED', 'the prediction was aborted during preprocessing');
    };
    stop();
    const per = this.mode === 'single' ? 1 : Math.max(1, Math.min(options.maxRows, MAX_PREDICT_ITEMS));
    const window = per === 1 ? Math.max(2, Math.min(options.maxRows, 64)) : 2;
    let preprocessUs = 0;
    const timed = async <T>(work: Promise<T>): Promise<T> => {
      const started = process.hrtime.bigint();
      try {
        return await work;
      } finally {
        preprocessUs += Number((process.hrtime.bigint() - started) / 1000n);
      }
    };
    // One chunk's feeds, built from items [start, start + n).
    let chunk: (start: number, n: number) => Promise<Record<string, Tensor>>;
    if (pre.type === 'image') {
      // What each image hands to the pool, settled before any of it moves: a buffer shared by
      // several items (or not to be transferred) is copied, so a transfer never detaches memory
      // another item still reads.
      const uses = new Map<ArrayBufferLike, number>();
      for (const b of items as Uint8Array[]) uses.set(b.buffer, (uses.get(b.buffer) ?? 0) + 1);
      const owned = (b: Uint8Array) => options.transfer && uses.get(b.buffer) === 1;
      chunk = async (start, n) => {
        // At most pool.capacity images of one request in the pool at a time: a large batch
        // neither fills the pool's queue (QUEUE_FULL for everyone) nor gets ahead of others.
        const images: Array<{ data: Float32Array | Uint8Array; dims: number[] }> = new Array(n);
        let next = 0;
        let failed = false;
        const lane = async (): Promise<void> => {
          while (!failed && next < n) {
            const i = next++;
            try {
              stop();
              const b = items[start + i] as Uint8Array;
              images[i] = await pool.image(owned(b) ? b : new Uint8Array(b), pre);
            } catch (err) {
              failed = true;
              throw err;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.max(1, Math.min(pool.capacity, n)) }, lane));
        const [, ...rest] = images[0].dims;
        const size = images[0].data.length;
        const data = n === 1 ? images[0].data : new (pre.dtype === 'uint8' ? Uint8Array : Float32Array)(size * n);
        if (n > 1) images.forEach((t, i) => data.set(t.data, i * size));
        return { [pre.input!]: new Tensor(pre.dtype, data as never, [n, ...rest]) };
      };
    } else {
      // Token tensors are small: the whole request is tokenized in one task, and each run
      // reads its rows of them (views, not copies).
      const texts = items.map((x) => (typeof x === 'string' ? x : (x as { text: string }).text));
      const withPairs = items.some((x) => typeof x !== 'string' && (x as { pair?: string }).pair !== undefined);
      const pairs = withPairs ? items.map((x) => (typeof x === 'string' ? null : ((x as { pair?: string }).pair ?? null))) : null;
      const t = await timed(pool.text(texts, pairs, pre, options.where ?? 'input'));
      const length = t.dims[1];
      chunk = async (start, n) => {
        const view = (a: BigInt64Array | Int32Array) => a.subarray(start * length, (start + n) * length);
        const feeds: Record<string, Tensor> = {};
        const add = (name: string | null, a: BigInt64Array | Int32Array) => {
          if (name !== null) feeds[name] = new Tensor(pre.dtype, view(a) as never, [n, length]);
        };
        add(pre.inputs.ids, t.ids);
        add(pre.inputs.attentionMask, t.attentionMask);
        add(pre.inputs.typeIds, t.typeIds);
        return feeds;
      };
    }
    const running: Array<Promise<Outputs>> = [];
    for (let start = 0; start < items.length; start += per) {
      if (running.length >= window) await running[running.length - window];
      const feeds = pre.type === 'image' ? await timed(chunk(start, Math.min(per, items.length - start))) : await chunk(start, Math.min(per, items.length - start));
      stop();
      const p = infer(feeds);
      // Settled by the Promise.all below; this only keeps an early failure from being unhandled
      // while later chunks are still being prepared.
      p.catch(() => undefined);
      running.push(p);
    }
    return { runs: await Promise.all(running), preprocessUs };
  }

  /** model.predict(): preprocess, run, rank (Model delegates here; see its docs). */
  async predict(model: Model, input: PredictInput | readonly PredictInput[], options?: PredictOptions): Promise<Prediction[] | Prediction[][]> {
    if (this.postprocess === null) throw new NimifyError('INVALID_ARGUMENT', 'predict(): the model has no postprocess section to make predictions; use runPipeline() for the raw outputs');
    const runs = await this.runPipeline(model, input, options);
    const predictions = this.classify(runs, Array.isArray(input) ? input.length : 1);
    return Array.isArray(input) ? predictions : predictions[0];
  }

  /** model.runPipeline(): the raw outputs of each run (Model delegates here; see its docs). */
  async runPipeline(model: Model, input: PredictInput | readonly PredictInput[], options?: PredictOptions): Promise<Outputs[]> {
    const items = this.checkInputs('input', input);
    const o = checkPredictOptions(options);
    if (model.disposed) throw new NimifyError('DISPOSED', 'model has been disposed');
    // The signal also stops preprocessing (between images, and before each run).
    const { runs } = await this.run(items, o.pool ?? sharedPreprocessPool(), { maxRows: model.maxBatchRows, transfer: o.transfer, signal: o.infer?.signal, where: 'input', infer: (f) => model.infer(f, o.infer) });
    return runs;
  }

  /** Predictions per item, in order, from the outputs of each run; `items` of them, or RUNTIME_ERROR. */
  classify(runs: readonly Outputs[], items: number): Prediction[][] {
    const post = this.postprocess;
    if (post === null) throw new NimifyError('INVALID_ARGUMENT', 'the model has no postprocess section: there are no predictions to make; use its raw outputs');
    const out = runs.flatMap((o) => {
      const t = o[post.output!];
      return classify(post, t.data as ArrayLike<number>, t.dims, this.labels);
    });
    if (out.length !== items) {
      throw new NimifyError('RUNTIME_ERROR', `postprocess: output '${post.output}' has ${out.length} rows for ${items} inputs; its first dim must be the batch dim`);
    }
    return out;
  }
}

/** `dir`/`name` when it exists as a file; NimifyError naming `where` otherwise. */
async function existing(where: string, dir: string, name: string): Promise<string> {
  const file = path.join(dir, name);
  try {
    if ((await fsp.stat(file)).isFile()) return file;
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `${where}: cannot read ${name} in ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  throw new NimifyError('INVALID_ARGUMENT', `${where}: ${name} in ${dir} is not a file`);
}

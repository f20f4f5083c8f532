/**
 * POST /v1/models/{m}[/versions/{v}]/predict — images or texts in, predictions out, for models
 * whose config.json declares `preprocess` (and usually `postprocess`).
 *
 * Bodies, by Content-Type:
 *   image/* (image/png, image/jpeg, image/webp)  one image: the file's bytes
 *   multipart/form-data                          one or more images, one per file part → one batch
 *   application/json                             { "text": "…" } or { "texts": ["…", …] }, with
 *                                                `text_pair` / `text_pairs` for pair models
 * The items become the model's input tensors in the preprocessing worker pool (the body's memory
 * is moved there; nothing is decoded or tokenized on the event loop), run through the model's
 * scheduler as one batch (src/pipeline/pipeline.ts), and are ranked by the postprocess config:
 * `{ model_name, model_version, predictions }` — for one item, its predictions best first; for a
 * batch (multipart, `texts`), one such list per item, in order. Without `postprocess` the answer
 * holds the raw `outputs` instead.
 *
 * Refusals, cheapest first, as on the infer route, before the body is read (onRequest,
 * src/server/admission.ts): shedding (event-loop delay, heap, concurrency) → model resolution →
 * a model without preprocessing (400) → circuit breaker → the model's queue depth; then the body
 * (a multipart body is read in the handler) and preprocessing (400). A client that hangs up
 * stops its preprocessing and cancels its queued run. Event-loop thread only, except the pool's
 * workers.
 */
import multipart from '@fastify/multipart';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { NimifyError } from '../../runtime/errors';
import type { Outputs } from '../../runtime/model';
import { MAX_PREDICT_ITEMS, type Pipeline, type PredictInput } from '../../pipeline/pipeline';
import { parseUntrustedJson } from '../../protocol/json';
import type { ServedVersion } from '../../repository/repository';
import { currentVersion, registerAdmission, registerTracing } from '../admission';
import { ATTR, SPAN } from '../tracing';
import type { Tensor } from '../../runtime/tensor';
import sheddingPlugin from '../plugins/shedding';
import { errorResponses, modelParams } from '../schemas';

type Params = { model_name: string; model_version?: string };
interface TextBody {
  text?: string;
  texts?: string[];
  text_pair?: string;
  text_pairs?: string[];
}
/** What a body parser leaves for the handler: the items, and whether they were sent as a batch. */
type Body = Buffer | TextBody | undefined;

const prediction = {
  type: 'object',
  properties: { label: { type: 'string' }, index: { type: 'integer' }, score: { type: 'number' } },
  required: ['label', 'index', 'score'],
} as const;
const predictionList = { type: 'array', items: prediction } as const;

const predictResponse = {
  description: 'Predictions, best first (with postprocess; one list per item for a batch), or the raw outputs',
  type: 'object',
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    predictions: { anyOf: [predictionList, { type: 'array', items: predictionList }] },
    outputs: {
      type: 'object',
      additionalProperties: { type: 'object', properties: { shape: { type: 'array', items: { type: 'integer' } }, data: { type: 'array' } } },
    },
  },
  required: ['model_name', 'model_version'],
  examples: [
    { model_name: 'digits', model_version: '1', predictions: [{ label: '7', index: 7, score: 0.9586 }, { label: '9', index: 9, score: 0.0395 }, { label: '3', index: 3, score: 0.0009 }] },
    { model_name: 'sentiment', model_version: '1', predictions: [[{ label: 'positive', index: 2, score: 0.91 }], [{ label: 'negative', index: 0, score: 0.77 }]] },
  ],
} as const;

const textBody = {
  type: 'object',
  description: 'Texts for a model with text preprocessing: `text` (one) or `texts` (a batch), optionally paired',
  properties: {
    text: { type: 'string' },
    texts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: MAX_PREDICT_ITEMS },
    text_pair: { type: 'string' },
    text_pairs: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: MAX_PREDICT_ITEMS },
  },
  additionalProperties: false,
  examples: [{ text: 'What a lovely day' }, { texts: ['great service', 'the soup was cold'] }],
} as const;

// Typeless on purpose: these bodies arrive as bytes (or unparsed, for multipart), which a typed
// schema would refuse; the description is for the OpenAPI document.
const imageBody = { description: 'One image file, as it is: its bytes (JPEG, PNG or WebP)' } as const;
const multipartBody = { description: 'One or more image files, one per file part (field names are free): one batch, one list of predictions per file, in order' } as const;

/** The model's pipeline with its preprocessing, or INVALID_ARGUMENT for a model without one. */
function pipelineOf(name: string, v: ServedVersion): { pipeline: Pipeline; pre: NonNullable<Pipeline['preprocess']> } {
  const pipeline = v.model!.pipeline;
  if (pipeline === null || pipeline.preprocess === null) throw new NimifyError('INVALID_ARGUMENT', `model '${name}' has no preprocess section in its config.json: send tensors to /v2/models/${name}/infer instead`);
  return { pipeline, pre: pipeline.preprocess };
}

/** Checks a JSON text body's shape beyond the schema (one of text/texts, pairs matching). */
function textItems(body: TextBody): { items: PredictInput[]; batch: boolean } {
  if ((body.text === undefined) === (body.texts === undefined)) throw new NimifyError('INVALID_ARGUMENT', 'request body: expected exactly one of `text` (a string) or `texts` (an array of strings)');
  if (body.text !== undefined) {
    if (body.text_pairs !== undefined) throw new NimifyError('INVALID_ARGUMENT', 'request body: `text_pairs` goes with `texts`; use `text_pair` with `text`');
    return { items: [body.text_pair === undefined ? body.text : { text: body.text, pair: body.text_pair }], batch: false };
  }
  const texts = body.texts!;
  if (body.text_pair !== undefined) throw new NimifyError('INVALID_ARGUMENT', 'request body: `text_pair` goes with `text`; use `text_pairs` with `texts`');
  const pairs = body.text_pairs;
  if (pairs !== undefined && pairs.length !== texts.length) throw new NimifyError('INVALID_ARGUMENT', `request body: text_pairs has ${pairs.length} items; texts has ${texts.length}`);
  return { items: pairs === undefined ? texts : texts.map((text, i) => ({ text, pair: pairs[i] })), batch: true };
}

/**
 * The file parts of a multipart body, in order, as Buffers: at most MAX_PREDICT_ITEMS files of
 * at most `bodyLimit` bytes in all (Fastify's bodyLimit does not see a multipart stream).
 */
async function multipartItems(request: FastifyRequest, bodyLimit: number): Promise<Buffer[]> {
  const files: Buffer[] = [];
  let total = 0;
  try {
    for await (const part of request.parts()) {
      if (part.type !== 'file') throw new NimifyError('INVALID_ARGUMENT', `multipart field '${part.fieldname.slice(0, 64)}': not a file; send each image as a file part (curl -F image=@photo.jpg)`);
      const data = await part.toBuffer();
      total += data.length;
      if (total > bodyLimit) throw new NimifyError('PAYLOAD_TOO_LARGE', `multipart: the files add up to more than the server's bodyLimit (${bodyLimit} bytes)`);
      files.push(data);
    }
  } catch (err) {
    if (err instanceof NimifyError) throw err;
    const e = err as Error & { code?: string; statusCode?: number };
    if (e.statusCode === 413) throw new NimifyError('PAYLOAD_TOO_LARGE', `multipart: ${e.message} (at most ${MAX_PREDICT_ITEMS} files, each within the server's bodyLimit)`);
    throw new NimifyError('INVALID_ARGUMENT', `multipart: malformed body (${e.message})`);
  }
  if (files.length === 0) throw new NimifyError('INVALID_ARGUMENT', 'multipart: no file parts; send one or more images as file parts (curl -F image=@photo.jpg)');
  return files;
}

/**
 * The tensors of a prediction are the server's own (built by the pipeline from valid items): a
 * model that refuses them (e.g. token ids beyond its vocabulary: a tokenizer that does not belong
 * to it) is a server-side misconfiguration, not the client's fault, and counts for the breaker.
 */
function blameConfig(err: unknown): never {
  if (err instanceof NimifyError && err.code === 'INVALID_ARGUMENT') {
    throw new NimifyError('RUNTIME_ERROR', `the model refused the tensors its pipeline made (check config.json's preprocess against the model): ${err.message}`, { cause: err });
  }
  throw err;
}

/** Raw outputs of a prediction's runs, joined on the batch dim, as JSON arrays. */
function rawOutputs(runs: readonly Outputs[]): Record<string, { shape: number[]; data: unknown[] }> {
  const out: Record<string, { shape: number[]; data: unknown[] }> = {};
  for (const name of Object.keys(runs[0])) {
    const shape = [...runs[0][name].dims];
    const data: unknown[] = [];
    for (const [i, r] of runs.entries()) {
      const t = r[name];
      if (i > 0 && shape.length > 0) shape[0] += t.dims[0];
      for (const x of t.data as Iterable<unknown>) data.push(typeof x === 'bigint' ? Number(x) : x);
    }
    out[name] = { shape, data };
  }
  return out;
}

const predict: FastifyPluginAsync = async (app) => {
  const ctx = app.nimify;
  const { metrics, options } = ctx;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer' }, async (_request: FastifyRequest, body: Buffer | string) => body);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, async (_request: FastifyRequest, body: Buffer | string) => {
    return parseUntrustedJson('request body', body as string);
  });
  // Parts are read in the handler (request.parts()); a file may be as large as a whole body.
  await app.register(multipart, { limits: { files: MAX_PREDICT_ITEMS, fileSize: app.initialConfig.bodyLimit, parts: MAX_PREDICT_ITEMS + 1 } });
  app.addContentTypeParser('*', async (request: FastifyRequest) => {
    const type = String(request.headers['content-type'] ?? 'none').slice(0, 100);
    throw new NimifyError('INVALID_ARGUMENT', `request body: Content-Type ${type} is not accepted here; send an image file's bytes (image/png, image/jpeg, image/webp), multipart/form-data with image files, or JSON {"text": …} / {"texts": […]}`);
  });

  registerTracing(app, ctx);
  await app.register(sheddingPlugin, { ctx });
  // Admitted (breaker, queue depth) before any body is read: a refused request does not make the
  // server buffer its upload. From then on, failures count for this version.
  registerAdmission(app, ctx, {
    check: (name: string, v: ServedVersion) => void pipelineOf(name, v),
    // The handler combines its signal with a deadline (AbortSignal.any).
    reuseController: false,
  });

  const bodyLimit = app.initialConfig.bodyLimit ?? 1024 * 1024;
  const handler = async (request: FastifyRequest<{ Params: Params; Body: Body }>, reply: FastifyReply): Promise<unknown> => {
    const admitted = request.nimifyAdmitted!;
    const { name, admission, controller, trace } = admitted;
    // A version swapped while the body arrived is not used: the one serving now is (its pipeline
    // checked again). Preprocessing still runs between this and the model's run, as it always did.
    let v: ServedVersion;
    let pipeline: Pipeline;
    let pre: NonNullable<Pipeline['preprocess']>;
    try {
      v = currentVersion(ctx, admitted);
      ({ pipeline, pre } = pipelineOf(name, v));
    } catch (err) {
      admission.fail(err, { beforeModel: true });
      throw err;
    }
    const model = v.model!;
    // Preprocessing stops when the client goes away before its answer (the admission's
    // controller, which also cancels the queued run) or when the request's time (the model's
    // timeoutMs, else the server's inferTimeoutMs) is over; the run has that time as its own
    // deadline, so that it ends as TIMEOUT, not ABORTED.
    const timeoutMs = v.config!.timeoutMs ?? options.inferTimeoutMs;
    const late = new AbortController();
    const deadline = setTimeout(() => late.abort(new NimifyError('TIMEOUT', `prediction: preprocessing did not finish within ${timeoutMs} ms`)), timeoutMs);
    const stop = AbortSignal.any([controller.signal, late.signal]);
    let modelFailed = false;
    // Traced requests: when preprocessing began, and whether its span is recorded.
    let preStart = 0;
    let preDone = true;
    try {
      let items: PredictInput[];
      let batch: boolean;
      const body = request.body;
      if (request.isMultipart()) {
        items = await multipartItems(request, bodyLimit);
        batch = true;
      } else if (Buffer.isBuffer(body)) {
        if (body.length === 0) throw new NimifyError('INVALID_ARGUMENT', 'request body: empty; expected the bytes of one image (Content-Type: image/png, image/jpeg or image/webp)');
        items = [body];
        batch = false;
      } else if (body !== undefined && body !== null && typeof body === 'object') {
        ({ items, batch } = textItems(body));
      } else {
        throw new NimifyError('INVALID_ARGUMENT', 'request body: missing; send an image, multipart image files, or JSON texts');
      }
      const textual = !(items[0] instanceof Uint8Array);
      if (textual !== (pre.type === 'text')) {
        throw new NimifyError('INVALID_ARGUMENT', `model '${name}' takes ${pre.type === 'text' ? 'texts: send JSON {"text": …} or {"texts": […]}' : 'images: send the image bytes (image/png, image/jpeg, image/webp) or multipart/form-data files'}`);
      }
      pipeline.checkInputs('request', items);

      // Traced: the preprocess span runs from here to the first run's submission (the pipeline
      // preprocesses a chunk, then runs it); each run gets its queue and compute spans.
      if (trace !== null) {
        preStart = performance.now();
        preDone = false;
      }
      const traced = trace === null ? null : (f: Record<string, Tensor>) => {
        if (!preDone) {
          preDone = true;
          trace.child(SPAN.preprocess, preStart, undefined, { [ATTR.items]: items.length });
        }
        const timing = trace.runTiming();
        return model.infer(f, { timeoutMs, signal: controller.signal, timing }).then(
          (out) => {
            trace.run(timing);
            return out;
          },
          (err: unknown) => {
            trace.run(timing, err);
            throw err;
          },
        );
      };
      // The bodies are ours (Fastify's buffers): moved into the pool, not copied.
      const { runs, preprocessUs } = await pipeline.run(items, ctx.preprocessPool(), {
        maxRows: model.maxBatchRows,
        transfer: true,
        signal: stop,
        where: batch ? 'texts' : 'text',
        infer: (f) =>
          (traced === null ? model.infer(f, { timeoutMs, signal: controller.signal }) : traced(f)).catch((err: unknown) => {
            modelFailed = true;
            return blameConfig(err);
          }),
      });
      metrics.preprocessDuration.inc({ model: v.name, version: v.version }, preprocessUs);
      metrics.predictItems.inc({ model: v.name, version: v.version }, items.length);
      let answer: Record<string, unknown>;
      if (pipeline.postprocess === null) {
        answer = { model_name: v.name, model_version: v.version, outputs: rawOutputs(runs) };
      } else {
        const predictions = pipeline.classify(runs, items.length);
        answer = { model_name: v.name, model_version: v.version, predictions: batch ? predictions : predictions[0] };
      }
      admission.end();
      return reply.send(answer);
    } catch (err) {
      // Preprocessing failed before any run: its span ends here, failed.
      if (trace !== null && !preDone) trace.child(SPAN.preprocess, preStart, undefined, undefined, err);
      // Failures outside the model (the body, preprocessing) do not count for its breaker.
      admission.fail(err, { beforeModel: !modelFailed });
      throw err;
    } finally {
      clearTimeout(deadline);
    }
  };

  const schema = {
    summary: 'Classify images or texts: preprocess (worker pool) → model → postprocess',
    description:
      'For a model whose config.json declares `preprocess` (and usually `postprocess`). Send one image as the body (`curl --data-binary @examples/digits/samples/digit-7.png -H "content-type: image/png" localhost:8000/v1/models/digits/predict`), several as multipart/form-data file parts (`curl -F a=@one.png -F b=@two.png …`: one batch, one list of predictions per file, in order), or texts as JSON (`{"text": "…"}`, `{"texts": ["…", "…"]}`, with `text_pair` / `text_pairs` for pair models).',
    tags: ['inference'],
    params: modelParams,
    // One entry per accepted media type, so the OpenAPI document lists them all (with `content`,
    // @fastify/swagger ignores `consumes`). Only the JSON one constrains anything: the others'
    // bodies are bytes, checked by the preprocessing.
    body: {
      content: {
        'application/json': { schema: textBody },
        'image/png': { schema: imageBody },
        'image/jpeg': { schema: imageBody },
        'image/webp': { schema: imageBody },
        'multipart/form-data': { schema: multipartBody },
      },
    },
    response: { 200: predictResponse, ...errorResponses },
  };
  const config = { nimifyArea: 'inference' as const };
  app.post<{ Params: Params; Body: Body }>('/v1/models/:model_name/predict', { config, schema }, handler);
  app.post<{ Params: Params; Body: Body }>('/v1/models/:model_name/versions/:model_version/predict', { config, schema }, handler);
};

export default predict;

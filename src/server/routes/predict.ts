/**
 * POST /v1/models/{m}[/versions/{v}]/predict — images in, predictions out, for models whose
 * config.json declares `preprocess` (and usually `postprocess`).
 *
 * The body is the encoded image itself (`Content-Type: image/png`, `image/jpeg`, `image/webp`,
 * any `image/*`). It is decoded and turned into the model's input tensor in the preprocessing
 * worker pool (src/pipeline/pool.ts; the body's memory is moved there, never decoded on the
 * event loop), runs through the model's scheduler like any request, and the output is ranked by
 * the postprocess config: `{ model_name, model_version, predictions: [{ label, index, score }] }`,
 * best first. Without `postprocess` the answer holds the raw outputs instead.
 * Event-loop thread only, except the pool's workers.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { NimifyError } from '../../errors';
import { Tensor } from '../../tensor';
import { PreprocessPool } from '../../pipeline/pool';
import { classify } from '../../pipeline/postprocess';
import { checkModelName, checkVersion } from '../../repository/repository';
import sheddingPlugin, { admit } from '../plugins/shedding';
import { errorResponses, modelParams } from '../schemas';

type Params = { model_name: string; model_version?: string };

const prediction = {
  type: 'object',
  properties: { label: { type: 'string' }, index: { type: 'integer' }, score: { type: 'number' } },
  required: ['label', 'index', 'score'],
} as const;

const predictResponse = {
  description: 'Predictions, best first (with postprocess), or the raw outputs',
  type: 'object',
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    predictions: { type: 'array', items: prediction },
    outputs: { type: 'object', additionalProperties: true },
  },
  required: ['model_name', 'model_version'],
  example: { model_name: 'digits', model_version: '1', predictions: [{ label: '7', index: 7, score: 0.998 }, { label: '9', index: 9, score: 0.001 }] },
} as const;

const predict: FastifyPluginAsync = async (app) => {
  const ctx = app.nimify;
  const { repository, metrics, options } = ctx;
  let pool: PreprocessPool | null = null;
  app.addHook('onClose', async () => {
    await pool?.close();
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer' }, async (_request: FastifyRequest, body: Buffer | string) => body);
  app.addContentTypeParser('*', async (request: FastifyRequest) => {
    const type = String(request.headers['content-type'] ?? 'none').slice(0, 100);
    throw new NimifyError('INVALID_ARGUMENT', `request body: Content-Type ${type} is not accepted here; send the image file's bytes as image/png, image/jpeg or image/webp`);
  });

  await app.register(sheddingPlugin, { ctx });

  const handler = async (request: FastifyRequest<{ Params: Params; Body: Buffer }>, reply: FastifyReply): Promise<unknown> => {
    admit(ctx);
    const name = checkModelName(request.params.model_name);
    const v = repository.resolve(name, request.params.model_version === undefined ? undefined : checkVersion(request.params.model_version));
    const config = v.config!;
    const pre = config.preprocess;
    if (pre === null) throw new NimifyError('INVALID_ARGUMENT', `model '${name}' has no preprocess section in its config.json: send tensors to /v2/models/${name}/infer instead`);
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0) throw new NimifyError('INVALID_ARGUMENT', 'request body: empty; expected the bytes of one image (Content-Type: image/png, image/jpeg or image/webp)');
    ctx.inFlight++;
    try {
      pool ??= new PreprocessPool(options.preprocess);
      const t = await pool.image(body, pre);
      const feeds = { [pre.input!]: new Tensor(pre.dtype, t.data, t.dims) };
      const outputs = await v.model!.infer(feeds, { timeoutMs: config.timeoutMs ?? options.inferTimeoutMs });
      metrics.success.labels(v.name, v.version).inc();
      const post = config.postprocess;
      if (post === null) {
        const raw: Record<string, { shape: number[]; data: number[] }> = {};
        for (const [k, o] of Object.entries(outputs)) raw[k] = { shape: [...o.dims], data: Array.from(o.data as ArrayLike<number>, Number) };
        return reply.send({ model_name: v.name, model_version: v.version, outputs: raw });
      }
      const out = outputs[post.output!];
      const [predictions] = classify(post, out.data as ArrayLike<number>, out.dims, v.labels);
      return reply.send({ model_name: v.name, model_version: v.version, predictions });
    } catch (err) {
      metrics.failure.labels(v.name, v.version, err instanceof NimifyError && err.code === 'INVALID_ARGUMENT' ? 'OTHER' : 'BACKEND').inc();
      throw err;
    } finally {
      ctx.inFlight--;
    }
  };

  const schema = {
    summary: 'Classify an image: preprocess (worker pool) → model → postprocess',
    description: 'The body is the image file itself, e.g. `curl --data-binary @examples/digits/samples/digit-7.png -H "content-type: image/png" localhost:8000/v1/models/digits/predict`. The model needs `preprocess` (and usually `postprocess`) in its config.json.',
    tags: ['inference'],
    params: modelParams,
    consumes: ['image/png', 'image/jpeg', 'image/webp'],
    response: { 200: predictResponse, ...errorResponses },
  };
  const config = { nimifyArea: 'inference' as const };
  app.post<{ Params: Params; Body: Buffer }>('/v1/models/:model_name/predict', { config, schema }, handler);
  app.post<{ Params: Params; Body: Buffer }>('/v1/models/:model_name/versions/:model_version/predict', { config, schema }, handler);
};

export default predict;

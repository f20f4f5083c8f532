/**
 * Health routes. Live is true as soon as the process serves. Ready: every model in the startup
 * set (and any loaded since) has a version that finished its warmup, and the server is not
 * draining (a load balancer stops routing to it from the first answer after SIGTERM). Not ready is
 * 503 with the error body (KServe's choice; Triton answers 400), which is what Kubernetes probes act on.
 *
 * Auth areas: the server-level routes (/v2/health/live, /v2/health/ready) are the 'health' area,
 * open by default when API keys are set (probes carry no key), so they name no model while open.
 * The per-model ready routes answer 200 or 404 by model name, so they are the 'metadata' area:
 * with API keys they need one, like model metadata, or anyone could enumerate the models.
 */
import type { FastifyPluginAsync } from 'fastify';
import { NimifyError } from '../../runtime/errors';
import { checkModelName, checkVersion } from '../../repository/repository';
import { errorResponses, modelParams } from '../schemas';

const health: FastifyPluginAsync = async (app) => {
  const { repository, options } = app.nimify;
  const config = { nimifyArea: 'health' as const };
  // Open to anyone although API keys are set: its answers then count models instead of naming them.
  const open = options.apiKeys.length > 0 && options.authExempt.includes('health');
  // Set when Fastify starts closing (the drain): readiness fails from then on.
  let draining = false;
  app.addHook('preClose', async () => {
    draining = true;
  });

  app.get('/v2/health/live', {
    config,
    schema: { summary: 'Server liveness', tags: ['health'], response: { 200: { type: 'object', properties: { live: { type: 'boolean' } } } } },
  }, async () => ({ live: true }));

  app.get('/v2/health/ready', {
    config,
    schema: { summary: 'Server readiness (all startup models ready)', tags: ['health'], response: { 200: { type: 'object', properties: { ready: { type: 'boolean' } } }, 503: errorResponses[503] } },
  }, async () => {
    if (draining) throw new NimifyError('NOT_READY', 'server is not ready (shutting down)');
    if (!repository.ready()) {
      const index = repository.index();
      const waiting = index.filter((e) => e.state !== 'READY');
      const why = open
        ? `${waiting.length} of ${index.length} model versions not ready; the repository index lists them`
        : waiting.map((e) => `${e.name}${e.version ? `/${e.version}` : ''}: ${e.state ?? 'not loaded'}`).join('; ');
      throw new NimifyError('NOT_READY', `server is not ready (${why || 'shutting down'})`);
    }
    return { ready: true };
  });

  const modelReady = async (request: { params: { model_name: string; model_version?: string } }) => {
    const name = checkModelName(request.params.model_name);
    const version = request.params.model_version === undefined ? undefined : checkVersion(request.params.model_version);
    repository.resolve(name, version);
    return { name, ready: true };
  };
  const schema = {
    summary: 'Model readiness',
    tags: ['health'],
    params: modelParams,
    response: { 200: { type: 'object', properties: { name: { type: 'string' }, ready: { type: 'boolean' } } }, 404: errorResponses[404], 503: errorResponses[503] },
  };
  const modelConfig = { nimifyArea: 'metadata' as const };
  app.get<{ Params: { model_name: string } }>('/v2/models/:model_name/ready', { config: modelConfig, schema }, modelReady);
  app.get<{ Params: { model_name: string; model_version: string } }>('/v2/models/:model_name/versions/:model_version/ready', { config: modelConfig, schema }, modelReady);
};

export default health;

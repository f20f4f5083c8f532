/**
 * Health routes. Live is true as soon as the process serves. Ready: every model in the startup
 * set (and any loaded since) has a version that finished its warmup. Not ready is 503 with the
 * error body (KServe's choice; Triton answers 400), which is what Kubernetes probes act on.
 */
import type { FastifyPluginAsync } from 'fastify';
import { NimifyError } from '../../runtime/errors';
import { checkModelName, checkVersion } from '../../repository/repository';
import { errorResponses, modelParams } from '../schemas';

const health: FastifyPluginAsync = async (app) => {
  const { repository } = app.nimify;
  const config = { nimifyArea: 'health' as const };

  app.get('/v2/health/live', {
    config,
    schema: { summary: 'Server liveness', tags: ['health'], response: { 200: { type: 'object', properties: { live: { type: 'boolean' } } } } },
  }, async () => ({ live: true }));

  app.get('/v2/health/ready', {
    config,
    schema: { summary: 'Server readiness (all startup models ready)', tags: ['health'], response: { 200: { type: 'object', properties: { ready: { type: 'boolean' } } }, 503: errorResponses[503] } },
  }, async () => {
    if (!repository.ready()) {
      const waiting = repository.index().filter((e) => e.state !== 'READY').map((e) => `${e.name}${e.version ? `/${e.version}` : ''}: ${e.state ?? 'not loaded'}`);
      throw new NimifyError('NOT_READY', `server is not ready (${waiting.join('; ') || 'shutting down'})`);
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
  app.get<{ Params: { model_name: string } }>('/v2/models/:model_name/ready', { config, schema }, modelReady);
  app.get<{ Params: { model_name: string; model_version: string } }>('/v2/models/:model_name/versions/:model_version/ready', { config, schema }, modelReady);
};

export default health;

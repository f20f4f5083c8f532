/**
 * The model repository extension: index, load (with an optional config override as Triton's
 * `parameters.config`), unload. Allowed only in explicit control mode; names are validated before
 * they get near the file system.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { parseUntrustedJson } from '../../protocol/json';
import { parseModelConfig } from '../../repository/config';
import { checkModelName } from '../../repository/repository';
import { errorResponses } from '../schemas';

const nameParams = { type: 'object', properties: { model_name: { type: 'string', maxLength: 256 } }, required: ['model_name'] } as const;

const repositoryRoutes: FastifyPluginAsync = async (app) => {
  const { repository } = app.nimify;
  const config = { nimifyArea: 'repository' as const };

  // Triton's clients POST these routes with an empty body, with no Content-Type or with whatever
  // their HTTP library adds (libcurl: application/x-www-form-urlencoded), and Triton reads any
  // non-empty body as JSON. So here, whatever the type: empty → no body, else untrusted JSON.
  // (Route-local: this plugin is encapsulated, other routes keep their parsers.)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, async (_request: FastifyRequest, text: string | Buffer) => {
    const body = typeof text === 'string' ? text : text.toString('utf8');
    return body.trim() === '' ? undefined : parseUntrustedJson('body', body);
  });

  app.post<{ Body: { ready?: boolean } | undefined }>('/v2/repository/index', {
    config,
    schema: {
      summary: 'Models in the repository and the state of each version',
      tags: ['repository'],
      body: { type: 'object', properties: { ready: { type: 'boolean' } }, nullable: true },
      response: {
        200: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' }, state: { type: 'string' }, reason: { type: 'string' } } } },
      },
    },
  }, async (request) => repository.index(request.body?.ready === true));

  const loadBody = {
    type: 'object',
    nullable: true,
    properties: { parameters: { type: 'object', properties: { config: { type: 'string', description: 'A config.json document (as a string) replacing the file for this load' } } } },
  } as const;
  app.post<{ Params: { model_name: string }; Body: { parameters?: { config?: string } } | undefined }>('/v2/repository/models/:model_name/load', {
    config,
    schema: { summary: 'Load or reload a model (explicit control mode)', tags: ['repository'], params: nameParams, body: loadBody, response: { 200: { type: 'object' }, ...errorResponses } },
  }, async (request) => {
    const name = checkModelName(request.params.model_name);
    let override;
    const text = request.body?.parameters?.config;
    if (text !== undefined) override = parseModelConfig('parameters.config', parseUntrustedJson('parameters.config', text), { fromApi: true });
    await repository.load(name, override);
    return {};
  });

  app.post<{ Params: { model_name: string } }>('/v2/repository/models/:model_name/unload', {
    config,
    schema: { summary: 'Unload a model after its in-flight requests (explicit control mode)', tags: ['repository'], params: nameParams, response: { 200: { type: 'object' }, ...errorResponses } },
  }, async (request) => {
    await repository.unload(checkModelName(request.params.model_name));
    return {};
  });
};

export default repositoryRoutes;

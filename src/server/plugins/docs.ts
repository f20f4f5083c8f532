/** OpenAPI 3 generated from the route schemas (@fastify/swagger) and Swagger UI at /documentation. */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { version } from '../../runtime/version';

const docs: FastifyPluginAsync = async (app) => {
  // Before the UI registers its routes, so they are tagged as the docs area (auth exemption).
  app.addHook('onRoute', (route) => {
    if (route.url.includes('/documentation')) route.config = { ...(route.config ?? {}), nimifyArea: 'docs' };
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'nimify inference server',
        description: 'Open Inference Protocol (KServe v2) REST API with the binary tensor data extension, the model repository extension and Prometheus metrics.',
        version,
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/documentation', uiConfig: { docExpansion: 'list' } });
};

export default fp(docs, { name: 'nimify-docs', fastify: '5.x' });

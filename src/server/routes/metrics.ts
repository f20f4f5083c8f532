/** GET /metrics: the Prometheus text exposition of the plugin's registry. */
import type { FastifyPluginAsync } from 'fastify';

const metrics: FastifyPluginAsync = async (app) => {
  const { registry } = app.nimify.metrics;
  app.get('/metrics', {
    config: { nimifyArea: 'metrics' },
    schema: { summary: 'Prometheus metrics (Triton names plus nimify and process metrics)', tags: ['metrics'], produces: ['text/plain'] },
  }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
};

export default metrics;

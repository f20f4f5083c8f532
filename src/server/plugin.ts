/**
 * nimifyPlugin: the whole inference server as one Fastify plugin, so it can run standalone
 * (buildServer) or inside a user's own app (`app.register(nimifyPlugin, { repository })`, with a
 * prefix if wanted). The outer layer (fastify-plugin wrapped) only decorates the host with
 * `nimify` (repository, metrics, breakers); the routes live in an encapsulated child so that
 * their content type parser, hooks and error handler apply to nimify's routes only, never to
 * the host app's. Inside it, each concern is its own plugin: error handling, docs, auth, rate
 * limit, and the route groups (health, metadata, inference with shedding, repository, metrics).
 *
 * Lifetime: a repository given as a path is opened here (models loaded and warmed up before the
 * plugin is ready) and closed in onClose after Fastify stopped accepting and in-flight requests
 * finished; a ModelRepository object stays the caller's.
 */
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { expectKnownKeys, expectPlainObject } from '../runtime/validate';
import { ModelRepository } from '../repository/repository';
import { NimifyContext } from './context';
import { ServerMetrics } from './metrics';
import { checkPluginOptions, PLUGIN_KEYS, type NimifyPluginOptions } from './options';
import { startTracing } from './tracing';
import authPlugin from './plugins/auth';
import docsPlugin from './plugins/docs';
import errorHandler from './plugins/error-handler';
import compression from './plugins/compression';
import rateLimitPlugin from './plugins/rate-limit';
import healthRoutes from './routes/health';
import inferRoutes from './routes/infer';
import predictRoutes from './routes/predict';
import metadataRoutes from './routes/metadata';
import metricsRoutes from './routes/metrics';
import repositoryRoutes from './routes/repository';

/** Fastify's own register options that may arrive alongside ours. */
const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers'];

const nimify: FastifyPluginAsync<NimifyPluginOptions & { prefix?: string }> = async (host, rawOptions) => {
  const raw = expectPlainObject('options', rawOptions);
  expectKnownKeys('options', raw, [...PLUGIN_KEYS, ...FASTIFY_REGISTER_KEYS]);
  const options = checkPluginOptions(raw);
  const metrics = new ServerMetrics({ registry: options.registry, processMetrics: options.processMetrics });

  let repository: ModelRepository;
  if (typeof options.repository === 'string') {
    const log = host.log.child({ component: 'repository' });
    repository = await ModelRepository.open({
      path: options.repository,
      controlMode: options.controlMode,
      startupModels: options.startupModels,
      pollIntervalMs: options.pollIntervalMs,
      defaults: options.modelDefaults,
      log: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m), error: (o, m) => log.error(o, m) },
    });
    host.addHook('onClose', async () => {
      await repository.close();
    });
  } else {
    repository = options.repository;
  }
  const ctx = new NimifyContext(repository, metrics, options);
  host.addHook('onClose', () => ctx.close());
  if (options.tracing !== false) {
    const tracing = startTracing(options.tracing);
    ctx.tracing = tracing;
    // After the requests ended (onClose): their spans are in, then nimify's own exporter flushes.
    host.addHook('onClose', () => tracing.shutdown());
  }
  metrics.attach(repository, () => ctx.inFlight, () => ctx.preprocessQueueSize());
  const cache = ctx.cache;
  if (cache !== null) metrics.enableCache((v) => cache.counts(v));
  host.decorate('nimify', ctx);
  await host.register(routes, { prefix: rawOptions.prefix });
};

const routes: FastifyPluginAsync = async (app) => {
  const { options, metrics } = app.nimify;

  await app.register(errorHandler);
  await app.register(compression, { maxInflatedBytes: options.maxInflatedBytes });
  if (options.docs !== false) await app.register(docsPlugin);
  if (options.rateLimit !== false) {
    const ctx = app.nimify;
    await app.register(rateLimitPlugin, { ...options.rateLimit, onLimit: () => metrics.rateLimited.inc(), expose: (check) => (ctx.rateLimit = check) });
  }
  await app.register(authPlugin, { keys: options.apiKeys, exempt: options.authExempt, onReject: () => metrics.unauthorized.inc() });

  await app.register(healthRoutes);
  await app.register(metadataRoutes);
  await app.register(inferRoutes);
  await app.register(predictRoutes);
  await app.register(repositoryRoutes);
  if (options.metricsRoute !== false) await app.register(metricsRoutes);
};

export const nimifyPlugin = fp(nimify, { name: 'nimify', fastify: '5.x' });

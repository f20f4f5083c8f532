/**
 * The README.md of a deploy folder: what is in it and the exact commands to build, run and
 * check the container, with the service's own names, port and models. Pure text from the context.
 */
import type { DeployContext } from './context';

export function deployReadme(ctx: DeployContext): string {
  const m = ctx.models[0]!;
  const shape = (s: number[]) => `[${s.map((d) => (d < 0 ? 1 : d)).join(',')}]`;
  const count = (s: number[]) => s.reduce((a, d) => a * (d < 0 ? 1 : d), 1);
  const input = m.inputs[0];
  const sample = input ? `{"inputs":[{"name":"${input.name}","shape":${shape(input.shape)},"datatype":"${input.datatype}","data":[${new Array(Math.min(count(input.shape), 4096)).fill(input.datatype === 'BOOL' ? 'false' : input.datatype === 'BYTES' ? '""' : '0').join(',')}]}]}` : '{"inputs":[]}';
  const rows = ctx.models.map((x) => `| \`${x.name}\` | ${x.versions.join(', ')} | ${x.inputs.map((t) => `\`${t.name}\` ${t.datatype} [${t.shape.join(',')}]`).join('<br>')} | ${x.outputs.map((t) => `\`${t.name}\` ${t.datatype} [${t.shape.join(',')}]`).join('<br>')} | ${x.predict ? `\`/v1/models/${x.name}/predict\`` : '–'} |`);
  return [
    `# ${ctx.name}`,
    '',
    `A deployable inference service for ${ctx.models.length === 1 ? `the model \`${m.name}\`` : `${ctx.models.length} models`}, written by \`nimify build\` (nimify ${ctx.nimifyVersion}). It speaks the`,
    'Open Inference Protocol (KServe v2, what Triton speaks) over HTTP, with Prometheus metrics at',
    `\`/metrics\` and the OpenAPI document in \`openapi.json\`.`,
    '',
    '| model | versions | inputs (-1 = any) | outputs | predict route |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    '## What is here',
    '',
    '| path | what |',
    '|---|---|',
    '| `Dockerfile`, `.dockerignore` | the image: nimify installed with npm in a build stage, the models copied in, a non-root user, a read-only-friendly layout, a HEALTHCHECK on `/v2/health/ready` |',
    '| `models/` | the model repository served (`<model>/config.json`, `<model>/<version>/model.onnx`) |',
    ...(ctx.packages.length > 0 ? ['| `packages/` | the nimify tarballs installed instead of the npm registry\'s |'] : []),
    '| `openapi.json` | the service\'s HTTP API |',
    '',
    '## Build and run',
    '',
    '```sh',
    `docker build -t ${ctx.image} .        # podman: podman build --format docker -t ${ctx.image} .`,
    `docker run --rm --read-only --tmpfs /tmp --memory ${ctx.memoryMiB.limit}m --cpus 2 -p 127.0.0.1:${ctx.port}:${ctx.port} ${ctx.image}`,
    '```',
    '',
    'Then, from another shell:',
    '',
    '```sh',
    `curl -s localhost:${ctx.port}/v2/health/ready -o /dev/null -w '%{http_code}\\n'    # 200 once every model is warmed up`,
    `curl -s localhost:${ctx.port}/v2/models/${m.name}/infer -H 'content-type: application/json' -d '${sample}'`,
    '```',
    '',
    `\`docker stop\` sends SIGTERM: the server stops accepting, finishes the requests in flight (at most`,
    `${ctx.drainTimeoutMs / 1000} s, \`NIMIFY_SHUTDOWN_TIMEOUT_MS\`) and exits 0. Every \`nimify serve\` flag can be set as an`,
    `environment variable (\`-e NIMIFY_MAX_BATCH_SIZE=16\`, \`-e NIMIFY_API_KEY=…\`); see nimify's docs/cli.md.`,
    `The image needs ${ctx.memoryMiB.request} MiB or more (a hint from the models' sizes: measure yours).`,
    ...(ctx.gpu
      ? [
          '',
          '**GPU.** This image is built on a CUDA base (`CUDA_IMAGE`). Running it needs the NVIDIA container',
          'toolkit on the host (`docker run --gpus all …`) and an ONNX Runtime build with the CUDA provider',
          '(`NIMIFY_ORT_LIBRARY`; the npm platform package carries the CPU library only): check with',
          `\`docker run --rm --gpus all --entrypoint node ${ctx.image} /opt/nimify/node_modules/nimify/dist/cli/index.js doctor\`.`,
        ]
      : []),
    '',
    '## Scaling',
    '',
    'Each replica is stateless: the models are in the image and a replica is ready only after its',
    'models loaded and warmed up. Rate limits (`NIMIFY_RATE_LIMIT`) and circuit breakers are per',
    'replica. Queue depth per model is exported as `nv_inference_pending_request_count`, the metric an',
    'autoscaler should scale on.',
    '',
  ].join('\n');
}

/**
 * `nimify build <model.onnx | repository> -o <dir>`: writes a deploy folder (src/deploy/build.ts)
 * and prints what it wrote and the next commands.
 */
import { NimifyError } from '../runtime/errors';
import { buildDeploy, type BuildOptions } from '../deploy/build';
import { flagHelp, parseFlags, type FlagSpec, onePositional } from './flags';
import { EXIT, type CliIo } from './io';

export const BUILD_FLAGS = {
  out: { type: 'string', short: 'o', arg: 'dir', help: 'the deploy folder to write (new or empty; required)' },
  name: { type: 'string', arg: 'name', help: 'service name, a DNS-1035 label (default: from the model or repository name)' },
  image: { type: 'string', arg: 'repo/name:tag', help: 'image reference (default <name>:<nimify version>)' },
  port: { type: 'string', arg: 'port', help: 'HTTP port in the container (default 8000)', integer: { min: 1, max: 65535 } },
  gpu: { type: 'boolean', help: 'a CUDA-capable base image and nvidia.com/gpu resources' },
  replicas: { type: 'string', arg: 'min:max', help: 'replica bounds for autoscaling (default 1:4)' },
  autoscale: { type: 'string', arg: 'kind', help: 'hpa | keda | none (default hpa)', choices: ['hpa', 'keda', 'none'] },
  package: { type: 'string', multiple: true, arg: 'file.tgz', help: 'install nimify from this local tarball instead of the npm registry (repeatable: the JS package and the platform package of npm run pack:release)' },
  force: { type: 'boolean', help: 'replace a previous nimify build in --out' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify build <model.onnx | repository-dir> -o <dir> [options]

Writes a self-contained deploy folder for the models: a Dockerfile (multi-stage, non-root,
read-only root filesystem, HEALTHCHECK, node as PID 1 draining on SIGTERM), the model repository,
a Helm chart (probes, PDB, HPA or KEDA autoscaling on queue depth, ServiceMonitor, GPU), KServe
ServingRuntime + InferenceService, a Grafana dashboard, the service's openapi.json and a README.md
with the exact build, run and deploy commands. Every model is loaded first: one that does not load
stops the build with its reason.

options (each also read from the environment variable in brackets):
${flagHelp(BUILD_FLAGS, 'build')}`;

/** `1:4` → {min: 1, max: 4}; `3` → {min: 3, max: 3}. */
export function parseReplicas(text: string): { min: number; max: number } {
  const m = /^([0-9]+)(?::([0-9]+))?$/.exec(text);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || min < 1 || max < min || max > 1000) throw new NimifyError('INVALID_ARGUMENT', `--replicas: expected min:max with 1 <= min <= max <= 1000 (or one number), received ${JSON.stringify(text)}`);
  return { min, max };
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, BUILD_FLAGS, io.env, 'build');
  if (v.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  const source = onePositional('build', positionals, 'one model (.onnx) or repository directory', USAGE);
  if (typeof v.out !== 'string') throw new NimifyError('INVALID_ARGUMENT', 'build: --out <dir> is required (the deploy folder to write)');
  const options: BuildOptions = { source, out: v.out };
  if (v.name !== undefined) options.name = v.name as string;
  if (v.image !== undefined) options.image = v.image as string;
  if (v.port !== undefined) options.port = v.port as number;
  if (v.gpu) options.gpu = true;
  if (v.replicas !== undefined) options.replicas = parseReplicas(v.replicas as string);
  if (v.autoscale !== undefined) options.autoscale = v.autoscale as BuildOptions['autoscale'];
  if (v.package !== undefined) options.packages = v.package as string[];
  if (v.force) options.force = true;
  const { context: ctx, files } = await buildDeploy(options);
  io.out(`nimify build: ${ctx.name} (${ctx.models.map((m) => `${m.name} v${m.versions.join(',')}`).join('; ')}) → ${v.out}`);
  const shown = files.filter((f) => !f.startsWith('models/') && !f.startsWith('packages/'));
  io.out(`  wrote ${shown.join(', ')}, models/ (${files.filter((f) => f.startsWith('models/')).length} files)${ctx.packages.length ? `, packages/ (${ctx.packages.join(', ')})` : ''}`);
  io.out('next:');
  io.out(`  cd ${v.out}`);
  io.out(`  docker build -t ${ctx.image} .          # or: podman build --format docker -t ${ctx.image} .`);
  io.out(`  docker run --rm --read-only --tmpfs /tmp -p 127.0.0.1:${ctx.port}:${ctx.port} ${ctx.image}`);
  io.out(`  docker push ${ctx.image} && helm install ${ctx.name} ./chart      # autoscale: ${ctx.autoscale}`);
  io.out('  kubectl apply -f kserve/                  # or, with KServe');
  io.out('  (README.md in the folder says what each autoscaling option needs in the cluster)');
  return EXIT.OK;
}

/**
 * `nimify build`'s engine: stages the model repository into the deploy folder, loads it with the
 * real server (so every model is known to load, and its inputs, outputs and config are the ones
 * it will serve), builds the DeployContext from that, and writes every generator's files. Each
 * generator is a pure function of the context; this module owns the only side effects (copying
 * the models and the --package tarballs, writing files).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NimifyError } from '../runtime/errors';
import { singleFileModelName } from '../repository/repository';
import { buildServer } from '../server/build';
import { expectInteger, expectOneOf, invalid } from '../runtime/validate';
import { version as nimifyVersion } from '../runtime/version';
import type { DeployContext, DeployModel } from './context';
import { dockerfile, dockerignore } from './dockerfile';
import { grafanaDashboard } from './grafana';
import { helmChart } from './helm';
import { kserveManifests } from './kserve';
import { deployReadme } from './readme';
import { DNS_1035 } from './schemas/check';

export interface BuildOptions {
  /** A model file (.onnx) or a model repository directory. */
  source: string;
  /** The deploy folder to write (created; an existing one must be empty or a previous build's). */
  out: string;
  name?: string;
  image?: string;
  port?: number;
  gpu?: boolean;
  replicas?: { min: number; max: number };
  autoscale?: 'hpa' | 'keda' | 'none';
  /** Local nimify tarballs installed in the image instead of `nimify@<version>` from the registry. */
  packages?: string[];
  /** Replace a previous `nimify build` output in `out`. */
  force?: boolean;
}

export interface BuildResult {
  context: DeployContext;
  /** Files written, relative to `out`, sorted. */
  files: string[];
}

/** Marks a folder as `nimify build` output, so that --force never empties anything else. */
const MARKER = '.nimify-build';
const IMAGE_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

/** A DNS-1035 label from any name (Kubernetes object names, the chart name). */
export function serviceName(from: string): string {
  const s = from.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 63).replace(/-+$/, '');
  return s || 'nimify-service';
}

/** The optional peer packages a model's pipeline needs (image → sharp, text → tokenizers). */
function needsOf(preprocess: { type: string } | null): string[] {
  if (preprocess === null) return [];
  return preprocess.type === 'image' ? ['sharp'] : preprocess.type === 'text' ? ['tokenizers'] : [];
}

function treeBytes(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((n, f) => n + treeBytes(path.join(p, f)), 0);
}

/**
 * Copies `from` into `to` for the image: hidden entries (.git, editor files) are left out, a
 * symlink is followed only when it resolves inside the source (as the server's repository
 * requires; anything else would copy an outside file into an image that gets pushed), and modes
 * are normalised (files 0644, folders 0755) so that the image's non-root user can read every
 * file and the same input gives the same build context.
 */
function copyTree(from: string, to: string, realRoot: string, source: string): void {
  fs.mkdirSync(to, { recursive: true, mode: 0o755 });
  fs.chmodSync(to, 0o755);
  for (const name of fs.readdirSync(from).sort()) {
    if (name.startsWith('.')) continue;
    const src = path.join(from, name);
    const real = fs.realpathSync(src);
    if (real !== realRoot && !real.startsWith(`${realRoot}${path.sep}`)) {
      throw new NimifyError('INVALID_ARGUMENT', `source: ${path.relative(source, src)} resolves to ${real}, outside ${source}; expected every file of the repository inside it`);
    }
    if (fs.statSync(real).isDirectory()) copyTree(src, path.join(to, name), realRoot, source);
    else {
      fs.copyFileSync(real, path.join(to, name));
      fs.chmodSync(path.join(to, name), 0o644);
    }
  }
}

/** Copies the source into `<dir>/models/` as a repository; returns that folder. */
function stageModels(source: string, dir: string): string {
  const dest = path.join(dir, 'models');
  const st = fs.statSync(source);
  if (st.isFile()) {
    if (!source.endsWith('.onnx')) throw invalid('source', 'a .onnx model file or a model repository directory', source);
    const name = singleFileModelName(source);
    fs.mkdirSync(path.join(dest, name, '1'), { recursive: true, mode: 0o755 });
    fs.copyFileSync(source, path.join(dest, name, '1', 'model.onnx'));
    fs.chmodSync(path.join(dest, name, '1', 'model.onnx'), 0o644);
  } else {
    copyTree(source, dest, fs.realpathSync(source), source);
  }
  return dest;
}

/** Refuses an --out that holds anything but a previous build (whatever --force says); deletes nothing. */
function checkOut(out: string, force: boolean): void {
  if (!fs.existsSync(out)) return;
  if (!fs.statSync(out).isDirectory()) throw invalid('--out', 'a directory to write the deploy folder into', out);
  const entries = fs.readdirSync(out);
  if (entries.length === 0) return;
  if (!force) throw new NimifyError('INVALID_ARGUMENT', `--out: ${out} is not empty; expected an empty or new directory (or --force to replace a previous nimify build there)`);
  if (!entries.includes(MARKER)) throw new NimifyError('INVALID_ARGUMENT', `--force: ${out} holds no previous nimify build (no ${MARKER} file); refusing to empty it`);
}

/** Checks the options a library caller gives (the CLI has parsed its flags into the same shape). */
function checkOptions(o: BuildOptions): Required<Omit<BuildOptions, 'name' | 'image'>> & Pick<BuildOptions, 'name' | 'image'> {
  if (typeof o.source !== 'string' || o.source === '') throw invalid('source', 'a model file or repository path', o.source);
  if (!fs.existsSync(o.source)) throw new NimifyError('NOT_FOUND', `source: ${o.source} does not exist`);
  if (typeof o.out !== 'string' || o.out === '') throw invalid('--out', 'a directory path', o.out);
  if (o.name !== undefined && (typeof o.name !== 'string' || !DNS_1035.test(o.name))) throw invalid('--name', 'a DNS-1035 label: lower-case letters, digits and -, starting with a letter, at most 63 characters', o.name);
  if (o.image !== undefined && (typeof o.image !== 'string' || !IMAGE_RE.test(o.image))) throw invalid('--image', 'an image reference such as registry.example.com/team/name:tag (lower-case repository)', o.image);
  const port = o.port === undefined ? 8000 : expectInteger('--port', o.port, 1, 65535);
  const replicas = o.replicas ?? { min: 1, max: 4 };
  expectInteger('--replicas (min)', replicas.min, 1, 1000);
  expectInteger('--replicas (max)', replicas.max, replicas.min, 1000);
  const autoscale = o.autoscale === undefined ? 'hpa' : expectOneOf('--autoscale', o.autoscale, ['hpa', 'keda', 'none'] as const);
  const packages = (o.packages ?? []).map((p) => {
    if (typeof p !== 'string' || !p.endsWith('.tgz') || !fs.existsSync(p) || !fs.statSync(p).isFile()) throw invalid('--package', 'an existing .tgz file (such as release/nimify-<version>.tgz from npm run pack:release)', p);
    return p;
  });
  if (new Set(packages.map((p) => path.basename(p))).size !== packages.length) throw new NimifyError('INVALID_ARGUMENT', `--package: two tarballs share a file name: ${packages.join(', ')}`);
  return { source: o.source, out: o.out, name: o.name, image: o.image, port, gpu: o.gpu === true, replicas, autoscale, packages, force: o.force === true };
}

/** nimify's optional peer dependencies and their ranges (package.json: the one place they are written). */
function peerRanges(): Record<string, string> {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { peerDependencies?: Record<string, string> };
  return manifest.peerDependencies ?? {};
}

/** Writes the deploy folder. Throws (naming the model and reason) when a model does not load. */
export async function buildDeploy(options: BuildOptions): Promise<BuildResult> {
  const o = checkOptions(options);
  const source = path.resolve(o.source);
  const out = path.resolve(o.out);
  if (out === source || out.startsWith(`${source}${path.sep}`)) throw new NimifyError('INVALID_ARGUMENT', `--out: ${out} is inside the source ${source}; expected a folder outside it`);
  if (source.startsWith(`${out}${path.sep}`)) throw new NimifyError('INVALID_ARGUMENT', `--out: the source ${source} is inside ${out}; expected a deploy folder that does not contain the models`);
  checkOut(out, o.force);
  // Everything is written into a sibling folder first and moved into place only when the build
  // succeeded: a failed build leaves --out (a previous build included) as it was.
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const work = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.nimify-build-`));
  try {
    const result = await buildInto(work, source, o);
    fs.rmSync(out, { recursive: true, force: true });
    fs.renameSync(work, out);
    fs.chmodSync(out, 0o755); // mkdtemp made it 0700
    return result;
  } catch (err) {
    fs.rmSync(work, { recursive: true, force: true });
    throw err;
  }
}

async function buildInto(out: string, source: string, o: ReturnType<typeof checkOptions>): Promise<BuildResult> {
  const modelsDir = stageModels(source, out);

  // The real server loads the staged repository: what it serves is what the image will serve.
  const app = await buildServer({ repository: modelsDir, logger: false });
  let models: DeployModel[];
  let openapi: unknown;
  try {
    await app.ready();
    const repo = app.nimify.repository;
    const failed = repo.index().filter((e) => e.state !== 'READY');
    if (failed.length > 0) throw new NimifyError('INVALID_MODEL', `models that do not load cannot be deployed:\n${failed.map((e) => `  ${e.name}${e.version ? ` version ${e.version}` : ''}: ${e.reason}`).join('\n')}`);
    // Only the model folders go into the image (a repository may hold samples, docs, scripts).
    const served = new Set(repo.names());
    for (const entry of fs.readdirSync(modelsDir)) if (!served.has(entry)) fs.rmSync(path.join(modelsDir, entry), { recursive: true, force: true });
    models = repo.names().sort().map((name) => {
      const versions = repo.versions(name).filter((v) => v.ready);
      const latest = versions[versions.length - 1]!;
      const config = latest.config!;
      return {
        name,
        versions: versions.map((v) => v.version),
        inputs: config.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape] })),
        outputs: config.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape] })),
        predict: config.preprocess !== null,
        needs: needsOf(config.preprocess),
        bytes: treeBytes(path.join(modelsDir, name)),
      };
    });
    // The document the server itself publishes (/documentation/json): the service's API as served.
    openapi = (await app.inject('/documentation/json')).json();
  } finally {
    await app.close();
  }
  if (models.length === 0) throw new NimifyError('INVALID_ARGUMENT', `source: ${o.source} holds no model`);

  const name = o.name ?? serviceName(models.length === 1 ? models[0]!.name : path.basename(source));
  const totalMiB = models.reduce((n, m) => n + m.bytes, 0) / 2 ** 20;
  // Sessions hold about the weights again, plus the runtime: a starting point the user tunes.
  const request = Math.max(256, Math.ceil((200 + 3 * totalMiB) / 64) * 64);
  const context: DeployContext = {
    name,
    image: o.image ?? `${name}:${nimifyVersion}`,
    port: o.port,
    gpu: o.gpu,
    replicas: o.replicas,
    autoscale: o.autoscale,
    nimifyVersion,
    packages: o.packages.map((p) => path.basename(p)),
    modelDir: '/models',
    drainTimeoutMs: 30_000,
    memoryMiB: { request, limit: request * 2 },
    models,
  };

  const files: Record<string, string> = {
    Dockerfile: dockerfile(context, peerRanges()),
    '.dockerignore': dockerignore(),
    'openapi.json': `${JSON.stringify(openapi, null, 2)}\n`,
    'README.md': deployReadme(context),
    [MARKER]: 'This folder was written by `nimify build`; `nimify build --force` may replace it.\n',
    ...helmChart(context),
    ...kserveManifests(context),
    ...grafanaDashboard(context),
  };
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
    fs.writeFileSync(path.join(out, rel), text);
  }
  if (o.packages.length > 0) {
    fs.mkdirSync(path.join(out, 'packages'), { recursive: true });
    for (const p of o.packages) fs.copyFileSync(p, path.join(out, 'packages', path.basename(p)));
  }
  return { context, files: listFiles(out) };
}

function listFiles(dir: string, prefix = ''): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]))
    .sort();
}

/**
 * `nimify build` (src/deploy/build.ts, src/cli/build.ts): the deploy folder for real models —
 * what the Dockerfile says (non-root, HEALTHCHECK, NODE_IMAGE argument, node as PID 1), the staged
 * repository, openapi.json, README; byte-identical output for the same input; every refusal named.
 * The image itself is built and run by scripts/container-test.js (a CI step, podman).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseReplicas, run } from '../../src/cli/build';
import { buildDeploy, serviceName } from '../../src/deploy/build';
import { DEFAULT_NODE_IMAGE, RUNTIME_UID } from '../../src/deploy/dockerfile';
import { NimifyError } from '../../src';
import { capture } from '../cli/capture';
import { MODELS, ROOT } from '../helpers';

const DIGITS = path.join(ROOT, 'examples', 'digits');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-build-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const out = (name: string) => path.join(tmp, name);
const read = (dir: string, rel: string) => fs.readFileSync(path.join(dir, rel), 'utf8');

function tree(dir: string, prefix = ''): Record<string, string> {
  const files: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) Object.assign(files, tree(path.join(dir, e.name), `${prefix}${e.name}/`));
    else files[`${prefix}${e.name}`] = fs.readFileSync(path.join(dir, e.name)).toString('base64');
  }
  return files;
}

async function refused(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(NimifyError);
  expect(err).toMatchObject({ code, message: expect.stringMatching(pattern) });
}

describe('the deploy folder of examples/digits', () => {
  it('a multi-stage, non-root Dockerfile that execs node, the model folders only, openapi.json and a README', async () => {
    const dir = out('digits');
    const { context, files } = await buildDeploy({ source: DIGITS, out: dir });
    expect(context).toMatchObject({ name: 'digits', image: `digits:${context.nimifyVersion}`, port: 8000, autoscale: 'hpa', replicas: { min: 1, max: 4 }, modelDir: '/models' });
    expect(context.models).toEqual([
      expect.objectContaining({ name: 'digits', versions: ['1'], predict: true, needs: ['sharp'], inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8] }], outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }] }),
    ]);
    // The samples, README and training.json of examples/digits are not models: not in the image.
    expect(files.filter((f) => f.startsWith('models/'))).toEqual(['models/digits/1/model.onnx', 'models/digits/config.json', 'models/digits/labels.txt']);
    expect(files).toEqual(expect.arrayContaining(['Dockerfile', '.dockerignore', 'openapi.json', 'README.md']));
    const df = read(dir, 'Dockerfile');
    expect(df).toContain(`ARG NODE_IMAGE=${DEFAULT_NODE_IMAGE}`);
    expect(df.match(/^FROM /gm)).toHaveLength(2);
    expect(df).toMatch(/^FROM \$\{NODE_IMAGE\} AS install$/m);
    expect(df).toContain(`"nimify@${context.nimifyVersion}" "sharp@^`); // the registry, and the peer the image pipeline needs
    expect(df).toContain(`USER ${RUNTIME_UID}:${RUNTIME_UID}`);
    expect(df).toContain('NIMIFY_HOST=0.0.0.0 NIMIFY_PORT=8000 NIMIFY_GRPC_PORT=8001');
    expect(df).toMatch(/^EXPOSE 8000 8001$/m);
    expect(df).toMatch(/^HEALTHCHECK .*CMD \["node", "-e", ".*http:\/\/127\.0\.0\.1:8000\/v2\/health\/ready/m);
    expect(df).toMatch(/^ENTRYPOINT \["node", "\/opt\/nimify\/node_modules\/nimify\/dist\/cli\/index\.js", "serve"\]$/m);
    expect(df).not.toContain('COPY packages/');
    expect(read(dir, '.dockerignore').split('\n')).toEqual(expect.arrayContaining(['*', '!models/', '!packages/']));
    const api = JSON.parse(read(dir, 'openapi.json'));
    expect(api.openapi).toBe('3.0.3');
    expect(Object.keys(api.paths)).toEqual(expect.arrayContaining(['/v2/models/{model_name}/infer', '/v2/health/ready']));
    const readme = read(dir, 'README.md');
    expect(readme).toContain(`docker build -t digits:${context.nimifyVersion} .`);
    expect(readme).toContain('--read-only --tmpfs /tmp');
    expect(readme).toContain('curl -s localhost:8000/v2/models/digits/infer');
  });

  it('is deterministic: the same input gives byte-identical folders', async () => {
    await buildDeploy({ source: DIGITS, out: out('det-a'), name: 'svc', replicas: { min: 2, max: 5 } });
    await buildDeploy({ source: DIGITS, out: out('det-b'), name: 'svc', replicas: { min: 2, max: 5 } });
    expect(tree(out('det-b'))).toEqual(tree(out('det-a')));
  });

  it('--package tarballs are copied into the context and installed instead of the registry', async () => {
    const pkgs = [path.join(tmp, 'nimify-9.9.9.tgz'), path.join(tmp, 'nimify-linux-x64-9.9.9.tgz')];
    for (const p of pkgs) fs.writeFileSync(p, 'not really a tarball');
    const dir = out('packages');
    const { files } = await buildDeploy({ source: DIGITS, out: dir, packages: pkgs });
    expect(files).toEqual(expect.arrayContaining(['packages/nimify-9.9.9.tgz', 'packages/nimify-linux-x64-9.9.9.tgz']));
    const df = read(dir, 'Dockerfile');
    expect(df).toContain('COPY packages/ ./packages/');
    expect(df).toContain('"./packages/nimify-9.9.9.tgz" "./packages/nimify-linux-x64-9.9.9.tgz" "sharp@^');
    expect(df).not.toContain('"nimify@');
  });

  it('a single .onnx file becomes a one-model repository; no optional package without a pipeline', async () => {
    const dir = out('single');
    const { context, files } = await buildDeploy({ source: path.join(MODELS, 'mlp_tiny.onnx'), out: dir, port: 9000 });
    expect(context.name).toBe('mlp-tiny');
    expect(files.filter((f) => f.startsWith('models/'))).toEqual(['models/mlp_tiny/1/model.onnx']);
    const df = read(dir, 'Dockerfile');
    expect(df).toMatch(/npm install [^\n]*"nimify@[^"]+" \\$/m);
    expect(df).toContain('EXPOSE 9000 9001');
  });

  it('--gpu: a CUDA base with node copied from NODE_IMAGE, and what it needs documented', async () => {
    const dir = out('gpu');
    await buildDeploy({ source: DIGITS, out: dir, gpu: true });
    const df = read(dir, 'Dockerfile');
    expect(df).toMatch(/^ARG CUDA_IMAGE=nvidia\/cuda:\S+cudnn\S+$/m);
    expect(df).toContain('FROM ${CUDA_IMAGE}');
    expect(df).toContain('COPY --from=node /usr/local/bin/node /usr/local/bin/node');
    expect(read(dir, 'README.md')).toContain('--gpus all');
  });
});

describe('refusals', () => {
  it('a non-empty --out needs --force, and --force empties only a previous build', async () => {
    const dir = out('reuse');
    await buildDeploy({ source: DIGITS, out: dir });
    await refused(buildDeploy({ source: DIGITS, out: dir }), 'INVALID_ARGUMENT', /^--out: .* is not empty/);
    await buildDeploy({ source: DIGITS, out: dir, force: true });
    const other = out('precious');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'keep me');
    await refused(buildDeploy({ source: DIGITS, out: other, force: true }), 'INVALID_ARGUMENT', /^--force: .* holds no previous nimify build/);
    expect(fs.readFileSync(path.join(other, 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('bad names, images, ports, replicas, packages, sources and an --out inside the source are named', async () => {
    await refused(buildDeploy({ source: DIGITS, out: out('x1'), name: 'Bad_Name' }), 'INVALID_ARGUMENT', /^--name: expected a DNS-1035 label/);
    await refused(buildDeploy({ source: DIGITS, out: out('x2'), image: 'UPPER/case:tag' }), 'INVALID_ARGUMENT', /^--image: expected an image reference/);
    await refused(buildDeploy({ source: DIGITS, out: out('x3'), port: 0 }), 'INVALID_ARGUMENT', /^--port: expected an integer/);
    await refused(buildDeploy({ source: DIGITS, out: out('x4'), replicas: { min: 3, max: 2 } }), 'INVALID_ARGUMENT', /^--replicas \(max\)/);
    await refused(buildDeploy({ source: DIGITS, out: out('x5'), packages: [path.join(tmp, 'missing.tgz')] }), 'INVALID_ARGUMENT', /^--package: expected an existing \.tgz file/);
    await refused(buildDeploy({ source: path.join(tmp, 'nope'), out: out('x6') }), 'NOT_FOUND', /does not exist/);
    await refused(buildDeploy({ source: DIGITS, out: path.join(DIGITS, 'deploy') }), 'INVALID_ARGUMENT', /^--out: .* is inside the source/);
    expect(fs.existsSync(path.join(DIGITS, 'deploy'))).toBe(false);
    expect(() => parseReplicas('0:2')).toThrow(/^--replicas: expected min:max/);
    expect(() => parseReplicas('a')).toThrow(/^--replicas: expected min:max/);
    expect(parseReplicas('3')).toEqual({ min: 3, max: 3 });
    expect(serviceName('My_Model.v2')).toBe('my-model-v2');
    expect(serviceName('123')).toBe('nimify-service');
  });

  it('a symlink out of the repository is refused; modes are normalised so the image user can read every file', async () => {
    const repo = path.join(tmp, 'linky-repo');
    fs.mkdirSync(path.join(repo, 'm', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(repo, 'm', '1', 'model.onnx'));
    fs.chmodSync(path.join(repo, 'm', '1', 'model.onnx'), 0o600);
    const secret = path.join(tmp, 'secret.txt');
    fs.writeFileSync(secret, 'not for the image');
    fs.symlinkSync(secret, path.join(repo, 'm', 'notes.txt'));
    await refused(buildDeploy({ source: repo, out: out('linky') }), 'INVALID_ARGUMENT', /^source: m\/notes\.txt resolves to .*secret\.txt, outside /);
    expect(fs.existsSync(out('linky'))).toBe(false);
    // A link that stays inside is followed.
    fs.rmSync(path.join(repo, 'm', 'notes.txt'));
    fs.symlinkSync(path.join(repo, 'm', '1', 'model.onnx'), path.join(repo, 'm', 'copy.onnx'));
    await buildDeploy({ source: repo, out: out('linky') });
    for (const f of ['models/m/1/model.onnx', 'models/m/copy.onnx']) expect(fs.statSync(path.join(out('linky'), f)).mode & 0o777, f).toBe(0o644);
    expect(fs.statSync(path.join(out('linky'), 'models', 'm')).mode & 0o777).toBe(0o755);
    expect(fs.statSync(out('linky')).mode & 0o777).toBe(0o755);
  });

  it('--out holding the source is refused, and a failed --force build leaves the previous build as it was', async () => {
    const parent = out('holder');
    fs.mkdirSync(parent);
    fs.writeFileSync(path.join(parent, '.nimify-build'), 'x');
    fs.cpSync(DIGITS, path.join(parent, 'mymodels'), { recursive: true });
    await refused(buildDeploy({ source: path.join(parent, 'mymodels'), out: parent, force: true }), 'INVALID_ARGUMENT', /^--out: the source .* is inside/);
    expect(fs.existsSync(path.join(parent, 'mymodels', 'digits', 'config.json'))).toBe(true);
    const dir = out('kept');
    await buildDeploy({ source: DIGITS, out: dir });
    const before = tree(dir);
    const broken = path.join(tmp, 'broken-2');
    fs.mkdirSync(path.join(broken, 'bad', '1'), { recursive: true });
    fs.writeFileSync(path.join(broken, 'bad', '1', 'model.onnx'), 'not a model');
    await refused(buildDeploy({ source: broken, out: dir, force: true }), 'INVALID_MODEL', /bad version 1/);
    expect(tree(dir)).toEqual(before);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.nimify-build-'))).toEqual([]); // no work folder left behind
  });

  it('a model that does not load stops the build with its reason', async () => {
    const repo = path.join(tmp, 'broken-repo');
    fs.mkdirSync(path.join(repo, 'bad', '1'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'bad', '1', 'model.onnx'), 'not an onnx model');
    await refused(buildDeploy({ source: repo, out: out('broken') }), 'INVALID_MODEL', /models that do not load cannot be deployed:\n {2}bad version 1: /);
  });
});

describe('nimify build (CLI)', () => {
  it('prints what it wrote and the next commands; usage errors exit 2', async () => {
    const io = capture();
    expect(await run([DIGITS, '-o', out('cli'), '--replicas', '2:6', '--autoscale', 'keda', '--name', 'digits-svc'], io)).toBe(0);
    expect(io.stdout()).toContain(`nimify build: digits-svc (digits v1) → ${out('cli')}`);
    expect(io.stdout()).toMatch(/docker build -t digits-svc:\S+ \./);
    const missing = capture();
    await expect(run([DIGITS], missing)).rejects.toThrow(/--out <dir> is required/);
    await expect(run([DIGITS, '-o', out('cli2'), '--autoscale', 'sometimes'], capture())).rejects.toThrow(/--autoscale: expected one of hpa, keda, none/);
    const help = capture();
    expect(await run(['--help'], help)).toBe(0);
    expect(help.stdout()).toContain('usage: nimify build');
  });
});

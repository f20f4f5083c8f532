/**
 * The layers of src/ and the package's entry points.
 *
 * Each folder of src/ is a layer; a module may load (value import, require, dynamic import) only
 * modules of its own layer or of a layer below. `import type` upward is erased at run time and is
 * allowed only where listed (the public signatures of model.predict()). The package root is the
 * facade above every layer. And importing 'nimify' (the runtime) must load none of the server's
 * or the pipeline's dependencies.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, model } from './helpers';

/** Rank of each layer: a module may load modules of rank <= its own, and never a sibling of the same rank. */
const LAYERS: Record<string, number> = { runtime: 0, protocol: 1, pipeline: 1, repository: 2, server: 3, deploy: 4, cli: 5 };
/** Type-only imports upward that are part of a public signature (Model.predict(), LoadOptions.pipeline). */
const TYPE_ONLY_UP = new Set(['runtime/model.ts -> pipeline', 'runtime/options.ts -> pipeline']);

interface Edge { from: string; to: string; kind: 'value' | 'type'; spec: string }

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every relative import of every module of src/, as (module, target module, value|type). */
export function importGraph(srcDir: string): Edge[] {
  const edges: Edge[] = [];
  for (const file of sources(srcDir)) {
    const text = fs.readFileSync(file, 'utf8');
    const from = path.relative(srcDir, file);
    const add = (spec: string, kind: Edge['kind']) => {
      if (!spec.startsWith('.')) return;
      const to = path.relative(srcDir, path.resolve(path.dirname(file), spec));
      if (to.startsWith('..')) return; // package.json
      edges.push({ from, to, kind, spec });
    };
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^;'"]*?\s+from\s+)?'([^']+)'/gm)) {
      // `import { type A, type B } from` is type-only too.
      const braces = /\{([^}]*)\}/.exec(m[0])?.[1];
      const allTypes = braces !== undefined && braces.split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '));
      add(m[2], m[1] !== undefined || allTypes ? 'type' : 'value');
    }
    for (const m of text.matchAll(/(typeof\s+)?\b(?:require|import)\(\s*'([^']+)'\s*\)/g)) add(m[2], m[1] !== undefined ? 'type' : 'value');
  }
  return edges;
}

const layerOf = (module: string): string => (module.includes(path.sep) ? module.split(path.sep)[0] : '(root)');

/** Edges that break the layer rule. */
export function violations(edges: readonly Edge[]): string[] {
  const bad: string[] = [];
  for (const e of edges) {
    const a = layerOf(e.from);
    const b = layerOf(e.to);
    if (a === '(root)' || a === b) continue;
    if (b === '(root)') {
      bad.push(`${e.from} imports the package root ('${e.spec}')`);
      continue;
    }
    if (!(a in LAYERS) || !(b in LAYERS)) {
      bad.push(`${e.from} -> ${e.to}: layer not ranked in LAYERS`);
      continue;
    }
    const up = LAYERS[b] > LAYERS[a] || (LAYERS[b] === LAYERS[a] && a !== b);
    if (!up) continue;
    if (e.kind === 'type' && TYPE_ONLY_UP.has(`${e.from} -> ${b}`)) continue;
    bad.push(`${e.from} (${a}) ${e.kind === 'type' ? 'type-imports' : 'loads'} ${e.to} (${b}, a layer above or beside it)`);
  }
  return bad;
}

describe('layers', () => {
  const edges = importGraph(path.join(ROOT, 'src'));

  it('the graph is read (the parser sees value, type and require edges)', () => {
    const has = (from: string, to: string, kind: Edge['kind']) => edges.some((e) => e.from === from && e.to === to && e.kind === kind);
    expect(has(path.join('runtime', 'model.ts'), path.join('runtime', 'io-plan'), 'value')).toBe(true);
    expect(has(path.join('runtime', 'model.ts'), path.join('pipeline', 'pipeline'), 'type')).toBe(true);
    expect(has('index.ts', path.join('pipeline', 'load'), 'value')).toBe(true);
    expect(edges.length).toBeGreaterThan(100);
  });

  it('no module loads a module of a layer above its own', () => {
    expect(violations(edges)).toEqual([]);
  });

  it('the check catches an upward import', () => {
    const fake: Edge[] = [
      { from: path.join('runtime', 'model.ts'), to: path.join('pipeline', 'pool'), kind: 'value', spec: '../pipeline/pool' },
      { from: path.join('protocol', 'request.ts'), to: path.join('pipeline', 'image'), kind: 'value', spec: '../pipeline/image' },
      { from: path.join('runtime', 'tensor.ts'), to: path.join('server', 'options'), kind: 'type', spec: '../server/options' },
      { from: path.join('server', 'build.ts'), to: 'index', kind: 'value', spec: '..' },
    ];
    expect(violations(fake)).toHaveLength(4);
  });
});

/** Runs `code` in a fresh process in the checkout and returns the package names it loaded, and nimify's own dist/ modules (as `dist/…`). */
function loadedPackages(code: string): string[] {
  const probe = `${code}
    .then(() => {
      const names = new Set();
      for (const f of Object.keys(require.cache)) {
        const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f.slice(f.lastIndexOf('node_modules/')));
        if (m) names.add(m[1]);
        else if (f.startsWith(${JSON.stringify(path.join(ROOT, 'dist'))})) names.add(f.slice(${JSON.stringify(ROOT.length + 1)}));
      }
      console.log(JSON.stringify([...names].sort()));
    }, (e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['-e', probe], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as string[];
}

const SERVER_DEPS = ['fastify', 'fastify-plugin', 'prom-client', '@fastify/multipart', '@fastify/swagger', '@fastify/swagger-ui', '@fastify/rate-limit', '@fastify/under-pressure', 'pino', 'secure-json-parse'];
const PIPELINE_DEPS = ['piscina', 'sharp', 'tokenizers'];

describe('entry points', () => {
  it("importing 'nimify' and running a model loads none of the server's or the pipeline's dependencies", () => {
    const loaded = loadedPackages(`const n = require('./dist');
      Promise.resolve().then(async () => {
        const m = await n.loadModel(${JSON.stringify(model('mlp_tiny.onnx'))});
        await m.infer({ x: new n.Tensor('float32', new Float32Array(64), [1, 64]) });
        await m.dispose();
      })`);
    for (const dep of [...SERVER_DEPS, ...PIPELINE_DEPS]) expect(loaded, dep).not.toContain(dep);
    expect(loaded.filter((f) => /^dist\/(server|pipeline|protocol|repository|cli|deploy)\//.test(f))).toEqual([]);
    expect(loaded).toContain(path.join('dist', 'runtime', 'model.js'));
  });

  it("'nimify/server' loads Fastify, and a model with a pipeline loads the pipeline layer but not the server", () => {
    expect(loadedPackages(`Promise.resolve(require('./dist/server'))`)).toContain('fastify');
    const digits = path.join(ROOT, 'examples', 'digits', 'digits');
    const loaded = loadedPackages(`const n = require('./dist');
      const cfg = JSON.parse(require('fs').readFileSync(${JSON.stringify(path.join(digits, 'config.json'))}, 'utf8'));
      n.loadModel(${JSON.stringify(path.join(digits, '1', 'model.onnx'))}, { pipeline: { preprocess: cfg.preprocess, postprocess: cfg.postprocess, dir: ${JSON.stringify(digits)} } }).then((m) => m.dispose())`);
    expect(loaded).toContain(path.join('dist', 'pipeline', 'pipeline.js'));
    expect(loaded).toContain('sharp');
    for (const dep of SERVER_DEPS) expect(loaded, dep).not.toContain(dep);
    expect(loaded.filter((f) => f.startsWith(path.join('dist', 'server')))).toEqual([]);
  });

  it('package.json exports the three entry points, each built', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { default: string } | string> };
    for (const [key, file] of [['.', 'index'], ['./server', 'server/index'], ['./pipeline', 'pipeline/index']]) {
      const entry = pkg.exports[key] as { default: string; types: string };
      expect(entry.default).toBe(`./dist/${file}.js`);
      expect(fs.existsSync(path.join(ROOT, entry.default)), entry.default).toBe(true);
    }
  });
});

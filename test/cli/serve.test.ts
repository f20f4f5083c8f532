/**
 * `nimify serve`: flags and NIMIFY_* environment, then the real command in a child process on a
 * real port: it prints where it listens and the completed config, serves, and on SIGTERM drains
 * the in-flight requests (none lost) and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { serveOptions } from '../../src/cli/serve';
import { ROOT, MODELS } from '../helpers';

describe('flags and environment', () => {
  it('maps flags to server options; env vars fill what flags leave out', () => {
    const { options, port, host } = serveOptions(
      ['m.onnx', '--port', '9000', '--instances', '2', '--max-batch-size', '16', '--max-queue-delay-us', '250', '--api-key', 'k1-aaaaaaaa', '--api-key', 'k2-bbbbbbbb', '--control-mode', 'explicit', '--load-model', 'a', '--rate-limit', '100'],
      { NIMIFY_HOST: '0.0.0.0', NIMIFY_PORT: '1234', NIMIFY_INFER_TIMEOUT_MS: '500' },
    );
    expect(port).toBe(9000); // the flag wins over NIMIFY_PORT
    expect(host).toBe('0.0.0.0');
    expect(options).toMatchObject({
      repository: 'm.onnx',
      modelDefaults: { instances: 2, batching: { maxBatchSize: 16, maxQueueDelayMicros: 250, adaptive: true } },
      apiKeys: ['k1-aaaaaaaa', 'k2-bbbbbbbb'],
      controlMode: 'explicit',
      startupModels: ['a'],
      rateLimit: { max: 100, timeWindowMs: 60_000 },
      inferTimeoutMs: 500,
    });
    expect(serveOptions(['m.onnx', '--inline-below-us', '0']).options.modelDefaults).toEqual({ runtime: { inlineBelowMicros: 0 } });
    expect(serveOptions(['m.onnx', '--log-requests']).options.logRequests).toBe(true);
    expect(serveOptions(['m.onnx', '--preprocess-threads', '3'], { NIMIFY_PREPROCESS_QUEUE: '16' }).options.preprocess).toEqual({ threads: 3, maxQueue: 16 });
    expect(() => serveOptions(['m.onnx', '--preprocess-threads', '0'])).toThrow(/--preprocess-threads: expected an integer in \[1, 256\]/);
    expect(serveOptions(['m.onnx']).options.logRequests).toBeUndefined();
    expect(serveOptions([], { NIMIFY_REPOSITORY: '/models', NIMIFY_API_KEY: 'k1-aaaaaaaa,k2-bbbbbbbb', NIMIFY_MAX_BATCH_SIZE: '0' }).options).toMatchObject({ repository: '/models', apiKeys: ['k1-aaaaaaaa', 'k2-bbbbbbbb'], modelDefaults: { batching: false } });
  });

  it('bad flags and env values fail with the flag or variable named', () => {
    expect(() => serveOptions(['m.onnx', '--port', 'x'])).toThrow(/--port: expected an integer/);
    expect(() => serveOptions(['m.onnx'], { NIMIFY_PORT: '70000' })).toThrow(/NIMIFY_PORT: expected an integer in \[0, 65535\]/);
    expect(() => serveOptions(['m.onnx', '--control-mode', 'sometimes'])).toThrow(/--control-mode: expected one of none, explicit, poll/);
    expect(() => serveOptions(['m.onnx', '--bogus'])).toThrow(/bogus/);
    expect(() => serveOptions([])).toThrow(/expected a model/);
    expect(() => serveOptions(['a.onnx', 'b.onnx'])).toThrow(/one model or repository/);
    expect(() => serveOptions(['m.onnx', '--prot', '1'])).toThrow("unknown option '--prot' (did you mean --port?)");
    expect(serveOptions(['m.onnx']).parentWatch).toBe(true);
    expect(serveOptions(['m.onnx'], { NIMIFY_NO_PARENT_WATCH: '1' }).parentWatch).toBe(false);
  });
});

function start(args: string[], env: Record<string, string> = {}, how: { command: string; prefix: string[]; cwd?: string } = { command: process.execPath, prefix: [path.join(ROOT, 'dist', 'cli', 'index.js')] }): { child: ChildProcess; output: () => string; listening: Promise<string> } {
  const child = spawn(how.command, [...how.prefix, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: how.cwd });
  children.push(child);
  let out = '';
  const listening = new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = /serving .* at (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d) => (out += d));
    child.on('exit', (code) => reject(new Error(`exited ${code} before listening:\n${out}`)));
  });
  return { child, output: () => out, listening };
}

// Children are killed after each test even when an assertion failed first.
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

const exitCode = (child: ChildProcess) => new Promise<number | null>((r) => child.on('exit', (code) => r(code)));

const slowBody = JSON.stringify({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: 60 }] });
const slowInfer = (base: string) => fetch(`${base}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: slowBody }).then(async (r) => ({ status: r.status, body: (await r.json()) as { outputs: Array<{ shape: number[] }> } }));

describe('nimify serve (child process)', () => {
  it('SIGINT drains like SIGTERM: the in-flight request succeeds, exit 0', async () => {
    const { child, output, listening } = start([path.join(MODELS, 'slow.onnx'), '--port', '0', '--log-level', 'warn']);
    const base = await listening;
    const inflight = slowInfer(base);
    await new Promise((r) => setTimeout(r, 150));
    const exited = exitCode(child);
    child.kill('SIGINT');
    expect((await inflight).status).toBe(200);
    expect(await exited, output()).toBe(0);
    expect(output()).toContain('nimify: SIGINT: draining in-flight requests');
  });

  it('serves a model with defaults, prints the completed config, drains on SIGTERM with no request lost, exits 0', async () => {
    const { child, output, listening } = start([path.join(MODELS, 'slow.onnx'), '--port', '0', '--log-level', 'warn']);
    const base = await listening;
    for (let i = 0; i < 100 && !output().includes('config {'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(output()).toContain('model slow version 1: READY');
    expect(output()).toMatch(/config \{"name":"slow","platform":"onnxruntime_onnx"/);
    expect(await (await fetch(`${base}/v2/health/ready`)).json()).toEqual({ ready: true });
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: 40 }] });
    const inflight = Array.from({ length: 4 }, () => fetch(`${base}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(async (r) => ({ status: r.status, body: (await r.json()) as { outputs: Array<{ shape: number[] }> } })));
    await new Promise((r) => setTimeout(r, 150)); // the requests are in (queued or running)
    const exited = exitCode(child);
    child.kill('SIGTERM');
    const results = await Promise.all(inflight);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    for (const r of results) expect(r.body.outputs[0].shape).toEqual([256, 256]);
    expect(await exited, output()).toBe(0);
    expect(output()).toContain('draining in-flight requests');
    expect(output()).toContain('nimify: stopped');
    await expect(fetch(`${base}/v2/health/live`)).rejects.toThrow();
  });

  it('exits 1 with the reason when a startup model cannot load; 2 on a usage error', async () => {
    // A file ONNX Runtime cannot parse (a model whose automatic warmup fails is served: test/server/warmup.test.ts).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-serve-'));
    fs.writeFileSync(path.join(dir, 'broken.onnx'), 'not an onnx model');
    const bad = start([path.join(dir, 'broken.onnx'), '--port', '0', '--log-level', 'silent']);
    await expect(bad.listening).rejects.toThrow(/exited 1/);
    fs.rmSync(dir, { recursive: true, force: true });
    expect(bad.output()).toContain('startup models failed to load');
    const usage = start(['--port', 'nope']);
    await expect(usage.listening).rejects.toThrow(/exited 2/);
  });
});

describe('nimify serve --protect-metrics (deprecated)', () => {
  it('starts, writes one warning line to stderr, and /metrics still needs the key', async () => {
    const key = 'key-aaaaaaaa-5678';
    const { child, listening } = start([path.join(MODELS, 'mlp_tiny.onnx'), '--port', '0', '--log-level', 'warn', '--api-key', key, '--protect-metrics']);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const base = await listening;
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    const exited = exitCode(child);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = stderr.split('\n').filter((l) => l.includes('protect-metrics'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^nimify: --protect-metrics \(NIMIFY_PROTECT_METRICS\) is deprecated and changes nothing/);
  });
});

describe('npx nimify serve: a signal to the npx process drains the server', () => {
  // A project with nimify installed as npm would (node_modules/nimify and its .bin link, which npm's bin-links makes executable).
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-npx-'));
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'npx-user', version: '1.0.0', private: true }));
  fs.mkdirSync(path.join(project, 'node_modules', '.bin'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'nimify'));
  fs.symlinkSync('../nimify/dist/cli/index.js', path.join(project, 'node_modules', '.bin', 'nimify'));
  fs.chmodSync(path.join(ROOT, 'dist', 'cli', 'index.js'), 0o755);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to npx: the in-flight request succeeds, the nimify process drains and exits 0`, async () => {
      const exitFile = path.join(project, `exit-${signal}.json`);
      const env = { NODE_OPTIONS: `--require ${path.join(__dirname, 'record-exit.cjs')}`, NIMIFY_TEST_EXIT_FILE: exitFile, npm_config_update_notifier: 'false' };
      const { child, output, listening } = start([path.join(MODELS, 'slow.onnx'), '--port', '0', '--log-level', 'warn'], env, { command: 'npx', prefix: ['--no-install', 'nimify'], cwd: project });
      onTestFinished(() => {
        // Without the fix the server outlives npx: never leave it running.
        const pid = Number(fs.readFileSync(`${exitFile}.pid`, 'utf8'));
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
      const base = await listening;
      const inflight = slowInfer(base);
      await new Promise((r) => setTimeout(r, 150));
      child.kill(signal); // the npx process only, as a process manager would
      const result = await inflight;
      expect(result.status).toBe(200);
      expect(result.body.outputs[0]!.shape).toEqual([256, 256]);
      for (let i = 0; i < 150 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 100));
      expect(JSON.parse(fs.readFileSync(exitFile, 'utf8')), output()).toMatchObject({ code: 0 });
      // The server outlives npx: its last lines may still be in the pipe when its exit is recorded.
      for (let i = 0; i < 50 && !output().includes('nimify: stopped'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(output()).toContain(`nimify: ${signal} (via npm): draining in-flight requests`);
      expect(output()).toContain('nimify: stopped');
      await expect(fetch(`${base}/v2/health/live`)).rejects.toThrow();
    }, 60_000);
  }
});

describe('the npm-shell watch', () => {
  it('a sibling job of the npm script exiting does not stop the server (only a lone child reads shell wake-ups as a signal)', async () => {
    // `"start": "sidecar & nimify serve …"`: the shell npm runs wakes when the sidecar exits.
    const script = `sleep 1 & exec_node() { "${process.execPath}" "${path.join(ROOT, 'dist', 'cli', 'index.js')}" "$@"; }; exec_node "$@"`;
    const { child, output, listening } = start([path.join(MODELS, 'mlp_tiny.onnx'), '--port', '0', '--log-level', 'warn'], { npm_lifecycle_event: 'start' }, { command: 'sh', prefix: ['-c', script, 'sh'] });
    const base = await listening;
    // Wait until the sidecar is gone from the shell's children, then for several watch ticks.
    const children = () => fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    for (let i = 0; i < 100 && children().length > 1; i++) await new Promise((r) => setTimeout(r, 100));
    expect(children()).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await fetch(`${base}/v2/health/live`)).status).toBe(200);
    expect(output()).not.toContain('via npm');
    // A signal to the shell itself, now that nimify is its only child, is still noticed.
    child.kill('SIGINT');
    for (let i = 0; i < 100 && !output().includes('nimify: stopped'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(output()).toContain('nimify: SIGINT (via npm): draining in-flight requests');
    expect(output()).toContain('nimify: stopped');
  }, 30_000);
});

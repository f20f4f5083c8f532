import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

/**
 * A project folder where nimify is installed, as the README's paths assume
 * (`node_modules/nimify/examples/...`): node_modules/nimify links to this checkout. Under deps/ so
 * that nothing outside the checkout is touched; its own package.json keeps `import 'nimify'` from
 * resolving to the checkout itself.
 */
function installedLayout(): string {
  fs.mkdirSync(path.join(ROOT, 'deps'), { recursive: true });
  const dir = fs.mkdtempSync(path.join(ROOT, 'deps', 'readme-'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{"name":"readme-test","private":true}');
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'nimify'));
  return dir;
}
const layouts: string[] = [];
afterAll(() => {
  for (const d of layouts) fs.rmSync(d, { recursive: true, force: true });
});

/** The first fenced block of `lang` after `heading` in the README. */
function block(heading: string, lang: string): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(heading));
  const code = new RegExp(`\`\`\`${lang}\n([\\s\\S]*?)\`\`\``).exec(section)?.[1];
  expect(code, `${heading}: no ${lang} block`).toBeDefined();
  return code as string;
}

describe('README', () => {
  it('the library example runs as written in a project where nimify is installed (ESM import)', () => {
    const dir = installedLayout();
    layouts.push(dir);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', block('## Example', 'js')], { cwd: dir, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\[ 1, 10 \] Float32Array\(10\) \[/);
  });

  it('the Serve section: `nimify serve` of the installed demo repository answers its curl as written', async () => {
    const dir = installedLayout();
    layouts.push(dir);
    const [serveLine, ...curlLines] = block('## Serve', 'sh').trim().split('\n');
    expect(serveLine).toMatch(/^npx nimify serve node_modules\/nimify\/examples\/digits /);
    const args = serveLine!.replace(/#.*$/, '').trim().split(/\s+/).slice(2);
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), ...args, '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d;
          const m = /serving .* at (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.stderr!.on('data', (d: Buffer) => (out += d));
        child.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
      });
      // The curl command exactly as written, but for the port (--port 0 above).
      const curl = curlLines.join('\n').replace('localhost:8000', url.replace(/^http:\/\//, ''));
      const r = spawnSync('sh', ['-c', curl], { cwd: dir, encoding: 'utf8' });
      expect(r.status).toBe(0);
      const body = JSON.parse(r.stdout);
      expect(body.model_name).toBe('digits');
      expect(body.outputs[0]).toMatchObject({ name: 'logits', shape: [1, 10], datatype: 'FP32' });
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('the model.predict() example runs as written in a project where nimify is installed, and classifies the digit', () => {
    const dir = installedLayout();
    layouts.push(dir);
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('model.predict(input, options?)'));
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeDefined();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', (code as string).replace(/^ {2}/gm, '')], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\{ label: '7', index: 7, score: 0\.95\d+ \}\n$/);
  });

  it('the Deploy section: `nimify build` of the installed demo writes the folder it describes', () => {
    const dir = installedLayout();
    layouts.push(dir);
    const line = block('## Deploy', 'sh').trim();
    expect(line).toMatch(/^npx nimify build node_modules\/nimify\/examples\/digits -o deploy\/$/);
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), ...line.split(/\s+/).slice(2)], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    for (const f of ['Dockerfile', '.dockerignore', 'models/digits/1/model.onnx', 'chart/Chart.yaml', 'chart/values.schema.json', 'kserve/servingruntime.yaml', 'kserve/inferenceservice.yaml', 'grafana/dashboard.json', 'openapi.json', 'README.md']) {
      expect(fs.existsSync(path.join(dir, 'deploy', f)), f).toBe(true);
    }
  });

  it('documents every error code of the error table', async () => {
    const { ERROR_TABLE } = await import('../src');
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const [code, row] of Object.entries(ERROR_TABLE)) expect(readme).toContain(`| \`${code}\` | ${row.httpStatus} |`);
  });
});

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

describe('README', () => {
  it('the library example runs as written (ESM import of the built package)', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Example'));
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeDefined();
    const script = (code as string).replace("from 'nimify'", `from ${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))}`);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\[ 1, 10 \] Float32Array\(10\) \[/);
  });

  it('the model.predict() example runs as written and classifies the digit', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('model.predict(input, options?)'));
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeDefined();
    const script = (code as string).replace(/^ {2}/gm, '').replace("from 'nimify'", `from ${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))}`);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\{ label: '7', index: 7, score: 0\.95\d+ \}\n$/);
  });

  it('documents every error code of the error table', async () => {
    const { ERROR_TABLE } = await import('../src');
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const [code, row] of Object.entries(ERROR_TABLE)) expect(readme).toContain(`| \`${code}\` | ${row.httpStatus} |`);
  });
});

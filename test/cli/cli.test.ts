/**
 * The `nimify` framework: command table, --help everywhere, unknown commands and flags answered
 * with a suggestion and exit 2, and the real binary exiting promptly with its whole output when
 * stdout is a pipe (process.exit() after the flush, see index.ts exitAfterFlush).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, main, suggest } from '../../src/cli/index';
import { envFor, parseFlags, type FlagSpec } from '../../src/cli/flags';
import { EXIT } from '../../src/cli/io';
import { capture } from './capture';
import { SERVE_FLAGS } from '../../src/cli/serve';
import { writeNpy } from '../../src/cli/npy';
import { Tensor } from '../../src';
import { MODELS, ROOT } from '../helpers';

describe('suggestions', () => {
  it('unknown flags name the nearest known one; NIMIFY_* env is not checked', () => {
    expect(() => parseFlags(['m.onnx', '--prot', '8000'], SERVE_FLAGS, {}, 'serve')).toThrow("unknown option '--prot' (did you mean --port?)");
    expect(() => parseFlags(['--max-batch', '8'], SERVE_FLAGS, {}, 'serve')).toThrow(/did you mean --max-batch-size\?/);
    expect(() => parseFlags(['--zzzzzzzz'], SERVE_FLAGS, {}, 'serve')).toThrow(/^unknown option '--zzzzzzzz'$/);
    expect(() => parseFlags(['-q'], SERVE_FLAGS, {}, 'serve')).toThrow("unknown option '-q'");
    // A string flag's value is never checked as a flag name.
    expect(parseFlags(['--host=-weird', 'm.onnx'], SERVE_FLAGS, {}, 'serve').values.host).toBe('-weird');
    expect(parseFlags(['--port=8001', 'm.onnx'], SERVE_FLAGS, {}, 'serve').values.port).toBe(8001);
    expect(parseFlags(['m.onnx'], SERVE_FLAGS, { NIMIFY_PROT: '1' }, 'serve').values.port).toBeUndefined();
    expect(suggest('sevre', Object.keys(COMMANDS))).toBe('serve');
    expect(suggest('insp', Object.keys(COMMANDS))).toBe('inspect');
  });

  it('main(): unknown command or flag → exit 2 with the suggestion on stderr', async () => {
    const io = capture();
    expect(await main(['sevre'], io)).toBe(EXIT.USAGE);
    expect(io.stderr()).toContain('unknown command "sevre" (did you mean "serve"?)');
    const io2 = capture();
    expect(await main(['serve', 'm.onnx', '--prot', '8000'], io2)).toBe(EXIT.USAGE);
    expect(io2.stderr()).toContain("nimify serve: INVALID_ARGUMENT: unknown option '--prot' (did you mean --port?)");
    const io3 = capture();
    expect(await main(['help', 'infre'], io3)).toBe(EXIT.USAGE);
    expect(io3.stderr()).toContain('did you mean "infer"?');
  });

  it('--help on every command, and `nimify help <cmd>` prints the same', async () => {
    for (const cmd of Object.keys(COMMANDS)) {
      const a = capture();
      expect(await main([cmd, '--help'], a)).toBe(EXIT.OK);
      expect(a.stdout()).toMatch(new RegExp(`^usage: nimify ${cmd}`));
      // Output-only flags have no variable; the others name theirs.
      expect(a.stdout()).toMatch(/--help +show this help\n|--help +show this help$/);
      if (cmd !== 'doctor') expect(a.stdout()).toMatch(/\[NIMIFY_[A-Z_]+\]/);
      const b = capture();
      expect(await main(['help', cmd], b)).toBe(EXIT.OK);
      expect(b.stdout()).toBe(a.stdout());
      const c = capture();
      expect(await main([cmd, '-h'], c)).toBe(EXIT.OK);
    }
    const top = capture();
    expect(await main([], top)).toBe(EXIT.USAGE);
    for (const cmd of Object.keys(COMMANDS)) expect(top.stderr()).toContain(`  ${cmd} `);
  });
});

function runBin(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    // A slow reader: the pipe fills and the writer must wait, not drop the tail.
    child.stdout.on('data', (d: Buffer) => {
      chunks.push(d);
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 2);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(chunks), stderr }));
  });
}

describe('the real binary', () => {
  it('a large --output json over a slowly read pipe arrives whole, and the process exits 0', async () => {
    // slow.onnx: y = x [256, 256] after `iters` loops, ~1.5 MB of JSON; the run also leaves ORT's thread pool up.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-cli-'));
    fs.writeFileSync(path.join(dir, 'x.npy'), writeNpy(new Tensor('float32', Float32Array.from({ length: 65536 }, (_, i) => i / 65536), [256, 256])));
    const r = await runBin(['infer', path.join(MODELS, 'slow.onnx'), '--input', `x=@${path.join(dir, 'x.npy')}`, '--input', 'iters=1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(1_000_000);
    const doc = JSON.parse(r.stdout.toString()) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> };
    expect(doc.outputs[0]!.shape).toEqual([256, 256]);
    expect(doc.outputs[0]!.data).toHaveLength(65536);
  });

  it('exit codes: 2 for usage errors, 1 for a failure, 0 for --version', async () => {
    expect((await runBin(['nope'])).code).toBe(2);
    expect((await runBin(['inspect', '--jsn'])).stderr).toContain('did you mean --json?');
    expect((await runBin(['inspect', path.join(MODELS, 'missing.onnx')])).code).toBe(1);
    const v = await runBin(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.toString()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('environment variables', () => {
  it("serve's are NIMIFY_<FLAG>, another command's NIMIFY_<COMMAND>_<FLAG>: serve's never change another command", async () => {
    const { BENCH_FLAGS } = await import('../../src/cli/bench');
    const { TUNE_FLAGS } = await import('../../src/cli/tune');
    expect(parseFlags(['m.onnx'], SERVE_FLAGS, { NIMIFY_PORT: '9000' }, 'serve').values.port).toBe(9000);
    // A container that serves /models sets NIMIFY_REPOSITORY and NIMIFY_INSTANCES: tune and bench ignore them.
    const shared = { NIMIFY_REPOSITORY: '/models', NIMIFY_INSTANCES: '2', NIMIFY_CONCURRENCY: '1,8,64' };
    expect(parseFlags(['m.onnx'], TUNE_FLAGS, shared, 'tune').values).toEqual({});
    expect(parseFlags(['m.onnx'], BENCH_FLAGS, shared, 'bench').values).toEqual({});
    expect(parseFlags(['m.onnx'], BENCH_FLAGS, { NIMIFY_BENCH_CONCURRENCY: '1,8', NIMIFY_BENCH_BINARY: 'yes' }, 'bench').values).toEqual({ concurrency: '1,8', binary: true });
    expect(() => parseFlags(['m.onnx'], TUNE_FLAGS, { NIMIFY_TUNE_BUDGET: 'soon' }, 'tune')).toThrow(/^NIMIFY_TUNE_BUDGET: expected/);
    // Output-only flags, and flags whose values hold commas, have no variable.
    expect(parseFlags(['m.onnx'], BENCH_FLAGS, { NIMIFY_BENCH_JSON: 'x.json', NIMIFY_BENCH_SHAPE: 'x=1,64' }, 'bench').values).toEqual({});
    expect(envFor('json', 'inspect')).toBeNull();
    expect(envFor('input', 'infer')).toBeNull();
    expect(envFor('api-key', 'infer')).toBe('NIMIFY_INFER_API_KEY');
    expect(envFor('api-key', 'serve')).toBe('NIMIFY_API_KEY');
  });
});

describe('docs/cli.md', () => {
  it('lists every flag of every command with its environment variable (– for none), and every exit code', async () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'cli.md'), 'utf8');
    const tables: Array<[string, Record<string, FlagSpec>]> = [
      ['serve', SERVE_FLAGS],
      ['inspect', (await import('../../src/cli/inspect')).INSPECT_FLAGS],
      ['infer', (await import('../../src/cli/infer')).INFER_FLAGS],
      ['bench', (await import('../../src/cli/bench')).BENCH_FLAGS],
      ['tune', (await import('../../src/cli/tune')).TUNE_FLAGS],
      ['doctor', (await import('../../src/cli/doctor')).DOCTOR_FLAGS],
      ['build', (await import('../../src/cli/build')).BUILD_FLAGS],
    ];
    expect(tables.map(([c]) => c).sort()).toEqual(Object.keys(COMMANDS).sort());
    for (const [cmd, specs] of tables) {
      const start = doc.indexOf(`## nimify ${cmd}`);
      expect(start, cmd).toBeGreaterThan(0);
      const end = doc.indexOf('\n## ', start + 5);
      const section = doc.slice(start, end === -1 ? undefined : end);
      for (const [flag, spec] of Object.entries(specs)) {
        const variable = envFor(flag, cmd);
        const arg = spec.type === 'string' ? ` <${spec.arg ?? 'value'}>` : '';
        expect(section, `${cmd} --${flag}`).toMatch(new RegExp(`--${flag}${arg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\` \\| ${variable ? `\`${variable}\`` : '–'} \\|`));
      }
    }
    for (const [name, code] of Object.entries(EXIT)) expect(doc, name).toMatch(new RegExp(`\\n\\| ${code} \\| `));
  });
});

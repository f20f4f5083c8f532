// bench/gpu/check.js (issue 15 item 5) must keep working between the rare runs on a GPU machine:
// its CPU-only mode runs the same code (model loading, agreement bookkeeping, closed loops, the
// PyTorch baseline's invocation, JSON + Markdown) on the tiny model, and the CUDA path's failures
// are reported, not crashed on.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runtimeInfo } from '../../src';
import { ROOT } from '../helpers';

const SCRIPT = path.join(ROOT, 'bench', 'gpu', 'check.js');
const run = (args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('bench/gpu/check.js', () => {
  it('--cpu-only runs end to end and writes JSON and Markdown', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-gpu-check-'));
    const r = run(['--cpu-only', '--quick', '--models', 'mlp_tiny', '--out', out]);
    expect(r.stderr).toMatch(/gpu-check: ok in/);
    expect(r.status).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'gpu-check.json'), 'utf8'));
    expect(report.models).toHaveLength(1);
    const cpu = report.models[0].devices.cpu;
    for (const c of ['1', '8', '64']) {
      expect(cpu.inflight[c]).toBeGreaterThan(0);
      expect(cpu.ideal[c]).toBeGreaterThan(0);
    }
    expect(report.models[0].devices.cuda).toBeUndefined();
    // Device I/O on the CPU model: results kept in the session's memory agree with the host path.
    expect(report.models[0].io.cpu).toMatchObject({ device: 'cpu', pinnedStaging: false, resultLocation: 'cpu', deviceOutputs: { ok: true, relative: 0 } });
    expect(report.torch).toMatchObject({ skipped: 'no model to compare' });
    const md = fs.readFileSync(path.join(out, 'gpu-check.md'), 'utf8');
    expect(md).toMatch(/\| tiny MLP \(64→256→10\) \| cpu \|/);
    expect(md).toMatch(/\| tiny MLP \(64→256→10\) \| cpu \| cpu \| false \| ok \(0\) \|/);
  });

  it('fails with the provider error (exit 1, report written) when CUDA cannot be used, and refuses bad usage (exit 2)', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-gpu-check-'));
    const ortDir = path.dirname(runtimeInfo()!.library);
    const r = run(['--ort', ortDir, '--ep-library', '/nonexistent/libcuda_ep.so', '--quick', '--models', 'mlp_tiny', '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/FAILED: EP_UNAVAILABLE: .*required provider 'cuda' cannot be used/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'gpu-check.json'), 'utf8')).error).toMatch(/EP_UNAVAILABLE/);
    expect(run([]).status).toBe(2);
    expect(run(['--ort', '/nonexistent']).stderr).toMatch(/--ort: \/nonexistent does not exist/);
    expect(run(['--cpu-only', '--models', 'bert']).stderr).toMatch(/--models: unknown model "bert"/);
  });
});

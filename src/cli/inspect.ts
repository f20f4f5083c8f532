/**
 * `nimify inspect <model.onnx | repository> [--json]`: what a model is and how nimify would serve
 * it. The models are opened exactly as `nimify serve` opens them (ModelRepository, so the config
 * shown is the one the server would complete and print), each version in turn: its ONNX header
 * (onnx-header.ts), ORT's metadata and I/O, the batch dim, the completed config and a short
 * latency measurement per batch size on this machine.
 *
 * The --json document (documented in docs/cli.md, field names stable):
 *   { nimify, models: [{ name, version, file, state, reason, onnx, metadata, inputs, outputs,
 *     batchDim, config, latency }] }
 */
import { statSync } from 'node:fs';
import { NimifyError } from '../runtime/errors';
import type { Model, TensorInfo } from '../runtime/model';
import { shapeText } from '../runtime/io-plan';
import { toDatatype } from '../protocol/datatypes';
import { autoWarmup, detectBatchDim, WARMUP_DIM, type CompletedConfig } from '../repository/config';
import { ModelRepository, warmupFeeds } from '../repository/repository';
import type { Tensor } from '../runtime/tensor';
import { version as nimifyVersion } from '../runtime/version';
import { flagHelp, parseFlags, type FlagSpec, onePositional } from './flags';
import { EXIT, type CliIo } from './io';
import { readOnnxHeader, type OnnxHeader } from './onnx-header';

export const INSPECT_FLAGS = {
  json: { type: 'boolean', help: 'print one JSON document instead of the tables' },
  'no-latency': { type: 'boolean', help: 'skip the latency measurement' },
  'latency-ms': { type: 'string', arg: 'ms', help: 'time spent measuring each batch size (default 300)', integer: { min: 10, max: 60_000 } },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify inspect <model.onnx | repository-dir> [options]

Shows each model (each version, for a repository): inputs and outputs with their dims (symbolic
names kept) and element types, the model's metadata, IR version, opsets and producer, the batch
dim nimify detects, the completed config \`nimify serve\` would serve it with, and a quick latency
per batch size (1, 8, 32) measured on this machine, on zeros shaped as the automatic warmup shapes
them (other variable dims ${WARMUP_DIM}, fewer for large inputs). A size whose run fails is shown as
skipped with ONNX Runtime's message. Exit 1 when a model failed to load.

options (each also read from the environment variable in brackets):
${flagHelp(INSPECT_FLAGS, 'inspect')}`;

export const LATENCY_BATCH_SIZES = [1, 8, 32] as const;

export interface TensorReport {
  name: string;
  /** nimify element type (float32, int64, …; sequence/map for non-tensors). */
  type: string;
  /** KServe v2 datatype (FP32, INT64, …), null when the protocol cannot carry it. */
  datatype: string | null;
  /** Numbers for fixed dims, the name for a symbolic dim, -1 for an unnamed variable dim; null = rank unknown. */
  shape: Array<number | string> | null;
}

/** A measured size (`shapes`: what each input was fed), or one not measured and why (over maxBatchSize, no batch dim, or the run failed: ORT's message). */
export type LatencyRow = { batch: number | null; shapes: Record<string, number[]>; runs: number; p50Us: number; meanUs: number; samplesPerSec: number } | { batch: number | null; skipped: string };

export interface ModelReport {
  name: string;
  version: string;
  file: string;
  state: string;
  reason: string | null;
  onnx: OnnxHeader | null;
  metadata: Model['metadata'] | null;
  inputs: TensorReport[] | null;
  outputs: TensorReport[] | null;
  batchDim: { detected: boolean; name: string | null; maxBatchSize: number | null } | null;
  config: CompletedConfig | null;
  latency: { msPerSize: number; rows: LatencyRow[] } | null;
}

function tensors(infos: readonly TensorInfo[]): TensorReport[] {
  return infos.map((t) => ({ name: t.name, type: t.type, datatype: toDatatype(t.type), shape: t.shape === null ? null : [...t.shape] }));
}

const errorText = (err: unknown) => (err instanceof NimifyError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err));

async function measure(model: Model, feeds: Record<string, Tensor>, batch: number | null, ms: number): Promise<LatencyRow> {
  const shapes = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, [...t.dims]]));
  try {
    await model.infer(feeds); // first run: allocations, kernel selection
  } catch (err) {
    return { batch, skipped: `the run on ${Object.entries(shapes).map(([k, d]) => `${k} [${d.join(', ')}]`).join(', ')} failed: ${errorText(err)}` };
  }
  const times: number[] = [];
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  let now = process.hrtime.bigint();
  while ((now < end || times.length < 3) && times.length < 100_000) {
    const t0 = now;
    await model.infer(feeds);
    now = process.hrtime.bigint();
    times.push(Number(now - t0) / 1000);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const round = (x: number) => Math.round(x * 10) / 10;
  return { batch, shapes, runs: times.length, p50Us: round(sorted[Math.floor(sorted.length / 2)]!), meanUs: round(mean), samplesPerSec: Math.round(((batch ?? 1) * 1e6) / mean) };
}

/** One size: the automatic warmup's request at that batch size (config.ts owns the shapes), timed. */
async function sizeRow(model: Model, config: CompletedConfig, batchDim: boolean, batch: number | null, ms: number): Promise<LatencyRow> {
  const req = autoWarmup(config.inputs, model.inputs, batchDim, batch ?? 1)[0];
  if (req === undefined) return { batch, skipped: 'an input has no known rank, so no shape could be invented for it' };
  let feeds: Record<string, Tensor>;
  try {
    feeds = warmupFeeds('latency', req, config);
  } catch (err) {
    return { batch, skipped: errorText(err) };
  }
  return measure(model, feeds, batch, ms);
}

async function latency(model: Model, config: CompletedConfig, ms: number): Promise<LatencyRow[]> {
  const batched = config.batching !== false && config.batching.batchDim === true;
  if (!batched) {
    // No batch dim (or batching off with a fixed dim 0): one run at the model's own shape.
    const fixed = model.inputs.some((i) => i.shape !== null && i.shape.length > 0 && typeof i.shape[0] === 'number' && i.shape[0] >= 0);
    const why = config.batching === false ? 'batching is off' : fixed ? 'dim 0 is fixed: the model has no batch dim' : 'the model has no batch dim';
    // The batch dim batching would use (batching off) is 1, as in the automatic warmup.
    const warmBatchDim = config.batching === false && detectBatchDim(model, {});
    return [await sizeRow(model, config, warmBatchDim, null, ms), ...LATENCY_BATCH_SIZES.filter((b) => b > 1).map((b) => ({ batch: b, skipped: why }))];
  }
  const max = config.batching === false ? Infinity : config.batching.maxBatchSize ?? Infinity;
  const rows: LatencyRow[] = [];
  for (const b of LATENCY_BATCH_SIZES) {
    if (b > max) rows.push({ batch: b, skipped: `over maxBatchSize ${max}` });
    else rows.push(await sizeRow(model, config, true, b, ms));
  }
  return rows;
}

export async function inspect(target: string, opts: { latencyMs: number | null }): Promise<ModelReport[]> {
  const repo = await ModelRepository.open({ path: target });
  try {
    const reports: ModelReport[] = [];
    for (const name of repo.names()) {
      const versions = repo.versions(name);
      if (versions.length === 0) {
        const entry = repo.index().find((e) => e.name === name);
        reports.push({ name, version: '', file: '', state: entry?.state ?? 'UNAVAILABLE', reason: entry?.reason ?? 'no version found', onnx: null, metadata: null, inputs: null, outputs: null, batchDim: null, config: null, latency: null });
        continue;
      }
      for (const v of versions) {
        let onnx: OnnxHeader | null = null;
        let reason = v.reason || null;
        try {
          onnx = readOnnxHeader(v.file);
        } catch (err) {
          reason = reason ?? (err as Error).message;
        }
        const m = v.model;
        const config = v.config;
        const report: ModelReport = {
          name, version: v.version, file: v.file, state: v.state, reason, onnx,
          metadata: m ? { ...m.metadata, custom: { ...m.metadata.custom } } : null,
          inputs: m ? tensors(m.inputs) : null,
          outputs: m ? tensors(m.outputs) : null,
          batchDim: null, config, latency: null,
        };
        if (m && config) {
          const detected = config.batching !== false && config.batching.batchDim === true;
          const d0 = m.inputs[0]?.shape?.[0];
          report.batchDim = { detected, name: detected && typeof d0 === 'string' ? d0 : null, maxBatchSize: config.batching === false ? null : config.batching.maxBatchSize ?? null };
          if (opts.latencyMs !== null && v.state === 'READY') {
            // One model's failure never costs the other models their reports.
            try {
              report.latency = { msPerSize: opts.latencyMs, rows: await latency(m, config, opts.latencyMs) };
            } catch (err) {
              report.latency = { msPerSize: opts.latencyMs, rows: LATENCY_BATCH_SIZES.map((b) => ({ batch: b, skipped: errorText(err) })) };
            }
          }
        }
        reports.push(report);
      }
    }
    return reports;
  } finally {
    await repo.close();
  }
}

const us = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(1)} µs`);

function table(rows: string[][], indent: string): string[] {
  // Rows shorter than the header (a skipped size) run across the columns and set no width.
  const full = rows.filter((r) => r.length === rows[0]!.length);
  const widths = rows[0]!.map((_, i) => Math.max(...full.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd());
}

export function formatReport(r: ModelReport): string {
  const lines = [`model ${r.name}${r.version ? ` version ${r.version}` : ''}${r.file ? `  (${r.file})` : ''}`, `  state      ${r.state}${r.reason ? `: ${r.reason}` : ''}`];
  if (r.onnx) {
    const o = r.onnx;
    lines.push(`  onnx       IR version ${o.irVersion}; opset ${o.opsets.map((s) => `${s.domain} ${s.version}`).join(', ') || '(none)'}; producer ${o.producerName || '(none)'}${o.producerVersion ? ` ${o.producerVersion}` : ''}`);
  }
  if (r.metadata) {
    const m = r.metadata;
    lines.push(`  metadata   graph ${m.graphName || '(unnamed)'}; domain ${m.domain || '(none)'}; model version ${m.version}${m.description ? `; ${JSON.stringify(m.description)}` : ''}`);
    const custom = Object.entries(m.custom);
    if (custom.length > 0) lines.push(`  custom     ${custom.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  }
  for (const [title, list] of [['inputs', r.inputs], ['outputs', r.outputs]] as const) {
    if (!list) continue;
    lines.push(`  ${title}`);
    lines.push(...table([['name', 'type', 'datatype', 'shape'], ...list.map((t) => [t.name, t.type, t.datatype ?? '-', shapeText(t.shape)])], '    '));
  }
  if (r.batchDim) {
    const b = r.batchDim;
    lines.push(`  batch dim  ${b.detected ? `dim 0${b.name ? ` ("${b.name}")` : ''} of every input and output; requests are batched up to ${b.maxBatchSize} rows` : 'none: each request runs on its own'}`);
  }
  if (r.config) lines.push(`  config     ${JSON.stringify(r.config)}`);
  if (r.latency) {
    const fed = r.latency.rows.find((row) => 'shapes' in row);
    const shapes = fed && 'shapes' in fed ? `; fed${fed.batch === null ? '' : ` at batch ${fed.batch}`}: ${Object.entries(fed.shapes).map(([k, d]) => `${k} [${d.join(', ')}]`).join(', ')}` : '';
    lines.push(`  latency    on this machine, ${r.latency.msPerSize} ms per size, zeros shaped as the automatic warmup${shapes}`);
    lines.push(
      ...table(
        [['batch', 'runs', 'p50', 'mean', 'samples/s'], ...r.latency.rows.map((row) => ('skipped' in row ? [row.batch === null ? 'model shape' : String(row.batch), `skipped: ${row.skipped}`] : [row.batch === null ? 'model shape' : String(row.batch), String(row.runs), us(row.p50Us), us(row.meanUs), String(row.samplesPerSec)]))],
        '    ',
      ),
    );
  }
  return lines.join('\n');
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, INSPECT_FLAGS, io.env, 'inspect');
  if (v.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  const target = onePositional('inspect', positionals, 'one model (.onnx) or repository directory', USAGE);
  // A single file is checked as ONNX first: a clear INVALID_MODEL/NOT_FOUND instead of a repository error.
  let isFile: boolean;
  try {
    isFile = statSync(target).isFile();
  } catch {
    throw new NimifyError('NOT_FOUND', `inspect: '${target}' does not exist (expected a model .onnx file or a repository directory)`);
  }
  if (isFile) readOnnxHeader(target);
  const reports = await inspect(target, { latencyMs: v['no-latency'] ? null : ((v['latency-ms'] as number | undefined) ?? 300) });
  if (v.json) io.out(JSON.stringify({ nimify: nimifyVersion, models: reports }, null, 2));
  else io.out(reports.map(formatReport).join('\n\n'));
  return reports.every((r) => r.state === 'READY') ? EXIT.OK : EXIT.FAILURE;
}

/**
 * The outputs of `nimify bench`: the report document (--json), the terminal table, a Markdown
 * table (--md) and an SVG chart (--svg: samples/s and p99 latency per concurrency, one line per
 * engine). Pure functions of the report; bench.ts decides where they go.
 */
import type { LevelResult, PlannedInput } from './bench-engine';

export interface EngineResult {
  /** 'nimify' or 'onnxruntime-node'. */
  name: string;
  /** Which ONNX Runtime the engine ran on (version and library or package path). */
  runtime: { version: string | null; path: string };
  levels: LevelResult[];
}

/** engines[0] ÷ engines[1] at one concurrency: > 1 is better for throughput, < 1 for latency. */
export interface Ratio {
  concurrency: number;
  throughput: number | null;
  p50: number | null;
  p99: number | null;
}

/** The --json document (documented in docs/cli-bench-tune.md; field names are stable). */
export interface BenchReport {
  tool: 'nimify bench';
  nimifyVersion: string;
  date: string;
  mode: 'in-process' | 'http';
  /** The model file, or the server URL. */
  target: string;
  model: { name: string; batched: boolean; inputs: PlannedInput[] };
  /** Samples (rows) per inference. */
  batch: number;
  warmupMs: number;
  durationMs: number;
  concurrency: number[];
  /** HTTP: JSON or binary tensor bodies. */
  encoding: 'json' | 'binary' | null;
  /** In-process: the load options nimify ran the model with (as `nimify serve` would); null over HTTP. */
  configuration: Record<string, unknown> | null;
  engines: EngineResult[];
  ratios: Ratio[] | null;
  machine: { platform: string; arch: string; cpus: number; cpuModel: string; node: string };
}

const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || b === 0 ? null : +(a / b).toFixed(3));

export function ratios(a: EngineResult, b: EngineResult): Ratio[] {
  return a.levels.map((l) => {
    const o = b.levels.find((x) => x.concurrency === l.concurrency);
    return { concurrency: l.concurrency, throughput: ratio(l.inferencesPerSec, o?.inferencesPerSec), p50: ratio(l.latencyMs.p50, o?.latencyMs.p50), p99: ratio(l.latencyMs.p99, o?.latencyMs.p99) };
  });
}

const num = (n: number) => (n >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
const ms = (n: number | null) => (n === null ? '–' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n >= 1 ? n.toFixed(2) : n.toFixed(3));
const x = (n: number | null) => (n === null ? '–' : `${n.toFixed(2)}×`);

const COLUMNS = ['engine', 'conc', 'inf/s', 'samples/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mean ms', 'ELD p99 ms', 'errors'] as const;

function rows(report: BenchReport): string[][] {
  const out: string[][] = [];
  for (const c of report.concurrency) {
    for (const e of report.engines) {
      const l = e.levels.find((v) => v.concurrency === c);
      if (!l) continue;
      const m = l.latencyMs;
      out.push([e.name, String(c), num(l.inferencesPerSec), num(l.samplesPerSec), ms(m.p50), ms(m.p90), ms(m.p99), ms(m.max), ms(m.mean), ms(l.eventLoopDelayP99Ms), String(l.errors)]);
    }
  }
  return out;
}

function header(report: BenchReport): string[] {
  const inputs = report.model.inputs.map((i) => `${i.name} ${i.type} [${i.dims.join(', ')}]`).join(', ');
  const lines = [
    `nimify bench ${report.target} (${report.mode}${report.encoding ? `, ${report.encoding} bodies` : ''}): batch ${report.batch}, ${report.durationMs / 1000} s per level after ${report.warmupMs / 1000} s warmup`,
    `  inputs: ${inputs}${report.model.batched ? ' (dim 0 = batch)' : ' (no batch dim)'}`,
  ];
  for (const e of report.engines) lines.push(e.runtime.version === null ? `  ${e.name}: ${e.runtime.path}` : `  ${e.name}: ONNX Runtime ${e.runtime.version} (${e.runtime.path})`);
  if (report.configuration) lines.push(`  nimify configuration: ${JSON.stringify(report.configuration)}`);
  return lines;
}

/** The table printed on stdout. */
export function textReport(report: BenchReport): string {
  const body = rows(report);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...body.map((r) => r[i].length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [...header(report), '', line(COLUMNS), ...body.map(line)];
  if (report.ratios && report.engines.length === 2) {
    out.push('', `${report.engines[0].name} ÷ ${report.engines[1].name} (throughput: higher is better; p50/p99: lower is better)`);
    out.push(`  ${'conc'.padStart(5)}  ${'throughput'.padStart(10)}  ${'p50'.padStart(7)}  ${'p99'.padStart(7)}`);
    for (const r of report.ratios) out.push(`  ${String(r.concurrency).padStart(5)}  ${x(r.throughput).padStart(10)}  ${x(r.p50).padStart(7)}  ${x(r.p99).padStart(7)}`);
  }
  const failed = report.engines.flatMap((e) => e.levels.filter((l) => l.errors > 0).map((l) => `  ${e.name} c=${l.concurrency}: ${l.errors} errors${l.http ? ` (status codes ${JSON.stringify(l.http.statusCodes)}, socket errors ${l.http.socketErrors}, timeouts ${l.http.timeouts})` : ''}; first: ${l.firstError}`));
  if (failed.length) out.push('', 'errors:', ...failed);
  return out.join('\n');
}

/** The Markdown report (--md). */
export function markdownReport(report: BenchReport): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [`# nimify bench: ${esc(report.model.name)}`, '', ...header(report).map((l) => `- ${esc(l.trim())}`), `- machine: ${report.machine.cpus} × ${esc(report.machine.cpuModel)}, ${report.machine.platform}/${report.machine.arch}, Node ${report.machine.node}; ${report.date}`, ''];
  out.push(`| ${COLUMNS.join(' | ')} |`, `|${COLUMNS.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const r of rows(report)) out.push(`| ${r.map(esc).join(' | ')} |`);
  if (report.ratios && report.engines.length === 2) {
    out.push('', `${report.engines[0].name} ÷ ${report.engines[1].name} (throughput: higher is better; p50/p99: lower is better):`, '', '| conc | throughput | p50 | p99 |', '| ---: | ---: | ---: | ---: |');
    for (const r of report.ratios) out.push(`| ${r.concurrency} | ${x(r.throughput)} | ${x(r.p50)} | ${x(r.p99)} |`);
  }
  return `${out.join('\n')}\n`;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e'];
const escXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const short = (n: number) => (n >= 1e6 ? `${+(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${+(n / 1e3).toFixed(1)}k` : n >= 1 ? `${+n.toFixed(1)}` : `${+n.toPrecision(2)}`);

/** One panel: a log-scale y axis against the concurrency levels (evenly spaced), one line per engine. */
function panel(title: string, report: BenchReport, value: (l: LevelResult) => number | null, x0: number, y0: number, w: number, h: number): string[] {
  const xs = report.concurrency;
  const series = report.engines.map((e) => xs.map((c) => {
    const l = e.levels.find((v) => v.concurrency === c);
    const v = l ? value(l) : null;
    return v !== null && v > 0 ? ([c, v] as const) : null;
  }).filter((p): p is readonly [number, number] => p !== null));
  const all = series.flat().map((p) => p[1]);
  const lo = all.length ? Math.floor(Math.log10(Math.min(...all))) : 0;
  const hi = all.length ? Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all)))) : 1;
  const px = (c: number) => x0 + 50 + (xs.length === 1 ? 0.5 : xs.indexOf(c) / (xs.length - 1)) * (w - 70);
  const py = (v: number) => y0 + h - 30 - ((Math.log10(v) - lo) / (hi - lo)) * (h - 60);
  const out = [`<text x="${x0 + w / 2}" y="${y0 + 14}" text-anchor="middle" font-weight="bold">${escXml(title)}</text>`];
  for (let e = lo; e <= hi; e++) {
    const y = py(10 ** e).toFixed(1);
    out.push(`<line x1="${x0 + 50}" y1="${y}" x2="${x0 + w - 20}" y2="${y}" stroke="#ddd"/>`, `<text x="${x0 + 46}" y="${(+y + 4).toFixed(1)}" text-anchor="end">${short(10 ** e)}</text>`);
  }
  for (const c of xs) out.push(`<text x="${px(c).toFixed(1)}" y="${y0 + h - 12}" text-anchor="middle">${c}</text>`);
  series.forEach((pts, i) => {
    const color = COLORS[i % COLORS.length];
    if (pts.length > 1) out.push(`<path d="${pts.map(([c, v], j) => `${j ? 'L' : 'M'}${px(c).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [c, v] of pts) out.push(`<circle cx="${px(c).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3" fill="${color}"><title>${escXml(`${report.engines[i].name} c=${c}: ${short(v)}`)}</title></circle>`);
  });
  return out;
}

/** The chart (--svg): samples/s and p99 latency against concurrency, one line per engine. */
export function svgReport(report: BenchReport): string {
  const w = 360;
  const h = 260;
  const legend = report.engines.map((e, i) => `<rect x="${20 + i * 200}" y="${h + 24}" width="14" height="4" fill="${COLORS[i % COLORS.length]}"/><text x="${40 + i * 200}" y="${h + 30}">${escXml(e.name)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * w + 20}" height="${h + 70}" font-family="sans-serif" font-size="11">`,
    '<rect width="100%" height="100%" fill="white"/>',
    ...panel(`${report.model.name}: samples/s (log)`, report, (l) => l.samplesPerSec, 10, 10, w, h),
    ...panel(`${report.model.name}: p99 latency, ms (log)`, report, (l) => l.latencyMs.p99, 10 + w, 10, w, h),
    ...legend,
    `<text x="20" y="${h + 52}" fill="#555">${escXml(`${report.mode}${report.encoding ? ` (${report.encoding})` : ''}, batch ${report.batch}; x: requests in flight; ${report.machine.cpus} × ${report.machine.cpuModel}`)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

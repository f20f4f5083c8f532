'use strict';
// A dependency-free SVG line chart: one panel per model, samples/s (log scale) against requests
// in flight, one line per engine plus the one-batch ideal (dashed).
const COLORS = { 'onnxruntime-node': '#d62728', 'nimify (no batching)': '#7f7f7f', 'nimify (batching)': '#1f77b4', ideal: '#2ca02c' };

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const short = (n) => (n >= 1e6 ? `${+(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${+(n / 1e3).toFixed(1)}k` : `${+n.toFixed(1)}`);

function panel(t, x0, y0, w, h) {
  const series = {};
  for (const r of t.rows) {
    for (const [name, v] of Object.entries(r.engines)) (series[name] ??= []).push([r.inflight, v.samplesPerSec]);
    (series.ideal ??= []).push([r.inflight, r.idealSamplesPerSec]);
  }
  const all = Object.values(series).flat().map((p) => p[1]).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.ceil(Math.log10(Math.max(...all)));
  const xs = t.rows.map((r) => r.inflight);
  const px = (c) => x0 + 40 + (xs.indexOf(c) / Math.max(1, xs.length - 1)) * (w - 60);
  const py = (v) => y0 + h - 30 - ((Math.log10(v) - lo) / Math.max(1, hi - lo)) * (h - 60);
  const out = [`<text x="${x0 + w / 2}" y="${y0 + 14}" text-anchor="middle" font-weight="bold">${esc(t.model)}</text>`];
  for (let e = lo; e <= hi; e++) {
    const y = py(10 ** e);
    out.push(`<line x1="${x0 + 40}" y1="${y}" x2="${x0 + w - 20}" y2="${y}" stroke="#ddd"/>`, `<text x="${x0 + 36}" y="${y + 4}" text-anchor="end">${short(10 ** e)}</text>`);
  }
  for (const c of xs) out.push(`<text x="${px(c)}" y="${y0 + h - 12}" text-anchor="middle">${c}</text>`);
  for (const [name, pts] of Object.entries(series)) {
    const d = pts.filter((p) => p[1] > 0).map(([c, v], i) => `${i ? 'L' : 'M'}${px(c).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[name] ?? '#000'}" stroke-width="2"${name === 'ideal' ? ' stroke-dasharray="5,4"' : ''}/>`);
    for (const [c, v] of pts) if (v > 0) out.push(`<circle cx="${px(c).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3" fill="${COLORS[name] ?? '#000'}"/>`);
  }
  return out.join('\n');
}

/** The throughput report (bench/throughput.js) as an SVG document. */
function throughputSvg(report, machine) {
  const w = 330;
  const h = 260;
  const width = w * report.throughput.length + 20;
  const height = h + 70;
  const parts = report.throughput.map((t, i) => panel(t, 10 + i * w, 10, w, h));
  const legend = Object.entries(COLORS).map(([name, color], i) => `<rect x="${20 + i * 180}" y="${h + 24}" width="14" height="4" fill="${color}"/><text x="${40 + i * 180}" y="${h + 30}">${esc(name === 'ideal' ? 'ideal (one batch of C)' : name)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    ...legend,
    `<text x="20" y="${h + 52}" fill="#555">samples/s (log) vs batch-1 requests in flight; ${esc(machine)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

module.exports = { throughputSvg };

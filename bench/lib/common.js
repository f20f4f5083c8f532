'use strict';
// Small pieces the HTTP benchmarks (bench/http.js, bench/predict.js) and their servers share:
// which nimify is served, a seeded PRNG for their inputs, and the statistics and number formats
// of their reports. Kept free of heavy dependencies: the bench servers load it too.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
// The nimify package whose dist/ is served: this checkout, or BENCH_NIMIFY_ROOT (e.g. a snapshot of
// a build, so that a rebuild of dist/ during a long run cannot change what is measured).
const NIMIFY_ROOT = process.env.BENCH_NIMIFY_ROOT ? path.resolve(process.env.BENCH_NIMIFY_ROOT) : ROOT;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Which nimify was served: the commit of its checkout, and whether its src/ differs from it. */
function nimifyVersion() {
  const git = (...args) => {
    try {
      return execFileSync('git', args, { cwd: NIMIFY_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const status = git('status', '--porcelain', '--', 'src');
  return { root: NIMIFY_ROOT === ROOT ? '.' : NIMIFY_ROOT, commit: git('rev-parse', '--short', 'HEAD'), srcModified: status === null ? null : status.length > 0 };
}

// The seeded generator `nimify bench` uses (mulberry32), from this checkout's build: one copy.
const { prng } = require(path.join(ROOT, 'dist', 'cli', 'bench-engine.js'));

/** The p-th percentile of an ascending array (null when empty). */
function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : null;
}

/** The median of the finite values (the lower one of an even count; null when none). */
const median = (xs) => {
  const v = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[(v.length - 1) >> 1] : null;
};

// Report cells: counts with thousands separators from 1,000 up; milliseconds with fewer decimals
// as they grow; '–' for a missing value.
const fmt = (n) => (n === null || n === undefined ? '–' : n >= 1000 ? Math.round(n).toLocaleString('en-US') : String(n));
const ms = (n) => (n === null || n === undefined ? '–' : n >= 100 ? String(Math.round(n)) : n.toFixed(n >= 10 ? 1 : 2));

/** `node bench/<suite>.js`: runs the suite alone and prints its Markdown (exit 1 on failure). */
function runIfMain(mod, suite) {
  if (require.main !== mod) return;
  suite.main().then((r) => console.log(suite.toMarkdown(r)), (err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { ROOT, NIMIFY_ROOT, sleep, nimifyVersion, prng, pct, median, fmt, ms, runIfMain };

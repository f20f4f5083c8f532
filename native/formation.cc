#include "formation.h"

#include <algorithm>
#include <cmath>

namespace nimify {

namespace {

using Micros = std::chrono::duration<double, std::micro>;

SteadyTime::duration FromMicros(double us) { return std::chrono::duration_cast<SteadyTime::duration>(Micros(us)); }

}  // namespace

void Estimator::OnArrival(SteadyTime now, const BatchingConfig& config) {
  if (config.adaptive && last_arrival != SteadyTime{}) {
    const double gap = Micros(now - last_arrival).count();
    const double a = fixed_cost_us < 0 ? static_cast<double>(config.max_queue_delay_us) : fixed_cost_us;
    burst_share += ((gap < a ? 1.0 : 0.0) - burst_share) / 16;
    if (gap < a) burst_gap_us += (gap - burst_gap_us) / 16;
  }
  last_arrival = now;
}

void Estimator::OnBatch(int64_t rows, size_t jobs, double compute_us, bool batchable, int64_t computed_rows) {
  const double requested = static_cast<double>(rows > 0 ? rows : 1);
  // (With or without the adaptive delay: the inline path's lone-request rule reads it too.)
  if (batchable) {
    typical_rows += (requested - typical_rows) / 4;
    typical_jobs += (static_cast<double>(std::max<size_t>(jobs, 1)) - typical_jobs) / 4;
  }
  const double size = computed_rows > 0 ? static_cast<double>(computed_rows) : requested;
  max_rows = std::max(size, max_rows * 0.98);
  // Recent compute per row, for the inline decision and admission: an EWMA quick to forget a
  // session's first, allocating run (half its weight per batch).
  const double per_row = compute_us / size;
  row_cost_us = row_cost_us < 0 ? per_row : row_cost_us + (per_row - row_cost_us) / 2;
  // Decayed least squares of compute time against rows (with or without the adaptive delay: the
  // inline decision reads it too): the intercept is the fixed cost of a run, bounded by [1 µs,
  // the mean run time] so a noisy fit cannot make it absurd; the slope the cost of each row.
  const double x = size, y = compute_us, d = 0.95;
  s0 = s0 * d + 1;
  sx = sx * d + x;
  sy = sy * d + y;
  sxx = sxx * d + x * x;
  sxy = sxy * d + x * y;
  const double mean = sy / s0;
  double a = mean;
  slope_us = -1;
  const double den = s0 * sxx - sx * sx;
  if (den > 0.25 * s0 * s0) {  // the recent batch sizes vary (std dev > 0.5 rows)
    const double b = (s0 * sxy - sx * sy) / den;
    if (b > 0) {
      a = (sy - b * sx) / s0;
      slope_us = b;
    }
  }
  fixed_cost_us = std::clamp(a, 1.0, std::max(1.0, mean));
}

double Estimator::PredictComputeUs(int64_t rows) const {
  if (row_cost_us < 0) return -1;
  const double r = static_cast<double>(std::max<int64_t>(rows, 1));
  // The fit describes runs of the sizes recently seen, and a mix of lone requests and full
  // batches measures the cost per row better than an average per row does (the lone runs' fixed
  // cost inflates that). Past the largest recent batch, a slope fitted on small, flat-cost runs
  // could be near zero: growth is then assumed at least proportional to rows.
  if (slope_us > 0) {
    const double fit = fixed_cost_us + slope_us * r;
    const double seen = std::max(max_rows, 1.0);
    if (r <= seen) return fit;
    return std::max(fit, (fixed_cost_us + slope_us * seen) * r / seen);
  }
  return row_cost_us * r;
}

double Estimator::BurstPauseUs(const BatchingConfig& config) const {
  const double a = fixed_cost_us < 0 ? static_cast<double>(config.max_queue_delay_us) : fixed_cost_us;
  return std::min(a, std::max(8 * burst_gap_us, 20.0));
}

double Estimator::DelayUs(const BatchingConfig& config) const {
  const double delay = static_cast<double>(config.max_queue_delay_us);
  if (!config.adaptive) return delay;
  return burst_share < 0.5 || delay <= 0 ? 0 : BurstPauseUs(config);
}

double Estimator::PredictWaitUs(int64_t rows_ahead, size_t instances) const {
  if (row_cost_us < 0) return -1;
  return static_cast<double>(std::max<int64_t>(rows_ahead, 0)) * row_cost_us /
         static_cast<double>(std::max<size_t>(instances, 1));
}

namespace formation {

bool AdaptiveReady(const BatchingConfig& config, const Estimator& est, SteadyTime now, SteadyTime head_enqueued,
                   int64_t rows, SteadyTime* wake) {
  const double cap_us = static_cast<double>(config.max_queue_delay_us);
  if (cap_us <= 0 || est.burst_share < 0.5) return true;  // sparse arrivals: never wait
  // The pause that ends a burst: several times the usual gap between requests inside a burst
  // (never more than `a`, the most worth waiting for one more request). Until the batch holds
  // as many rows as recent batches did — a closed loop of C clients sends its C requests back
  // together — it is at least an eighth of the cap too, so that the JS thread being descheduled
  // for a few tens of µs (common on a busy machine) does not split a burst into a lone request
  // and the rest. (Measured on the 2-core VM: without that floor a closed loop of 64 tiny-MLP
  // requests ran ~25 % slower than a fixed 2 ms delay; see bench/throughput.js.)
  const double burst_pause = est.BurstPauseUs(config);
  const bool typical = rows >= std::max<double>(2, std::floor(est.typical_rows));
  const double pause = typical ? burst_pause : std::max(burst_pause, cap_us / 8);
  const SteadyTime cap = head_enqueued + FromMicros(cap_us);
  const SteadyTime quiet = est.last_arrival + FromMicros(pause);
  if (now >= cap || now >= quiet) return true;  // the cap passed, or the burst is over
  *wake = std::min(cap, quiet);
  return false;
}

}  // namespace formation
}  // namespace nimify

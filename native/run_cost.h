// RunCost: the inline decision's estimate for a model without a scheduler (RunJob::Submit,
// RunJob::RunDeferred; the scheduler has its own, formation.h Estimator). Pure: no ORT, no
// napi, unit-tested in test/native/run_cost_test.cc.
#pragma once

#include <atomic>
#include <cstdint>

namespace nimify {

// Recent cost of a session's runs without a scheduler, for the inline decision of RunJob::Submit:
// EWMAs of the run time and of the input elements it was measured on. Executor threads and the
// JS thread record without a lock (relaxed atomics: a lost or torn update only shifts a
// heuristic); the JS thread predicts.
struct RunCost {
  std::atomic<double> us{-1};  // -1: nothing measured yet
  std::atomic<double> elements{0};
  std::atomic<uint32_t> samples{0};

  void Record(double n, double run_us) {
    const double prev = us.load(std::memory_order_relaxed);
    const uint32_t k = samples.load(std::memory_order_relaxed);
    if (k < 2) samples.store(k + 1, std::memory_order_relaxed);
    // A session's first run is often many times slower than the next (ORT allocates and
    // initializes lazily): the second run's time replaces a larger first one instead of being
    // averaged with it, which would keep the model off the JS thread for several runs.
    if (prev < 0 || (k == 1 && run_us < prev)) {
      elements.store(n, std::memory_order_relaxed);
      us.store(run_us, std::memory_order_relaxed);
      return;
    }
    elements.store(0.8 * elements.load(std::memory_order_relaxed) + 0.2 * n, std::memory_order_relaxed);
    us.store(0.8 * prev + 0.2 * run_us, std::memory_order_relaxed);
  }
  // Predicted µs of a run on `n` input elements: the recent run time, scaled up for a larger
  // input; -1 when nothing was measured, or for an input more than 1.5 x the recent ones (how its
  // cost grows is not extrapolated: it runs off the JS thread, where it is measured).
  double Predict(double n) const {
    const double t = us.load(std::memory_order_relaxed);
    const double e = elements.load(std::memory_order_relaxed);
    if (t < 0 || n > 1.5 * e + 16) return -1;
    return n > e && e > 0 ? t * (n / e) : t;
  }
  // Whether a run on `n` input elements is predicted to take at most `limit` µs.
  bool Fits(double n, double limit) const {
    const double predicted = Predict(n);
    return predicted >= 0 && predicted <= limit;
  }
};

}  // namespace nimify

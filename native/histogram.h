// LogHistogram: a fixed-size histogram of microsecond durations with logarithmic buckets
// (8 per power of two, so any reported percentile is within ~9 % of the true value). Used for
// the scheduler's queue and compute time percentiles. Not thread-safe: the scheduler updates
// and reads it under its mutex.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace nimify {

class LogHistogram {
 public:
  void Add(double us) {
    buckets_[Index(us)]++;
    count_++;
    sum_ += us;
  }
  // Zeroes every bucket (Model.resetStats(), after warmup).
  void Reset() {
    buckets_.fill(0);
    count_ = 0;
    sum_ = 0;
  }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // The q-quantile (0..1), as the geometric middle of the bucket that holds it; 0 when empty.
  double Quantile(double q) const {
    if (count_ == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= rank && buckets_[i] > 0) {
        if (i == 0) return 0.5;
        return std::exp2((static_cast<double>(i - 1) + 0.5) / kPerOctave);
      }
    }
    return std::exp2(static_cast<double>(kBuckets - 1) / kPerOctave);
  }

 private:
  static constexpr int kPerOctave = 8;
  static constexpr size_t kBuckets = 8 * 40 + 1;  // bucket 0: < 1 µs; then up to 2^40 µs
  static size_t Index(double us) {
    if (!(us >= 1)) return 0;
    const double i = std::floor(std::log2(us) * kPerOctave) + 1;
    return i >= kBuckets - 1 ? kBuckets - 1 : static_cast<size_t>(i);
  }
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace nimify

// Instance: one ORT session of a model that a scheduler runs batches on, with its own staging
// memory. A model loaded with `instances: N` has N of them, each driven by its own scheduler
// thread, so N batches run concurrently.
//
// This is the seam for the GPU (SPEC C3): a CUDA instance will own a stream, device buffers and
// pinned staging, and override Execute (bind inputs/outputs with IoBinding on its stream); the
// scheduler only ever calls Execute.
//
// Threading: Execute runs on the instance's own scheduler thread, one batch at a time, so the
// staging memory needs no lock; the scheduler's inline instance (inline_below_us) runs only on
// the JS thread. The SessionCore is shared (immutable, thread-safe Run).
#pragma once

#include <chrono>
#include <memory>

#include "batch.h"
#include "session_core.h"

namespace nimify {

class Instance {
 public:
  struct Timing {
    double input_us = 0, infer_us = 0, output_us = 0;  // gather, ORT Run, scatter
    // When the batch started, its gather ended, its run ended and its scatter ended (the same
    // clock readings the durations come from; per-request tracing reports them: RunJob::Trace).
    std::chrono::steady_clock::time_point start{}, gathered{}, ran{}, end{};
  };

  Instance(std::shared_ptr<SessionCore> core, std::unique_ptr<Staging> staging)
      : core_(std::move(core)), staging_(std::move(staging)) {}
  virtual ~Instance() = default;

  // Runs the batch on this instance's session. Afterwards every job holds its outputs or a
  // failure (a failure of the run itself is given to every job in the batch). `stats` is the
  // model's primary session, whose counters the model reports.
  virtual void Execute(Batch& batch, SessionCore& stats, Timing* timing, CopyCounts* counts);

 protected:
  std::shared_ptr<SessionCore> core_;
  std::unique_ptr<Staging> staging_;
};

}  // namespace nimify

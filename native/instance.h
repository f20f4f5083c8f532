// Instance: one ORT session of a model that a scheduler runs batches on, with its own staging
// memory. A model loaded with `instances: N` has N of them, each driven by its own scheduler
// thread, so N batches run concurrently.
//
// On a GPU (SPEC C3) an instance gathers into pinned staging (MakeStaging) and runs its batches
// through IoBinding (BoundRun): the upload is one copy from page-locked memory (ORT makes it,
// synchronously, when the batch is bound), and results come back to
// pinned memory or stay on the device (DeviceTensor). Each instance is its own ORT session, so
// the CUDA provider gives each its own stream: N instances can overlap copies and compute (by
// design; unmeasured on hardware). The
// scheduler only ever calls Execute.
//
// Threading: Execute runs on the instance's own scheduler thread, one batch at a time, so the
// staging memory needs no lock; the scheduler's inline instance (inline_below_us) runs only on
// the JS thread. The SessionCore is shared (immutable, thread-safe Run).
#pragma once

#include <chrono>
#include <memory>

#include "batch.h"
#include "io_binding.h"
#include "session_core.h"

namespace nimify {

class Instance {
 public:
  // Most sizes an instance keeps fixed buffers (and, on CUDA, a captured graph) for.
  static constexpr size_t kMaxFixedSizes = 16;

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
  BoundRun bound_;  // this instance's IoBinding, reused batch after batch (its thread only)

 private:
  // Fixed buffers (SessionCore::fixed_buffers): per batch size, device tensors for every model
  // input and output that every batch of that size runs on — the addresses a captured CUDA
  // graph replays — and pinned host tensors the outputs are downloaded into. Made on a size's
  // first batch, kept for the instance's life (use batching.padToPreferred to bound the sizes).
  // Instance thread only.
  // A size's first runs may capture its CUDA graph (ORT warms up, then captures): they run
  // holding the capture lock alone (CaptureLock, device_memory.h).
  static constexpr int kCaptureRuns = 3;
  struct Fixed {
    int graph_id = 0;  // the CUDA graph captured for this size (run option gpu_graph_id, >= 1)
    int runs = 0;      // runs on these buffers so far
    std::vector<OrtValue*> inputs, outputs, host_outputs;
    ~Fixed();
  };
  // The buffers for runs of `rows` (made on first use). `gathered`: a gathered batch, whose
  // rows replace dim 0 everywhere; else only where the model leaves dim 0 dynamic (0 rows: no
  // input has a dynamic first dim, every buffer has its declared shape).
  Fixed* FixedFor(int64_t rows, bool gathered, Failure* f);
  // Runs a gathered batch (`inputs` over the staging) on the fixed buffers of its size.
  Failure ExecuteFixed(Batch& batch, SessionCore& stats, const std::vector<OrtValue*>& inputs, Timing* timing,
                       CopyCounts* counts);
  // Runs one job that is not gathered (a model without a batch dim, a DeviceTensor feed) on the
  // fixed buffers of its size: its inputs uploaded from where they are, its results copied out.
  Failure ExecuteFixedAlone(RunJob* job, OrtRunOptions* run_options, SessionCore& stats, Timing* timing);
  // The run itself, on `fixed` (selecting its CUDA graph), counted in `stats`.
  Failure RunFixed(Fixed* fixed, OrtRunOptions* run_options, SessionCore& stats, Timing* timing);
  // By (rows, gathered): a lone job's buffers keep the declared first dims a gathered batch's
  // do not. At most kMaxFixedSizes.
  std::vector<std::pair<std::pair<int64_t, bool>, std::unique_ptr<Fixed>>> fixed_;
};

}  // namespace nimify

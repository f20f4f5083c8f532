// BoundRun: one OrtSession run through ORT's IoBinding, the device path's way to run (SPEC C3):
// inputs bound where they are (pinned staging, host memory, or the device itself: ORT uploads
// what is not on the session's device), every output bound to one memory — the session's device
// (device-resident results, DeviceTensor) or its host side (pinned on a GPU: the download is one
// copy, then the batch is scattered from it).
//
// Ownership and threads: a BoundRun owns its OrtIoBinding, made on first use for one session
// and reused for every later run of it. It is used by one thread at a time (an Instance's own
// scheduler thread, or the thread executing a lone job) and holds no tensor between runs.
#pragma once

#include <onnxruntime_c_api.h>

#include "errors.h"
#include "session_core.h"

namespace nimify {

class BoundRun {
 public:
  BoundRun() = default;
  BoundRun(const BoundRun&) = delete;
  BoundRun& operator=(const BoundRun&) = delete;
  ~BoundRun();

  // Runs `core` with `inputs` (one per model input, in model order) and fetches the outputs
  // named `output_names` into `output_memory`. On success `outputs[o]` are new OrtValues the
  // caller owns; on failure they are null.
  Failure Run(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
              const char* const* output_names, size_t n_out, const OrtMemoryInfo* output_memory,
              OrtValue** outputs);
  // The same, writing into `outputs` (one per name, allocated by the caller, which keeps them):
  // fixed buffers, whose addresses a captured CUDA graph replays on.
  Failure RunInto(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
                  const char* const* output_names, size_t n_out, OrtValue* const* outputs);

 private:
  // Binds inputs and outputs (to `output_memory`, or to `preallocated` when given) and runs.
  Failure BindAndRun(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
                     const char* const* output_names, size_t n_out, const OrtMemoryInfo* output_memory,
                     OrtValue* const* preallocated);

  OrtIoBinding* binding_ = nullptr;
  const OrtSession* session_ = nullptr;  // the session binding_ was made for
};

}  // namespace nimify

// RunJob: one OrtSession::Run with its feeds and fetches, used by infer() (queued on the
// threadpool through AsyncJob) and by inferSync() (executed inline on the calling thread).
//
// Ownership: the job owns the OrtValues it created (wrappers over borrowed JS memory, and the
// outputs ORT allocates until they are handed to JS), its OrtRunOptions, and a shared_ptr to the
// SessionCore. Cancel() may race Execute(): it only calls RunOptionsSetTerminate, which ORT
// documents as safe from another thread, and records the code in an atomic.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "async_job.h"
#include "errors.h"
#include "session_core.h"

namespace nimify {

class RunJob : public AsyncJob {
 public:
  // Main thread. JS arguments: (inputNames: string[], inputs: Tensor[], outputNames: string[],
  // outputs: (Tensor|null)[]). Validates everything against the model; on failure throws a JS
  // error and returns null. `borrow` is false for inferSync, where no GC can run mid-call.
  static std::unique_ptr<RunJob> Prepare(const Napi::CallbackInfo& info, std::shared_ptr<SessionCore> core,
                                         bool borrow);
  ~RunJob() override;

  // Main thread: registers the job under `id` so Session.cancel(id) can reach it.
  void MakeCancellable(Napi::Env env, double id);
  void Cancel(const char* code) override;
  void OnEnvTeardown() override { Cancel(code::kAborted); }

  void Execute() override;  // any thread, no JS
  // Main thread: the results array (null where the caller supplied the output buffer), or an
  // empty value with a pending JS exception.
  Napi::Value Results(Napi::Env env);

 protected:
  void Complete(Napi::Env env, Napi::Promise::Deferred& deferred) override;

 private:
  RunJob() = default;
  Failure TakeFailure();

  std::shared_ptr<SessionCore> core_;
  std::vector<const char*> input_names_, output_names_;  // point into core_'s IoInfo names
  std::vector<OrtValue*> inputs_, outputs_;
  std::vector<bool> preallocated_;
  OrtRunOptions* run_options_ = nullptr;
  std::atomic<const char*> cancel_code_{nullptr};
  Failure failure_;
};

}  // namespace nimify

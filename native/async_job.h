// AsyncJob: native work queued on the libuv threadpool that settles one JS promise. Used for
// model loading (rare, long); inference uses RunJob on nimify's own Executor instead.
//
// Threads: Execute() runs on a threadpool thread and must not touch JS. Complete() runs on the
// env's JS thread. Lifetime: the job owns itself from Queue() until completion, where it deletes
// itself. JS values whose memory it borrows are held in `borrowed_` until then; if one of them
// was detached meanwhile (transferred away), the promise rejects with BUFFER_DETACHED instead of
// Complete() running (see Borrowed).
#pragma once

#include <napi.h>

#include <memory>

#include "env_state.h"

namespace nimify {

class AsyncJob {
 public:
  virtual ~AsyncJob() = default;
  AsyncJob(const AsyncJob&) = delete;
  AsyncJob& operator=(const AsyncJob&) = delete;

  // Main thread. Queues the job and returns its promise; on failure to queue, deletes the job
  // and throws.
  static Napi::Value Queue(Napi::Env env, AsyncJob* job, const char* resource_name);

 protected:
  AsyncJob() = default;
  virtual void Execute() = 0;
  // Main thread, env alive. Resolves or rejects `deferred`.
  virtual void Complete(Napi::Env env, Napi::Promise::Deferred& deferred) = 0;

  Borrowed borrowed_;

 private:
  static void ExecuteCallback(napi_env env, void* data);
  static void CompleteCallback(napi_env env, napi_status status, void* data);

  std::shared_ptr<EnvState> state_;
  napi_async_work work_ = nullptr;
  std::unique_ptr<Napi::Promise::Deferred> deferred_;
};

}  // namespace nimify

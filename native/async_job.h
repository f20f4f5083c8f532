// AsyncJob: native work queued on the libuv threadpool that settles one JS promise.
//
// Threads: Execute() runs on a threadpool thread and must not touch JS. Complete() runs on the
// env's JS thread. Lifetime: the job owns itself from Queue() until completion, where it deletes
// itself. JS values whose memory the job borrows (input typed arrays, model bytes) are held by
// strong references in `borrowed_` until completion, so dropping every JS reference mid-run and
// forcing GC cannot free them early.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

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

  // Main thread, from the env cleanup hook: make the work finish as soon as it can.
  virtual void OnEnvTeardown() {}
  // Main thread: abort/timeout requested by JS. Default: not cancellable.
  virtual void Cancel(const char* /*code*/) {}

 protected:
  AsyncJob() = default;
  void Borrow(Napi::Env env, Napi::Value value);
  // Main thread: releases borrowed references of a job that will never be queued.
  void DropBorrowed(Napi::Env env);

  virtual void Execute() = 0;
  // Main thread, env alive. Resolves or rejects `deferred`.
  virtual void Complete(Napi::Env env, Napi::Promise::Deferred& deferred) = 0;

  std::shared_ptr<EnvState> state_;
  double cancel_id_ = 0;  // > 0 when registered in state_->cancellable

 private:
  static void ExecuteCallback(napi_env env, void* data);
  static void CompleteCallback(napi_env env, napi_status status, void* data);

  std::vector<napi_ref> borrowed_;
  napi_async_work work_ = nullptr;
  std::unique_ptr<Napi::Promise::Deferred> deferred_;
};

}  // namespace nimify

// Session: the JS-visible wrapper of a SessionCore (class `Session` of the addon).
//
// JS holds the wrapper; the wrapper holds one shared_ptr to the core (and, for a model loaded
// with batching or several instances, to its Scheduler, which owns the other instances).
// release() drops them (the TypeScript Model calls it after draining in-flight work); in-flight
// jobs keep their own references, so the OrtSession is freed by whichever finishes last.
#pragma once

#include <napi.h>

#include <memory>

#include "scheduler.h"
#include "session_core.h"

namespace nimify {

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env);
  // binding.createSession(source: string | Uint8Array, config: object): Promise<Session>.
  static Napi::Value Create(const Napi::CallbackInfo& info);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<SessionCore> core,
                                 std::shared_ptr<Scheduler> scheduler);
  // binding.poll(keepPolling: boolean): number. Settles every finished infer() of this env and
  // returns how many are still pending; see src/runtime/completions.ts.
  static Napi::Value Poll(const Napi::CallbackInfo& info);

  explicit Session(const Napi::CallbackInfo& info);

 private:
  Napi::Value Describe(const Napi::CallbackInfo& info);
  // (RunJob::Prepare's arguments..., runId, priority, timeoutUs) -> Promise
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value RunSync(const Napi::CallbackInfo& info);  // (RunJob::Prepare's arguments) -> results
  Napi::Value Cancel(const Napi::CallbackInfo& info);   // (runId, code) -> boolean
  Napi::Value Close(const Napi::CallbackInfo& info);    // () -> settles queued requests with DISPOSED
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);    // () -> counters of SessionStats (+ the scheduler's)
  // () -> undefined: zeroes every cumulative counter and histogram (SessionStats, the request
  // outcomes, the scheduler's figures); the repository calls it after warmup. JS thread.
  Napi::Value ResetStats(const Napi::CallbackInfo& info);

  struct Parts {
    std::shared_ptr<SessionCore> core;
    std::shared_ptr<Scheduler> scheduler;
  };
  std::shared_ptr<SessionCore> core_;
  std::shared_ptr<Scheduler> scheduler_;
};

}  // namespace nimify

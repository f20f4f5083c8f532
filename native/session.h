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
  struct Parts;
  // session.run(RunJob::Prepare's arguments..., runId, priority, timeoutUs) -> Promise: not a
  // prototype method but a function of each session's own (made by the constructor) whose data
  // is a copy of the session's Parts (run_target_), so that a call skips napi_unwrap (~4 % of
  // the JS thread's work per request for a tiny model at 64 in flight). JS thread.
  static napi_value RunBound(napi_env env, napi_callback_info cbinfo);
  static Napi::Value Run(const Napi::CallbackInfo& info, const Parts& target);
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
  // The same parts, shared with this session's `run` function (RunBound's data, freed by that
  // function's finalizer): it may outlive this object, so it holds the parts, never the
  // Session. Release() empties it with core_ and scheduler_. JS thread only.
  std::shared_ptr<Parts> run_target_;
};

}  // namespace nimify

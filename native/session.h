// Session: the JS-visible wrapper of a SessionCore (class `Session` of the addon).
//
// JS holds the wrapper; the wrapper holds one shared_ptr to the core. release() drops it (the
// TypeScript Model calls it after draining in-flight work); in-flight jobs keep their own
// reference, so the OrtSession is freed by whichever finishes last, on whatever thread.
#pragma once

#include <napi.h>

#include <memory>

#include "session_core.h"

namespace nimify {

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env);
  // binding.createSession(source: string | Uint8Array, config: object): Promise<Session>.
  static Napi::Value Create(const Napi::CallbackInfo& info);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<SessionCore> core);
  // binding.poll(keepPolling: boolean): number. Settles every finished infer() of this env and
  // returns how many are still pending; see src/completions.ts.
  static Napi::Value Poll(const Napi::CallbackInfo& info);

  explicit Session(const Napi::CallbackInfo& info);

 private:
  Napi::Value Describe(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);      // (RunJob::Prepare's arguments..., runId) -> Promise
  Napi::Value RunSync(const Napi::CallbackInfo& info);  // (RunJob::Prepare's arguments) -> results
  Napi::Value Cancel(const Napi::CallbackInfo& info);   // (runId, code) -> boolean
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);    // () -> counters of SessionStats

  std::shared_ptr<SessionCore> core_;
};

}  // namespace nimify

// Per-environment (main thread or one worker_thread) state of the addon.
//
// Ownership: AddonData (napi instance data, one per env) owns a shared_ptr<EnvState>; every
// queued AsyncJob holds another, so a job completing during env teardown still finds it.
// Threading: touched only on the env's own JS thread (job creation, completion, cleanup hook),
// so it needs no lock.
#pragma once

#include <napi.h>

#include <memory>
#include <unordered_map>
#include <unordered_set>

namespace nimify {

class AsyncJob;

struct EnvState {
  // Set by the env cleanup hook. From then on completions free native memory without calling
  // into JS: the env is being destroyed.
  bool shutting_down = false;
  std::unordered_set<AsyncJob*> active;              // queued or running jobs
  std::unordered_map<double, AsyncJob*> cancellable;  // run id -> job, for abort/timeout
};

struct AddonData {
  std::shared_ptr<EnvState> state = std::make_shared<EnvState>();
  Napi::FunctionReference session_ctor;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace nimify

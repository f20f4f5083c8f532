// Per-environment (main thread or one worker_thread) state of the addon.
//
// Ownership: AddonData (napi instance data, one per env) owns a shared_ptr<EnvState>; the env
// cleanup hook and every queued job hold another, so a job finishing during env teardown still
// finds it. Threading: everything but the block marked "shared" is touched only on the env's own
// JS thread (job creation, completion, cleanup hook) and needs no lock.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nimify {

class AsyncJob;
class DeferredWakes;
class RunJob;
class Scheduler;

struct EnvState {
  // Set by the env cleanup hook. From then on completions free native memory without calling
  // into JS: the env is being destroyed.
  bool shutting_down = false;
  std::unordered_set<AsyncJob*> loads;              // queued or running model loads
  std::unordered_set<RunJob*> runs;                 // submitted to the Executor, not yet delivered
  std::unordered_map<double, RunJob*> cancellable;  // run id -> job, for abort/timeout
  std::unordered_set<Scheduler*> schedulers;         // live schedulers, shut down by env teardown
  // Wakes this env's JS thread to deliver finished RunJobs (carries no data: the JS thread
  // drains `done`). Referenced (keeps the loop alive) only while `runs` is non-empty, so an
  // idle process can exit.
  napi_threadsafe_function completions = nullptr;
  // Wakes scheduler threads at the end of the loop turn (deferred_wake.h); owned by itself,
  // nullptr once the env's async cleanup hook has run (or if it could not be created).
  DeferredWakes* wakes = nullptr;

  // shared: executor threads and the JS thread. `executing` counts jobs handed to the Executor
  // that have not yet been posted back; env teardown waits for it to reach zero so that ORT
  // never reads JS memory after the isolate frees it.
  std::mutex mu;
  std::condition_variable idle;
  size_t executing = 0;
  std::vector<RunJob*> done;  // finished, waiting for the JS thread
  bool polling = false;       // the JS thread drains `done` every loop turn: no wake-up needed
  bool wake_pending = false;  // a wake-up is queued and not yet handled
};

struct AddonData {
  std::shared_ptr<EnvState> state = std::make_shared<EnvState>();
  Napi::FunctionReference session_ctor;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// JS memory borrowed by native work: strong references held until the work completes, so
// dropping every JS reference mid-run and forcing GC cannot free it early. Main thread only.
class Borrowed {
 public:
  void Add(napi_env env, napi_value value) {
    napi_ref ref = nullptr;
    if (napi_create_reference(env, value, 1, &ref) == napi_ok) refs_.push_back(ref);
  }
  void Release(napi_env env) {
    for (napi_ref r : refs_) napi_delete_reference(env, r);
    refs_.clear();
  }
  // During env teardown the env frees its references itself.
  void Forget() { refs_.clear(); }

 private:
  std::vector<napi_ref> refs_;
};

}  // namespace nimify

// Per-environment (main thread or one worker_thread) state of the addon.
//
// Ownership: shared. AddonData (napi instance data, one per env), the env cleanup hook, each of
// the env's two threadsafe functions (`completions`, DeferredWakes) and every queued job hold a
// shared_ptr<EnvState>, so whichever of them goes last frees it: a job finishing during env
// teardown still finds it. The threadsafe functions' references are released by their
// finalizers at env teardown; Node runs a finalizer *before* it calls the callback, with a null
// env, for each message still queued, so those calls touch neither the context nor the state
// (RunJob::Deliver, DeferredWakes::OnMessage). Threading: everything but the block marked
// "shared" is touched only on the env's own JS thread (job creation, completion, cleanup hook)
// and needs no lock.
#pragma once

#include <napi.h>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nimify {

class DeferredWakes;
class RunJob;
class Scheduler;

struct EnvState {
  // Set by the env cleanup hook. From then on completions free native memory without calling
  // into JS: the env is being destroyed.
  bool shutting_down = false;
  // Jobs attached (RunJob::Attach: submitted to the Executor or a scheduler) and not yet
  // settled: an intrusive list through the jobs (RunJob::run_prev_/run_next_), so that
  // attaching allocates nothing.
  RunJob* runs = nullptr;
  size_t run_count = 0;
  std::unordered_map<double, RunJob*> cancellable;  // run id -> job, for abort/timeout
  std::unordered_set<Scheduler*> schedulers;         // live schedulers, shut down by env teardown
  // Settled RunJobs kept for reuse (RunJob::Recycle; bounded), freed by the env cleanup hook
  // (RunJob::TeardownEnv), after which nothing is recycled.
  std::vector<RunJob*> spare_jobs;
  // Wakes this env's JS thread to deliver finished RunJobs (carries no data: the JS thread
  // drains `done`). Referenced (keeps the loop alive) only while `runs` is non-empty, so an
  // idle process can exit. Its context is a shared_ptr to this state, freed by its finalizer
  // (RunJob::CreateCompletionChannel).
  napi_threadsafe_function completions = nullptr;
  // Wakes scheduler threads at the end of the loop turn (deferred_wake.h); owned by itself
  // (freed by its threadsafe function's finalizer, which sets this back to nullptr), null if it
  // could not be created.
  DeferredWakes* wakes = nullptr;
  // Requests run inline alone inside infer() (DeferredWakes::MarkLoneRun): how many of them have
  // not yet reached the microtask that follows their settlement (`lone_awaiting`), and whether
  // JS is now inside the microtasks that delivered one (`lone_delivered`, until the trailing
  // microtasks `lone_trailing` find the chain quiet). All reset by each DeferredWakes message (a
  // later loop callback: every earlier microtask has run).
  uint32_t lone_awaiting = 0;
  uint32_t lone_trailing = 0;
  bool lone_delivered = false;
  // The env's loop turn as schedulers see it: from the first Submit after a DeferredWakes
  // message to the next one (which clears turn_open). Bounds the lone runs of a turn.
  bool turn_open = false;
  std::chrono::steady_clock::time_point turn_started{};
  // Runs of models without a scheduler that could run inline but not now (RunJob::Submit): the
  // next DeferredWakes message runs them (RunJob::RunDeferred). Attached jobs (counted in
  // `executing`); TeardownEnv frees what is left.
  std::vector<RunJob*> lone_deferred;

  // shared: executor threads and the JS thread. `executing` counts jobs handed to the Executor
  // that have not yet been posted back; env teardown waits for it to reach zero so that ORT
  // never reads JS memory after the isolate frees it. It is decreased (and `idle` notified)
  // under `mu`; it is increased without it, on the JS thread only (RunJob::Attach) — the thread
  // that waits on `idle`, so no wait can miss an increase.
  std::mutex mu;
  std::condition_variable idle;
  std::atomic<size_t> executing{0};
  std::vector<RunJob*> done;  // finished, waiting for the JS thread
  // JS thread only (not under `mu`): DrainCompleted swaps it with `done`, so the two vectors
  // trade their capacity and neither side allocates per drain.
  std::vector<RunJob*> drain_scratch;
  bool polling = false;       // the JS thread drains `done` every loop turn: no wake-up needed
  bool wake_pending = false;  // a wake-up is queued and not yet handled
};

struct AddonData {
  std::shared_ptr<EnvState> state = std::make_shared<EnvState>();
  Napi::FunctionReference session_ctor;
  Napi::FunctionReference device_tensor_ctor;  // DeviceTensor (device_tensor.h): made by results, checked on feeds
  // DeferredWakes::MarkLoneRun: the global queueMicrotask, and the three native functions it
  // queues one after another. Their data is the raw `state`: valid whenever they run, since
  // microtasks run only while the env is alive, and so is this struct, which holds `state`.
  Napi::FunctionReference queue_microtask;
  Napi::FunctionReference lone_delivered;
  Napi::FunctionReference lone_trailing;
  // Settlement (settlement.h): the settler src/runtime/settle.ts registers, the arrays it is
  // called with, and whether a Settlement is using them now.
  Napi::FunctionReference settler;
  Napi::ObjectReference settle_entries;  // Int32Array, 3 × Settlement::kCapacity
  Napi::ObjectReference settle_values;   // Array
  Napi::ObjectReference settle_data;     // ArrayBuffer, Settlement::kDataBytes
  bool settling = false;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// JS memory borrowed by native work: strong references held until the work completes, so
// dropping every JS reference mid-run and forcing GC cannot free it early. Main thread only.
//
// A reference keeps the JS object alive, not its memory where it is: N-API can neither make an
// ArrayBuffer non-detachable nor hold its backing store (V8's ArrayBuffer::GetBackingStore could,
// at the price of N-API's ABI stability: one addon build per Node version), so ArrayBuffer.prototype.transfer(),
// postMessage(v, [buf]) or structuredClone(v, { transfer }) can still detach a borrowed buffer
// and hand its memory elsewhere (or free it) mid-run. FirstDetached() lets the owner find that
// out when the work completes and discard the result instead of returning it (RunJob::Settle,
// AsyncJob). Each reference carries a tag for that report; kUnchecked ones are never looked at
// (memory no caller can reach, such as output buffers TypeScript allocated for the call).
class Borrowed {
 public:
  static constexpr int32_t kUnchecked = INT32_MIN;
  static constexpr int32_t kNone = INT32_MIN + 1;  // FirstDetached(): nothing was detached

  // False when the reference could not be created: the caller must not start the work (the
  // memory would be unpinned). Also remembered: ok() stays false.
  bool Add(napi_env env, napi_value value, int32_t tag = 0) {
    napi_ref ref = nullptr;
    if (napi_create_reference(env, value, 1, &ref) != napi_ok) {
      failed_ = true;
      return false;
    }
    refs_.push_back({ref, tag});
    return true;
  }
  bool ok() const { return !failed_; }
  // JS thread, env alive: the tag of the first checked reference whose buffer (a TypedArray's
  // or DataView's ArrayBuffer, or an ArrayBuffer) is detached now, else kNone.
  int32_t FirstDetached(napi_env env) const {
    for (const Entry& e : refs_) {
      if (e.tag == kUnchecked) continue;
      napi_value v = nullptr, buffer = nullptr;
      bool is_ab = false, detached = false;
      if (napi_get_reference_value(env, e.ref, &v) != napi_ok || v == nullptr) continue;
      if (napi_is_arraybuffer(env, v, &is_ab) == napi_ok && is_ab) {
        buffer = v;
      } else if (napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok &&
                 napi_get_dataview_info(env, v, nullptr, nullptr, &buffer, nullptr) != napi_ok) {
        continue;
      }
      if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached) return e.tag;
    }
    return kNone;
  }
  bool empty() const { return refs_.empty(); }
  void Release(napi_env env) {
    for (const Entry& e : refs_) napi_delete_reference(env, e.ref);
    refs_.clear();
  }
  // During env teardown the env frees its references itself; RunJob::Reset (after Release) too.
  void Forget() {
    refs_.clear();
    failed_ = false;
  }

 private:
  struct Entry {
    napi_ref ref;
    int32_t tag;
  };
  std::vector<Entry> refs_;
  bool failed_ = false;
};

}  // namespace nimify

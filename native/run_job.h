// RunJob: one OrtSession::Run with its feeds and fetches. infer() submits it to the Executor and
// gets it back on the JS thread through the env's completion threadsafe function; inferSync()
// executes it inline on the calling thread.
//
// Ownership: the job owns the OrtValues it created (wrappers over borrowed JS memory or over its
// own copy of the inputs, and the outputs ORT allocates until they are handed to JS), its
// OrtRunOptions, and a shared_ptr to the SessionCore, so dispose() or GC of the Session wrapper
// cannot free the OrtSession under a run.
//
// Input memory of an async run (infer()): when the numeric inputs total at most
// kOwnedInputBytes (2 KiB), Prepare copies them into memory the job owns (`owned_inputs_`), so
// JS may transfer, free or overwrite its buffers the moment infer() returns without affecting
// the run, and the job holds no reference on them. Larger inputs, and output buffers the caller supplied,
// stay borrowed (referenced in `borrowed_`, read and written in place): a reference cannot stop
// ArrayBuffer.prototype.transfer() or postMessage(v, [buf]) from detaching one mid-run, so the
// job checks them when it settles on the JS thread and rejects with BUFFER_DETACHED rather than
// return results computed from (or written into) memory that moved. What no check can undo:
// memory freed mid-run (transfer(newLength), or a transferred buffer collected elsewhere) may
// still be read or written by ORT until the run ends (README, "Memory: who owns what").
// inferSync() borrows everything: no JS runs while it does.
//
// Cancel() may race Run(): it only calls RunOptionsSetTerminate, which is safe from another
// thread (ORT's flag is atomic), and records the reason in an atomic.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "env_state.h"
#include "errors.h"
#include "executor.h"
#include "session_core.h"
#include "tensor_io.h"

namespace nimify {

class Scheduler;
struct Batch;

// Everything the scheduler needs to batch a job, computed once in Prepare (batching models only).
struct BatchKey {
  // rows: the job's size on the batch dim (dim 0 of every input), or -1 when it cannot share a
  // run (inputs disagree on dim 0, an empty tensor, strings): such a job runs alone.
  int64_t rows = -1;
  // Non-batch dims of every input (rank, dims[1..]) and the fetched output indices: two jobs
  // share a run only when their keys are equal.
  std::vector<int64_t> key;
};

class RunJob : public Task {
 public:
  // How a job will run, which decides what Prepare builds (replaces three unnamed booleans):
  //   kSync      inferSync(): runs on the calling thread before the call returns. Borrows every
  //              buffer without a reference (no JS can run meanwhile); OrtValues + run options.
  //   kExecutor  infer() on a model without a scheduler: small inputs copied, the rest
  //              referenced; OrtValues + its own run options (Cancel terminates them).
  //   kQueued    infer() through a Scheduler that does not batch (instances only): numeric
  //              tensors are kept as checked TensorViews, no OrtValues or run options — one that
  //              runs alone gets them from Materialize() on its instance thread, with its
  //              batch's run options.
  //   kBatched   kQueued, plus the job's BatchKey (the model has a batch dim).
  enum class Route : uint8_t { kSync, kExecutor, kQueued, kBatched };

  // Owning handle. Jobs are recycled, not freed: a JS-thread free list per env (EnvState's
  // `spare_jobs`) keeps their vectors' capacity and input copy buffer, so a request allocates
  // nothing native in the steady state (Prepare was ~8 malloc/free pairs per request).
  struct Recycler {
    void operator()(RunJob* job) const;
  };
  using Ptr = std::unique_ptr<RunJob, Recycler>;

  // Main thread. JS arguments:
  //   inputData: (TypedArray | string[])[]   one per model input, in model order
  //   outputData: (TypedArray | null)[]      per fetched output: a buffer ORT writes into, or
  //                                          null: ORT allocates (the copy path)
  //   spec: Float64Array                     [nIn, nOut, predictedMask, outputIndex x nOut,
  //                                          per input: rank, dims..., per output: rank (-1 with
  //                                          no buffer), dims...]. predictedMask bit i: output
  //                                          i's buffer came from a predicted shape and may be
  //                                          dropped if that shape turns out wrong.
  // Validates everything that matters for memory safety against the model; on failure throws a
  // JS error and returns null.
  static Ptr Prepare(const Napi::CallbackInfo& info, std::shared_ptr<SessionCore> core, Route route);
  ~RunJob() override;

  // Main thread: hands the job to the Executor and returns its promise. `cancel_id` > 0 makes it
  // reachable from Session.cancel(id).
  static Napi::Value Submit(Napi::Env env, Ptr job, double cancel_id);
  // Main thread: creates the job's promise and registers it with the env (runs, cancellable,
  // executing) — the bookkeeping shared by Submit and Scheduler::Submit. Returns an empty value
  // (with a JS exception pending) on failure; the job is then still the caller's.
  Napi::Value Attach(Napi::Env env, double cancel_id);
  // Any thread: hands finished jobs to their env's JS thread under one lock with at most one
  // wake-up, however many there are (a batch completes once, not once per request). The env
  // takes ownership of the jobs.
  static void PostCompleted(RunJob* const* jobs, size_t n);
  // Main thread: abort/timeout (or env teardown). Idempotent; the first reason wins.
  void Cancel(const char* code);
  // Creates the env's completion channel (called once per env from Init). The channel holds a
  // shared_ptr to `state` as its context, released by its finalizer at env teardown. Node runs
  // that finalizer before it calls Deliver, with a null env, for the wake-ups still queued:
  // Deliver touches the context only when it has an env, so the context is valid for every use
  // (the same rule as DeferredWakes).
  static napi_threadsafe_function CreateCompletionChannel(Napi::Env env, const std::shared_ptr<EnvState>& state);
  // The env cleanup hook: cancels every run of the env and waits until none is executing.
  static void TeardownEnv(EnvState* state);
  // JS thread: settles the promises of every finished job (one call per wake-up or poll, however
  // many jobs finished). `polling` >= 0 also tells executor threads whether the JS thread is
  // polling (1: skip wake-ups) or not (0); -1 leaves it. Returns the number of runs still pending.
  static size_t DrainCompleted(napi_env env, EnvState* state, int polling);
  // JS thread, inside a callback scope: settles jobs that were run (or dropped) on the JS thread
  // itself, without the round trip through `done` and a wake-up.
  static void CompleteOnJsThread(napi_env env, RunJob* const* jobs, size_t n);

  void Execute() { ExecuteOn(*core_, run_options_); }  // any thread, no JS
  // JS thread: resolves or rejects the job's promise, drops its references and recycles it.
  static void Settle(Napi::Env env, EnvState* state, RunJob* job);
  // Runs the job on `core`, which must be a session of the same model (a scheduler instance),
  // with `run_options` (a scheduled job runs with its batch's).
  void ExecuteOn(SessionCore& core, OrtRunOptions* run_options);
  // Any thread: builds the OrtValues a deferred job left as views.
  Failure Materialize();
  // Any thread: the job fails with `f` unless it was cancelled first.
  void Fail(const Failure& f) { failure_ = f; }
  const char* cancel_code() const { return cancel_code_.load(); }
  Scheduler* scheduler() const { return scheduler_.get(); }
  // Main thread: the results array (null where the caller supplied the output buffer; null
  // instead of the array when that holds for every output), or an
  // empty value with a pending JS exception (the run's failure; BUFFER_DETACHED when a borrowed
  // input or a supplied output buffer was detached while the job was in flight).
  Napi::Value Results(Napi::Env env);
  // Main thread: drops the references the job holds on JS values (after Results()).
  void ReleaseRefs(napi_env env);

 private:
  RunJob() = default;
  // JS thread: a job from the env's free list (or a new one), bound to `state`.
  static RunJob* Acquire(const std::shared_ptr<EnvState>& state);
  // JS thread: returns the job to its env's free list, or deletes it (no env, env closing, list
  // full). Releases everything the job holds except the capacity of its containers.
  static void Recycle(RunJob* job);
  void Reset();
  void Run() override;  // Executor thread: Execute(), then post back to the env
  static void Deliver(napi_env env, napi_value, void* context, void* data);  // JS thread, on a wake-up
  Failure TakeFailure();
  Failure DetachedFailure(napi_env env) const;  // JS thread: a borrowed buffer that was detached
  void ForgetRefs() { borrowed_.Forget(); }  // env teardown: the env frees them

  // Async runs copy their numeric inputs when they total at most this many bytes (see the top
  // of this file). Measured on the JS thread (2-core VM, best of 15): one aligned allocation +
  // memcpy + free costs 62-79 ns at 256 B, ~105 ns at 1 KiB, 100-130 ns at 2 KiB, while each
  // borrowed input costs a reference (create + delete, 35-46 ns) plus its settle-time detach
  // check (65-80 ns together). So up to 2 KiB the copy costs at most ~50 ns more than one
  // borrowed input and less than two. Above that it grows fast: 4 KiB 130-165 ns alone but
  // 1-1.7 us with 64 requests in flight (freed copies push glibc's heap top past its 128 KiB
  // trim threshold, so the pages are returned and faulted in again), 64 KiB 1.5 us alone and
  // 38-60 us with 16-64 in flight.
  static constexpr size_t kOwnedInputBytes = 2 * 1024;
  static constexpr size_t kOwnedAlign = 64;  // each copied input starts on a cache line
  struct AlignedFree {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{kOwnedAlign}); }
  };

  enum class OutputKind : uint8_t { kOrt, kSupplied, kPredicted };
  static constexpr size_t kMaxInlineOutputs = 16;

  std::shared_ptr<SessionCore> core_;
  std::vector<OrtValue*> inputs_, outputs_;
  std::vector<OutputKind> kind_;
  std::vector<uint32_t> output_index_;  // model output index of each fetched output
  // Deferred jobs: inputs then fetched outputs; a view is used where inputs_/outputs_ is null.
  std::vector<TensorView> views_;
  OrtRunOptions* run_options_ = nullptr;
  std::atomic<const char*> cancel_code_{nullptr};
  Failure failure_;
  // Async only:
  // The copied inputs (after inputs_' release): kOwnedInputBytes, allocated on first use and
  // kept while the job is recycled.
  std::unique_ptr<uint8_t[], AlignedFree> owned_inputs_;
  std::vector<int64_t> dims_;  // Prepare's scratch (kept for its capacity)
  Borrowed borrowed_;
  std::shared_ptr<EnvState> state_;  // set by Acquire: the env whose JS thread owns the job
  napi_deferred deferred_ = nullptr;
  double cancel_id_ = 0;
  RunJob* run_prev_ = nullptr;  // EnvState::runs links (JS thread), while attached
  RunJob* run_next_ = nullptr;

  // Scheduled jobs (see scheduler.h). Fields below are guarded by the scheduler's mutex once
  // the job is queued; `scheduler_` keeps the scheduler (and so its instances) alive until the
  // job is delivered on the JS thread.
  friend class Scheduler;
  friend class Instance;
  friend struct BatchIo;
  std::shared_ptr<Scheduler> scheduler_;
  BatchKey batch_;
  int priority_ = 0;
  std::chrono::steady_clock::time_point enqueued_{};
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::list<RunJob*>::iterator queue_pos_;
  bool queued_ = false;
  Batch* running_in_ = nullptr;  // the batch executing this job, while it runs
  bool scattered_ = false;       // outputs were copied out of a batch (not written in place)
};

}  // namespace nimify

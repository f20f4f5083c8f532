// RunJob: one OrtSession::Run with its feeds and fetches. infer() submits it to the Executor and
// gets it back on the JS thread through the env's completion threadsafe function, where its
// promise — JavaScript's, named by the job's ticket — is settled with the others that finished
// (settlement.h); inferSync() executes it inline on the calling thread.
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

#include "device_tensor.h"
#include "env_state.h"
#include "errors.h"
#include "executor.h"
#include "session_core.h"
#include "settlement.h"
#include "tensor_io.h"

namespace nimify {

class Scheduler;
struct Batch;

// Everything the scheduler needs to batch a job, computed once in Prepare (batching models only)
// and read-only from then on (the scheduler reads it under its mutex, Gather and Scatter on the
// instance thread without it).
struct BatchKey {
  // rows: the job's size on the batch dim (dim 0 of every input), or -1 when it cannot share a
  // run (inputs disagree on dim 0, an empty tensor, strings): such a job runs alone.
  int64_t rows = -1;
  // Non-batch dims of every input (rank, dims[1..]) and the fetched output indices: two jobs
  // share a run only when their keys are equal.
  std::vector<int64_t> key;
};


// One input or fetched output of a job, in exactly one of three forms (form()):
//   kValue  an OrtValue the slot owns: over the caller's memory (borrowed: the job holds the
//           reference, see above), over the job's input copy, over ORT-owned memory (strings),
//           an output ORT allocated (Run, or Scatter for the copy path), or a view of memory a
//           DeviceValue owns (a DeviceTensor fed in, kept by `held_`; a request's rows of a batch
//           output, kept by `out_parents_`) — the slot owns the view, never that memory;
//   kView   a TensorView: the caller's memory, checked against the model, with no ORT object
//           (scheduled jobs' numeric tensors of rank <= kMaxViewRank). A batched job is gathered
//           from and scattered into it directly; a job that runs alone turns it into kValue
//           (RunJob::Materialize) on its instance thread;
//   kEmpty  an output without a buffer: ORT allocates it during the run (the copy path).
// The invariant (at most one of `value_` and `view_.data` is set) is kept by the setters alone;
// the form is read from it, so it cannot disagree with what the slot holds.
// Threading: a slot is its job's: written by Prepare on the JS thread, then only by the one
// thread executing the job (executor, instance or JS thread), then read by Results on the JS
// thread — each hand-off goes through a lock (the Executor's queue, the scheduler's mutex,
// EnvState::mu), so the slot itself needs none.
class IoSlot {
 public:
  enum class Form : uint8_t { kEmpty, kValue, kView };

  IoSlot() = default;
  IoSlot(IoSlot&& other) noexcept : value_(other.value_), view_(other.view_) {
    other.value_ = nullptr;
    other.view_.data = nullptr;
  }
  IoSlot& operator=(IoSlot&& other) noexcept;
  IoSlot(const IoSlot&) = delete;
  IoSlot& operator=(const IoSlot&) = delete;
  ~IoSlot() { Clear(); }

  Form form() const {
    return value_ != nullptr ? Form::kValue : view_.data != nullptr ? Form::kView : Form::kEmpty;
  }
  OrtValue* value() const { return value_; }       // null unless kValue
  const TensorView& view() const { return view_; }  // meaningful in kView only
  // The tensor's memory in either form; null when kEmpty (or ORT cannot give a value's).
  uint8_t* data() const { return value_ != nullptr ? TensorData(value_) : view_.data; }
  // Whether the tensor's dims are `dims` with dim 0 replaced by `rows` (Scatter: does a
  // supplied buffer fit the job's rows). `scratch` holds a kValue's dims (a view has its own).
  bool HasShape(int64_t rows, const std::vector<int64_t>& dims, std::vector<int64_t>* scratch) const;

  // Takes ownership of `value` (null: kEmpty), releasing whatever the slot held.
  void SetValue(OrtValue* value);
  // Describes the caller's memory (`view.data` non-null), releasing whatever the slot held.
  void SetView(const TensorView& view);
  // Hands the slot's OrtValue to the caller (the output copy path); the slot is kEmpty after.
  OrtValue* TakeValue();
  // Releases the slot's OrtValue (or forgets its view): kEmpty.
  void Clear();

 private:
  OrtValue* value_ = nullptr;
  TensorView view_;
};

class RunJob : public Task {
 public:
  // How a job will run, which decides what Prepare builds (replaces three unnamed booleans):
  //   kSync      inferSync(): runs on the calling thread before the call returns. Borrows every
  //              buffer without a reference (no JS can run meanwhile); OrtValues + run options.
  //   kExecutor  infer() on a model without a scheduler: small inputs copied, the rest
  //              referenced; OrtValues + its own run options (Cancel terminates them).
  //   kQueued    infer() through a Scheduler that does not batch (instances only): numeric
  //              tensors are kept as checked views (IoSlot kView), no OrtValues or run
  //              options — one that runs alone gets them from Materialize() on its instance
  //              thread, with its batch's run options.
  //   kBatched   kQueued, plus the job's BatchKey (the model has a batch dim).
  enum class Route : uint8_t { kSync, kExecutor, kQueued, kBatched };

  // Where a fetched output's memory comes from:
  //   kOrt        none given: ORT allocates it (or Scatter does) and Results copies it to JS;
  //   kSupplied   the caller's buffer: ORT (or Scatter) writes into it in place;
  //   kPredicted  TypeScript's buffer, allocated from the model's declared output shape: used
  //               like kSupplied, but dropped for kOrt when the result's shape disagrees.
  enum class OutputKind : uint8_t { kOrt, kSupplied, kPredicted };

  // The scheduler's per-job state. The scheduler owns the meaning of every field (scheduler.h);
  // the job only carries it and resets it when recycled. Guarded by the scheduler's mutex once
  // the job is queued (`queued`); set before that by Scheduler::Submit on the JS thread.
  struct Queueing {
    // Keeps the scheduler (and so its instances) alive until the job is delivered on the JS
    // thread; set by Submit, dropped by Reset (on the JS thread: it may destroy the scheduler).
    std::shared_ptr<Scheduler> scheduler;
    int priority = 0;  // the queue it waits in: 0 normal, 1 high
    std::chrono::steady_clock::time_point enqueued{};
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    std::list<RunJob*>::iterator pos;  // in that queue, while `queued`
    bool queued = false;
    Batch* running_in = nullptr;  // the batch executing this job, while it runs
  };

  // Owning handle. Jobs are recycled, not freed: a JS-thread free list per env (EnvState's
  // `spare_jobs`) keeps their vectors' capacity and input copy buffer, so a request allocates
  // nothing native in the steady state (Prepare was ~8 malloc/free pairs per request).
  struct Recycler {
    void operator()(RunJob* job) const;
  };
  using Ptr = std::unique_ptr<RunJob, Recycler>;

  // The request's own numbers, from the spec header (SPEC_REQUEST in src/runtime/io-plan.ts;
  // inferSync() leaves them 0): the ticket of the promise its settlement settles (settlement.h),
  // its cancel id (> 0: reachable from Session.cancel(id)), priority (0 or 1) and timeout (µs;
  // 0: none).
  struct Request {
    int32_t ticket = 0;
    double cancel_id = 0;
    int priority = 0;
    double timeout_us = 0;
  };

  // Main thread. JS arguments:
  //   inputData: (TypedArray | string[])[]   one per model input, in model order
  //   outputData: (TypedArray | null)[]      per fetched output: a buffer ORT writes into, or
  //                                          null: ORT allocates (the copy path)
  //   Either may instead be its single entry alone (exactly one tensor, whose data is not an
  //   array): an array argument is always read as the list.
  //   inputData may hold DeviceTensor wrappers (device_tensor.h) of tensors on the session's
  //   device or in host memory: fed as they are (a view, no copy); such a job runs alone.
  //   spec: Float64Array                     [nIn, nOut, predictedMask, flags, ticket, cancelId,
  //                                          priority, timeoutUs (Request), outputIndex x nOut,
  //                                          per input: rank, dims..., per output: rank (-1 with
  //                                          no buffer), dims...]. predictedMask bit i: output
  //                                          i's buffer came from a predicted shape and may be
  //                                          dropped if that shape turns out wrong. flags bit 0:
  //                                          outputs stay on the device (outputs_on_device());
  //                                          bit 1: some input is a DeviceTensor.
  //                                          (SPEC_FLAGS in src/runtime/io-plan.ts)
  // Validates everything that matters for memory safety against the model; on failure throws a
  // JS error and returns null. `request` (infer()) receives the header's request numbers.
  static Ptr Prepare(const Napi::CallbackInfo& info, const std::shared_ptr<SessionCore>& core, Route route,
                     Request* request = nullptr);
  ~RunJob() override;

  // Main thread: hands the job to the Executor (or runs it here, settling it before returning).
  // `ticket`: the promise to settle (settlement.h). `cancel_id` > 0 makes it reachable from
  // Session.cancel(id).
  static void Submit(Napi::Env env, Ptr job, int32_t ticket, double cancel_id);
  // Main thread: registers the job with the env (runs, cancellable, executing) under `ticket`,
  // the promise its Settle will settle — the bookkeeping shared by Submit and Scheduler::Submit.
  void Attach(Napi::Env env, int32_t ticket, double cancel_id);
  // Any thread: hands finished jobs to their env's JS thread under one lock with at most one
  // wake-up, however many there are (a batch completes once, not once per request). The env
  // takes ownership of the jobs.
  static void PostCompleted(RunJob* const* jobs, size_t n);
  // Abort/timeout (or env teardown): the JS thread, or, for a scheduled job, any thread holding
  // its scheduler's mutex (Form's expiry, the deadline watchdog, ExpireLate). Idempotent; the
  // first reason wins. Returns whether this call cancelled it.
  bool Cancel(const char* code);
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

  // JS thread, from a DeferredWakes message: runs the env's lone_deferred jobs (Submit) on this
  // thread for about their model's inlineBelowMicros, hands the rest to the Executor.
  static void RunDeferred(EnvState* state);
  void Execute() { ExecuteOn(core_, run_options_); }  // any thread, no JS
  // Execute(), timed when tracing or when the model may run inline (RunCost learns from it):
  // the Executor's thread, or the JS thread (`js_thread`) for a lone run (Submit, RunDeferred),
  // which runs on the model's inline session (SessionCore::inline_session).
  void ExecuteMeasured(bool js_thread);
  // JS thread: records the job's outcome for its promise in `out`, drops its references and
  // recycles it.
  static void Settle(Napi::Env env, EnvState* state, RunJob* job, Settlement& out);
  // Runs the job on `core`, which must be a session of the same model (a scheduler instance),
  // with `run_options` (a scheduled job runs with its batch's). Every input slot must be kValue
  // (a scheduled job is materialized first); kEmpty outputs get the OrtValues ORT allocates —
  // or, for device-resident outputs, ORT allocates them in `core`'s device memory through
  // IoBinding and each becomes a DeviceValue holding `core` (out_parents_, the slot stays kEmpty).
  void ExecuteOn(const std::shared_ptr<SessionCore>& core, OrtRunOptions* run_options);
  // The thread executing the job: turns every kView slot into kValue (an OrtValue over the same
  // memory), for a scheduled job that runs alone.
  Failure Materialize();
  // Any thread: the job fails with `f` unless it was cancelled first.
  void Fail(const Failure& f) { failure_ = f; }
  const char* cancel_code() const { return cancel_code_.load(); }
  Scheduler* scheduler() const { return queueing_.scheduler.get(); }

  // The scheduler's state for this job (see Queueing): Scheduler only.
  Queueing& queueing() { return queueing_; }
  // Set by Prepare (batching models), read-only afterwards.
  const BatchKey& batch_key() const { return batch_; }
  // Model output index of each fetched output (part of the BatchKey: the same in every job of a
  // batch). Set by Prepare, read-only afterwards.
  const std::vector<uint32_t>& output_index() const { return output_index_; }

  // The tensors, for the thread executing the job (BatchIo's gather and scatter): input `i` in
  // model order, fetched output `o` in call order, and how each output's memory is provided.
  const IoSlot& input(size_t i) const { return inputs_[i]; }
  IoSlot& output(size_t o) { return outputs_[o]; }
  OutputKind output_kind(size_t o) const { return kind_[o]; }
  // A kPredicted output whose shape turned out wrong: drops its buffer and makes it kOrt (the
  // copy path). Returns false, changing nothing, for any other kind.
  bool DropPredicted(size_t o);
  // Scatter copied the job's outputs out of a batch result (so none was written in place by
  // ORT: not counted as zero-copy).
  void MarkScattered() { scattered_ = true; }
  // The job's outputs stay in the session's device memory (infer()'s outputLocation 'device'):
  // every output slot is kEmpty until the run; then either the slot holds a view of the job's
  // rows of a batch output (its parent in out_parents_), or the slot stays kEmpty and
  // out_parents_ holds the result itself (a lone run, a copy of its own). Results hands each to
  // JS as a DeviceTensor. Set by Prepare; part of the BatchKey.
  bool outputs_on_device() const { return outputs_on_device_; }
  // The thread executing the job: output `o` is a view of `parent` (its rows of a batch output),
  // which must outlive it.
  void SetOutputParent(size_t o, std::shared_ptr<DeviceValue> parent) { out_parents_[o] = std::move(parent); }
  // Main thread: the results array (null where the caller supplied the output buffer; null
  // instead of the array when that holds for every output), or an
  // empty value with a pending JS exception (the run's failure; BUFFER_DETACHED when a borrowed
  // input or a supplied output buffer was detached while the job was in flight).
  Napi::Value Results(Napi::Env env);
  // Main thread: drops the references the job holds on JS values (after Results()).
  void ReleaseRefs(napi_env env);

  // Per-request timing, opt-in per call (tracing: infer()'s internal `timing` option). Without it
  // a job pays one null check where a run starts and ends. The times are the steady clock's;
  // WriteTrace reports them relative to `enqueued` (the layout is RUN_TIMING in
  // src/runtime/binding.ts, whose slot 0, the JS clock at submit, is TypeScript's own).
  // Threading: `enqueued` is set on the JS thread (Attach); the rest by the one thread running
  // the job, before it is posted back (PostCompleted's lock orders it before Settle).
  struct Trace {
    std::chrono::steady_clock::time_point enqueued{}, start{}, gathered{}, ran{}, end{};
    int64_t rows = 0;      // rows of the run (the batch's, padding excluded)
    int64_t requests = 0;  // jobs in the run
    int instance = -1;     // the scheduler instance that ran it; -1 the JS thread (inline) or the executor
    bool ran_at_all = false;
  };
  // Main thread, before Submit: the job's timing goes into `array` (a Float64Array of at least
  // kTraceSlots elements) when it settles. Returns false (nothing taken) for any other value.
  bool TraceInto(napi_env env, napi_value array);
  bool traced() const { return trace_ref_ != nullptr; }
  // The thread running the job (traced jobs only): the run's times and shape.
  void RecordRun(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point gathered,
                 std::chrono::steady_clock::time_point ran, std::chrono::steady_clock::time_point end, int64_t rows,
                 int64_t requests, int instance);
  // Length of the timing array (RUN_TIMING_LENGTH in src/runtime/binding.ts).
  static constexpr size_t kTraceSlots = 9;

  // Async runs copy their numeric inputs when they total at most this many bytes (see the top
  // of this file), each copy starting kOwnedAlign-aligned. Exported to JS as the addon's
  // `ownedInputBytes` and `ownedInputAlign` (src/protocol/request.ts decides by them which
  // arrays may share memory). Measured on the JS thread (2-core VM, best of 15): one aligned
  // allocation + memcpy + free costs 62-79 ns at 256 B, ~105 ns at 1 KiB, 100-130 ns at 2 KiB,
  // while each borrowed input costs a reference (create + delete, 35-46 ns) plus its settle-time
  // detach check (65-80 ns together). So up to 2 KiB the copy costs at most ~50 ns more than one
  // borrowed input and less than two. Above that it grows fast: 4 KiB 130-165 ns alone but
  // 1-1.7 us with 64 requests in flight (freed copies push glibc's heap top past its 128 KiB
  // trim threshold, so the pages are returned and faulted in again), 64 KiB 1.5 us alone and
  // 38-60 us with 16-64 in flight.
  static constexpr size_t kOwnedInputBytes = 2 * 1024;
  static constexpr size_t kOwnedAlign = 64;  // each copied input starts on a cache line
  // Outputs copied at settlement (the spec's copied mask: infer()'s outputs whose predicted size
  // is at most kCopiedOutputBytes, src/runtime/io-plan.ts): ORT (or Scatter) writes each into
  // the job's own memory, kOwnedOutputBytes for all of them (each 8-byte aligned, up to 31 of
  // them), and Settle copies them into the settlement's shared buffer, from which wrap() makes
  // the caller's arrays. A JS view to write into instead cost a typed array per request, its
  // napi_get_typedarray_info and a reference. Exported as the addon's `copiedOutputBytes`.
  static constexpr size_t kCopiedOutputBytes = 64;
  static constexpr size_t kOwnedOutputBytes = 2 * 1024;

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
  void WriteTrace(napi_env env);  // JS thread (Settle): fills the traced array, if any
  Failure TakeFailure();
  Failure DetachedFailure(napi_env env) const;  // JS thread: a borrowed buffer that was detached
  void ForgetRefs() {  // env teardown: the env frees them
    borrowed_.Forget();
    trace_ref_ = nullptr;
  }

  struct AlignedFree {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{kOwnedAlign}); }
  };

  // ExecuteOn lays out the OrtValues of at most this many inputs + outputs on the stack (more
  // use `run_args_`), and the names of as many outputs.
  static constexpr size_t kMaxInlineOutputs = 16;
  static constexpr size_t kMaxInlineArgs = 32;

  std::shared_ptr<SessionCore> core_;
  std::vector<IoSlot> inputs_;         // one per model input, in model order
  std::vector<IoSlot> outputs_;        // one per fetched output, in call order
  std::vector<OutputKind> kind_;       // per fetched output
  std::vector<uint32_t> output_index_;  // model output index of each fetched output
  // ExecuteOn's argument array for ORT (inputs' then outputs' OrtValues) when there are more
  // than kMaxInlineArgs; kept for its capacity. Only the thread executing the job touches it.
  std::vector<OrtValue*> run_args_;
  OrtRunOptions* run_options_ = nullptr;
  std::atomic<const char*> cancel_code_{nullptr};
  Failure failure_;
  // Async only:
  // The copied inputs (after inputs_' release): kOwnedInputBytes, allocated on first use and
  // kept while the job is recycled.
  std::unique_ptr<uint8_t[], AlignedFree> owned_inputs_;
  // Outputs copied at settlement: their memory (kOwnedOutputBytes, allocated on first use and
  // kept while the job is recycled) and, per such output, where it is in it.
  std::unique_ptr<uint8_t[], AlignedFree> owned_outputs_;
  struct Copied {
    uint32_t output, offset, bytes;
  };
  std::vector<Copied> copied_;
  std::vector<int64_t> dims_;  // Prepare's scratch (kept for its capacity)
  double in_elements_ = 0;     // kExecutor: the inputs' elements, what RunCost predicts from
  Borrowed borrowed_;
  std::shared_ptr<EnvState> state_;  // set by Acquire: the env whose JS thread owns the job
  int32_t ticket_ = -1;  // the promise Settle settles (Attach)
  double cancel_id_ = 0;
  RunJob* run_prev_ = nullptr;  // EnvState::runs links (JS thread), while attached
  RunJob* run_next_ = nullptr;

  // Scheduled jobs only (see scheduler.h).
  BatchKey batch_;       // Prepare's (batching models)
  Queueing queueing_;    // the scheduler's
  bool scattered_ = false;  // outputs were copied out of a batch (not written in place)

  // Device-resident tensors (device_tensor.h). `held_`: the DeviceTensors fed as inputs, kept
  // alive until the job is recycled (their input slots hold OrtValue views of them).
  // `out_parents_`: per output, the batch output a device-resident result is a view of (the slot
  // holds the view), or the result itself (the slot is kEmpty). Written by the executing thread,
  // read by Results.
  bool outputs_on_device_ = false;
  std::vector<std::shared_ptr<DeviceValue>> held_;
  std::vector<std::shared_ptr<DeviceValue>> out_parents_;

  // Traced jobs only (TraceInto): the array to fill (a JS reference, released by ReleaseRefs) and
  // what goes into it.
  napi_ref trace_ref_ = nullptr;
  Trace trace_;
};

}  // namespace nimify

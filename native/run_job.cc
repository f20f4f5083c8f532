#include "run_job.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <shared_mutex>

#include "deferred_wake.h"
#include "device_memory.h"
#include "element_type.h"
#include "io_binding.h"
#include "ort_api.h"
#include "scheduler.h"
#include "tensor_io.h"

namespace nimify {

namespace {

// Reads the call's spec (src/runtime/io-plan.ts NativeCall.spec) with bounds and integer checks.
class SpecReader {
 public:
  SpecReader(const double* data, size_t length) : data_(data), length_(length) {}
  // An integer in [min, max] (a range within ±2^53), or false.
  bool Int(double min, double max, int64_t* out) {
    if (pos_ >= length_) return false;
    const double v = data_[pos_++];
    if (!(v >= min && v <= max)) return false;
    const int64_t i = static_cast<int64_t>(v);  // (in range: defined)
    if (static_cast<double>(i) != v) return false;
    *out = i;
    return true;
  }
  // A number in [min, max], or false.
  bool Real(double min, double max, double* out) {
    if (pos_ >= length_) return false;
    const double v = data_[pos_++];
    if (!(v >= min && v <= max)) return false;
    *out = v;
    return true;
  }
  bool Dims(std::vector<int64_t>* dims, bool* absent) {
    int64_t rank = 0;
    if (!Int(-1, 64, &rank)) return false;
    *absent = rank < 0;
    dims->resize(rank < 0 ? 0 : static_cast<size_t>(rank));
    for (auto& d : *dims) {
      if (!Int(0, 9007199254740991.0, &d)) return false;
    }
    return true;
  }

 private:
  const double* data_;
  size_t length_;
  size_t pos_ = 0;
};

}  // namespace

uint8_t* TensorData(OrtValue* value) {
  void* p = nullptr;
  if (OrtStatus* st = g_ort->GetTensorMutableData(value, &p)) {
    g_ort->ReleaseStatus(st);
    return nullptr;
  }
  return static_cast<uint8_t*>(p);
}

bool TensorDims(const OrtValue* value, std::vector<int64_t>* dims) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* st = g_ort->GetTensorTypeAndShape(value, &info)) {
    g_ort->ReleaseStatus(st);
    return false;
  }
  size_t rank = 0;
  OrtStatus* st = g_ort->GetDimensionsCount(info, &rank);
  if (st == nullptr) {
    dims->resize(rank);
    st = g_ort->GetDimensions(info, dims->data(), rank);
  }
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if (st != nullptr) {
    g_ort->ReleaseStatus(st);
    return false;
  }
  return true;
}

IoSlot& IoSlot::operator=(IoSlot&& other) noexcept {
  if (this != &other) {
    Clear();
    value_ = other.value_;
    view_ = other.view_;
    other.value_ = nullptr;
    other.view_.data = nullptr;
  }
  return *this;
}

bool IoSlot::HasShape(int64_t rows, const std::vector<int64_t>& dims, std::vector<int64_t>* scratch) const {
  const int64_t* own = nullptr;
  size_t rank = 0;
  if (value_ != nullptr) {
    if (!TensorDims(value_, scratch)) return false;
    own = scratch->data();
    rank = scratch->size();
  } else if (view_.data != nullptr) {
    own = view_.dims;
    rank = view_.rank;
  } else {
    return false;
  }
  if (rank != dims.size() || rank == 0 || own[0] != rows) return false;
  for (size_t d = 1; d < rank; ++d) {
    if (own[d] != dims[d]) return false;
  }
  return true;
}

void IoSlot::SetValue(OrtValue* value) {
  Clear();
  value_ = value;
}

void IoSlot::SetView(const TensorView& view) {
  Clear();
  view_ = view;
}

OrtValue* IoSlot::TakeValue() {
  OrtValue* v = value_;
  value_ = nullptr;
  return v;
}

void IoSlot::Clear() {
  if (value_ != nullptr) g_ort->ReleaseValue(value_);
  value_ = nullptr;
  view_.data = nullptr;
}

RunJob::Ptr RunJob::Prepare(const Napi::CallbackInfo& info, const std::shared_ptr<SessionCore>& core, Route route,
                            Request* request) {
  Napi::Env env = info.Env();
  const bool borrow = route != Route::kSync;  // references (and small-input copies): async only
  const bool deferred = route == Route::kQueued || route == Route::kBatched;
  const bool batching = route == Route::kBatched;
  Ptr job;
  auto fail = [&](const char* c, const std::string& msg) -> Ptr {
    if (job) job->ReleaseRefs(env);
    MakeError(env, c, msg).ThrowAsJavaScriptException();
    return nullptr;
  };
  if (!core) return fail(code::kDisposed, "model has been disposed");
  napi_typedarray_type spec_type = napi_int8_array;
  size_t spec_length = 0;
  void* spec_data = nullptr;
  if (info.Length() < 3 ||
      napi_get_typedarray_info(env, info[2], &spec_type, &spec_length, &spec_data, nullptr, nullptr) != napi_ok ||
      spec_type != napi_float64_array) {
    return fail(code::kInvalidArgument, "run(inputData, outputData, spec): expected inputData and outputData (arrays, or one tensor's data each) and a Float64Array");
  }
  // Each of inputData and outputData: an array with an entry per tensor, or — for exactly one
  // tensor whose data is not itself an array (io-plan.ts NativeCall.inArg) — that entry alone,
  // which saves the per-request element reads (a tiny model's request is a few µs of JS-thread
  // work in all).
  const Napi::Value in_arg = info[0];
  const Napi::Value out_arg = info[1];
  const bool in_list = in_arg.IsArray();
  const bool out_list = out_arg.IsArray();
  const uint32_t in_given = in_list ? in_arg.As<Napi::Array>().Length() : 1;
  const uint32_t out_given = out_list ? out_arg.As<Napi::Array>().Length() : 1;
  auto in_at = [&](int64_t i) { return in_list ? in_arg.As<Napi::Array>().Get(static_cast<uint32_t>(i)) : in_arg; };
  auto out_at = [&](int64_t i) { return out_list ? out_arg.As<Napi::Array>().Get(static_cast<uint32_t>(i)) : out_arg; };
  SpecReader spec(static_cast<const double*>(spec_data), spec_length);
  const auto& ios = core->inputs();
  const auto& oos = core->outputs();
  int64_t n_in = 0, n_out = 0, predicted_mask = 0, flags = 0, ticket = 0, cancel_id = 0, priority = 0, copied_mask = 0;
  double timeout_us = 0;
  if (!spec.Int(0, 1e6, &n_in) || !spec.Int(0, 1e6, &n_out) || !spec.Int(0, 2147483647, &predicted_mask) ||
      !spec.Int(0, 3, &flags) || !spec.Int(0, 2147483647, &ticket) || !spec.Int(0, 9007199254740991.0, &cancel_id) ||
      !spec.Int(0, 1, &priority) || !spec.Real(0, 1e15, &timeout_us) || !spec.Int(0, 2147483647, &copied_mask)) {
    return fail(code::kInvalidArgument, "run(): malformed spec header");
  }
  if (copied_mask != 0 && (!borrow || (flags & 1) != 0)) {
    return fail(code::kInvalidArgument, "run(): outputs copied at settlement need infer() and outputs on the CPU");
  }
  if (request != nullptr) {
    request->ticket = static_cast<int32_t>(ticket);
    request->cancel_id = static_cast<double>(cancel_id);
    request->priority = static_cast<int>(priority);
    request->timeout_us = timeout_us;
  }
  const bool on_device = (flags & 1) != 0;
  // Bit 1: some feed is a DeviceTensor. Only then is each input asked whether it is one (an
  // InstanceOf per input otherwise on every request); a DeviceTensor sent without the bit is
  // refused as data that is not a typed array.
  const bool device_inputs = (flags & 2) != 0;
  if (on_device && route == Route::kSync) {
    return fail(code::kInvalidArgument, "device-resident outputs need infer(), not inferSync()");
  }
  if (static_cast<size_t>(n_in) != ios.size() || in_given != n_in) {
    return fail(code::kInvalidArgument, "expected data and dims for " + std::to_string(ios.size()) +
                                            " inputs in model order, received " + std::to_string(in_given));
  }
  if (n_out == 0) return fail(code::kInvalidArgument, "at least one output must be requested");
  if (out_given != n_out) return fail(code::kInvalidArgument, "outputData and the spec disagree on outputs");

  job.reset(Acquire(GetAddonData(env)->state));
  job->core_ = core;
  job->outputs_on_device_ = on_device;
  job->inputs_.resize(static_cast<size_t>(n_in));
  job->outputs_.resize(static_cast<size_t>(n_out));
  job->out_parents_.resize(static_cast<size_t>(n_out));
  job->kind_.reserve(n_out);
  job->output_index_.reserve(n_out);
  uint64_t seen = 0;
  for (int64_t i = 0; i < n_out; ++i) {
    int64_t idx = 0;
    if (!spec.Int(0, static_cast<double>(oos.size()) - 1, &idx)) {
      return fail(code::kInvalidArgument, "output " + std::to_string(i) + " of the spec is not an output index");
    }
    const bool dup = idx < 64 ? (seen >> idx) & 1
                              : std::find(job->output_index_.begin(), job->output_index_.end(), idx) !=
                                    job->output_index_.end();
    if (dup) return fail(code::kInvalidArgument, TensorName(oos[idx], true) + " requested twice");
    if (idx < 64) seen |= uint64_t{1} << idx;
    if (!oos[idx].is_tensor) {
      return fail(code::kUnsupported, TensorName(oos[idx], true) + " is a " + oos[idx].type_name +
                                          "; nimify fetches tensors only");
    }
    if (on_device && oos[idx].elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
      return fail(code::kInvalidArgument, TensorName(oos[idx], true) + " is a string tensor: strings come back to the CPU only");
    }
    job->output_index_.push_back(static_cast<uint32_t>(idx));
  }
  std::vector<int64_t>& dims = job->dims_;
  bool absent = false;
  // Async runs own small inputs (run_job.h): their total is read from the spec before any data,
  // so the copies share one allocation. A malformed spec just skips this; the loop below reports it.
  auto round_up = [](size_t n) { return (n + kOwnedAlign - 1) & ~(kOwnedAlign - 1); };
  auto data_bytes = [&](int64_t i) -> size_t {  // of input i with `dims`; 0 for strings; capped
    const ElementType* et = ElementTypeByOnnx(ios[i].elem);
    size_t bytes = et == nullptr ? 0 : et->size;
    for (int64_t d : dims) {
      if (d != 0 && bytes > kOwnedInputBytes / static_cast<size_t>(d)) return kOwnedInputBytes + 1;
      bytes *= static_cast<size_t>(d);
    }
    return bytes;
  };
  uint8_t* owned = nullptr;
  if (borrow) {
    SpecReader ahead = spec;
    size_t total = 0;
    for (int64_t i = 0; i < n_in && total <= kOwnedInputBytes; ++i) {
      if (!ahead.Dims(&dims, &absent)) total = kOwnedInputBytes + 1;
      else total = round_up(total) + data_bytes(i);
    }
    if (total > 0 && total <= kOwnedInputBytes) {
      // Always the full size: the buffer stays with the job when it is recycled.
      if (!job->owned_inputs_) {
        job->owned_inputs_.reset(static_cast<uint8_t*>(::operator new[](kOwnedInputBytes, std::align_val_t{kOwnedAlign})));
      }
      owned = job->owned_inputs_.get();
    }
  }
  size_t owned_offset = 0;
  int64_t rows = batching ? -2 : -1;  // -2: not yet seen
  for (int64_t i = 0; i < n_in; ++i) {
    if (!spec.Dims(&dims, &absent) || absent) {
      return fail(code::kInvalidArgument, TensorName(ios[i], false) + ": dims must be non-negative integers");
    }
    if (route == Route::kExecutor) {
      double count = 1;
      for (int64_t d : dims) count *= static_cast<double>(d);
      job->in_elements_ += count;
    }
    if (rows != -1) {
      // Batch key: a job shares a run only with jobs whose non-batch dims are identical. Empty
      // tensors and inputs that disagree on dim 0 make the job run alone.
      int64_t count = 1;
      for (int64_t d : dims) count *= d;
      if (dims.empty() || count == 0 || ios[i].elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING ||
          (rows >= 0 && dims[0] != rows)) {
        rows = -1;
      } else {
        rows = dims[0];
        job->batch_.key.push_back(static_cast<int64_t>(dims.size()));
        job->batch_.key.insert(job->batch_.key.end(), dims.begin() + 1, dims.end());
      }
    }
    Napi::Value data = in_at(i);
    bool is_device = false;
    if (std::shared_ptr<DeviceValue> dv = device_inputs ? DeviceTensor::From(env, data, &is_device) : nullptr) {
      // A device-resident tensor: checked against the model and the spec, fed through a view of
      // its memory (no copy); the job keeps it alive and runs alone (nothing gathers device rows).
      const IoInfo& io = ios[i];
      if (dv->elem != io.elem) {
        return fail(code::kInvalidArgument, TensorName(io, false) + ": expected " + io.type_name +
                                                ", received a DeviceTensor of " + OnnxTypeName(dv->elem));
      }
      if (dv->dims != dims) return fail(code::kInvalidArgument, TensorName(io, false) + ": the DeviceTensor's dims disagree with the call's");
      bool fits = !io.has_shape || io.shape.size() == dims.size();
      for (size_t d = 0; fits && io.has_shape && d < dims.size(); ++d) fits = io.shape[d] < 0 || io.shape[d] == dims[d];
      if (!fits) {
        return fail(code::kInvalidArgument, TensorName(io, false) + ": expected shape " + DeclaredShape(io) +
                                                ", received a DeviceTensor of " + ShapeString(dims));
      }
      if (!Feedable(dv->memory, core->memory().device())) {
        return fail(code::kInvalidArgument, TensorName(io, false) + " is on " + LocationOf(dv->memory) +
                                                ", the model runs on " + core->memory().location() +
                                                ": download() it first");
      }
      OrtValue* v = nullptr;
      if (Failure f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(dv->memory, TensorData(dv->value), dv->bytes,
                                                                        dims.data(), dims.size(), io.elem, &v),
                                    "feeding " + TensorName(io, false))) {
        return fail(f.code, f.message);
      }
      job->inputs_[i].SetValue(v);
      job->held_.push_back(std::move(dv));
      rows = -1;
      if (owned != nullptr) owned_offset = round_up(owned_offset) + data_bytes(i);
      continue;
    }
    if (is_device) return fail(code::kDisposed, TensorName(ios[i], false) + ": the DeviceTensor was disposed");
    OrtValue* v = nullptr;
    TensorView view;
    bool borrowed = false;
    Failure f;
    uint8_t* copy_to = nullptr;
    if (owned != nullptr) {
      owned_offset = round_up(owned_offset);
      copy_to = owned + owned_offset;
      owned_offset += data_bytes(i);
    }
    if (!TensorToOrtValue(ios[i], false, data, dims, &v, &borrowed, &f, deferred ? &view : nullptr, copy_to)) {
      return fail(f.code, f.message);
    }
    // No OrtValue: a deferred job's numeric tensor, described by the view.
    if (v != nullptr) job->inputs_[i].SetValue(v);
    else job->inputs_[i].SetView(view);
    if (borrow && borrowed && !job->borrowed_.Add(env, data, static_cast<int32_t>(i))) {
      return fail(code::kInternal, TensorName(ios[i], false) + ": could not reference its buffer for the run");
    }
  }
  size_t copied_offset = 0;
  for (int64_t i = 0; i < n_out; ++i) {
    const IoInfo& io = oos[job->output_index_[i]];
    if (!spec.Dims(&dims, &absent)) {
      return fail(code::kInvalidArgument, TensorName(io, true) + ": dims must be non-negative integers");
    }
    Napi::Value data = out_at(i);
    const napi_valuetype data_type = data.Type();  // (one napi_typeof for both checks below)
    const bool no_buffer = data_type == napi_null || data_type == napi_undefined;
    if (i < 31 && ((copied_mask >> i) & 1)) {
      // Written into the job's own memory and copied to JS at settlement (kCopiedOutputBytes):
      // nothing of JavaScript's is written or referenced. Like a predicted buffer, dropped for
      // the copy path if the result's shape differs.
      if (absent || !no_buffer) {
        return fail(code::kInvalidArgument, TensorName(io, true) + ": an output copied at settlement takes dims and no buffer");
      }
      if (!job->owned_outputs_) {
        job->owned_outputs_.reset(static_cast<uint8_t*>(::operator new[](kOwnedOutputBytes, std::align_val_t{kOwnedAlign})));
      }
      const size_t room = std::min(kCopiedOutputBytes, kOwnedOutputBytes - std::min(copied_offset, kOwnedOutputBytes));
      OrtValue* v = nullptr;
      TensorView view;
      size_t bytes = 0;
      Failure f;
      if (!OwnedOutput(io, job->owned_outputs_.get() + copied_offset, room, dims, &bytes, &v, &f, deferred ? &view : nullptr)) {
        return fail(f.code, f.message);
      }
      if (v != nullptr) job->outputs_[i].SetValue(v);
      else job->outputs_[i].SetView(view);
      job->copied_.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(copied_offset), static_cast<uint32_t>(bytes)});
      copied_offset += Settlement::Align8(bytes);
      job->kind_.push_back(OutputKind::kPredicted);
      continue;
    }
    if (no_buffer) {
      job->kind_.push_back(OutputKind::kOrt);  // the slot stays kEmpty
    } else if (on_device) {
      return fail(code::kInvalidArgument, TensorName(io, true) + ": a buffer cannot be supplied for a device-resident output");
    } else {
      if (absent) return fail(code::kInvalidArgument, TensorName(io, true) + ": a buffer was given without dims");
      OrtValue* v = nullptr;
      TensorView view;
      bool borrowed = false;
      Failure f;
      if (!TensorToOrtValue(io, true, data, dims, &v, &borrowed, &f, deferred ? &view : nullptr)) {
        return fail(f.code, f.message);
      }
      if (v != nullptr) job->outputs_[i].SetValue(v);
      else job->outputs_[i].SetView(view);
      const bool predicted = i < 31 && ((predicted_mask >> i) & 1);
      // A predicted buffer is TypeScript's, unreachable by the caller until the call settles:
      // nothing can detach it, so it is not checked then.
      if (borrow && borrowed &&
          !job->borrowed_.Add(env, data, predicted ? Borrowed::kUnchecked : -1 - static_cast<int32_t>(i))) {
        return fail(code::kInternal, TensorName(io, true) + ": could not reference its buffer for the run");
      }
      job->kind_.push_back(predicted ? OutputKind::kPredicted : OutputKind::kSupplied);
    }
  }
  if (rows >= 0) {
    job->batch_.rows = rows;
    job->batch_.key.push_back(n_out);
    for (uint32_t idx : job->output_index_) {
      if (oos[idx].elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) job->batch_.rows = -1;
      job->batch_.key.push_back(idx);
    }
    // Device-resident and host outputs come from differently bound runs: never one batch.
    job->batch_.key.push_back(on_device ? 1 : 0);
  }
  if (job->batch_.rows < 0) job->batch_.key.clear();
  if (deferred) return job;  // runs with its batch's run options
  if (Failure f = FromOrtStatus(g_ort->CreateRunOptions(&job->run_options_), "creating run options")) {
    return fail(f.code, f.message);
  }
  if (Failure f = FromOrtStatus(g_ort->RunOptionsSetRunLogSeverityLevel(job->run_options_, core->run_log_severity()),
                                "creating run options")) {
    return fail(f.code, f.message);
  }
  return job;
}

RunJob::~RunJob() {
  // The slots' OrtValues first: before the input copy buffer some of them point into, and
  // before `core_` (the session they were made for).
  inputs_.clear();
  outputs_.clear();
  if (run_options_ != nullptr) g_ort->ReleaseRunOptions(run_options_);
}

// The most settled jobs an env keeps for reuse: enough for a server's usual requests in flight;
// a burst beyond it frees the excess (each job holds ~3 KiB with its input buffer).
static constexpr size_t kMaxSpareJobs = 256;

RunJob* RunJob::Acquire(const std::shared_ptr<EnvState>& state) {
  RunJob* job = nullptr;
  if (!state->spare_jobs.empty()) {
    job = state->spare_jobs.back();
    state->spare_jobs.pop_back();
  } else {
    job = new RunJob();
  }
  job->state_ = state;
  return job;
}

void RunJob::Recycler::operator()(RunJob* job) const { Recycle(job); }

void RunJob::Recycle(RunJob* job) {
  EnvState* state = job->state_.get();
  if (state == nullptr || state->shutting_down || state->spare_jobs.size() >= kMaxSpareJobs) {
    delete job;
    return;
  }
  job->Reset();
  state->spare_jobs.push_back(job);
}

// Every field back to a new job's value, except containers' capacity, the input copy buffer and
// `state_` (a job stays in its env). Called once the job's JS references are released; on the JS
// thread, like ~RunJob, since dropping `queueing_.scheduler` may destroy the scheduler.
void RunJob::Reset() {
  in_elements_ = 0;
  inputs_.clear();  // releases the slots' OrtValues
  outputs_.clear();
  kind_.clear();
  output_index_.clear();
  copied_.clear();
  if (run_options_ != nullptr) g_ort->ReleaseRunOptions(run_options_);
  run_options_ = nullptr;
  cancel_code_.store(nullptr);
  failure_ = Failure();
  borrowed_.Forget();  // (already released by ReleaseRefs)
  ticket_ = -1;
  cancel_id_ = 0;
  run_prev_ = run_next_ = nullptr;
  batch_.rows = -1;
  batch_.key.clear();
  queueing_ = Queueing();  // drops the scheduler reference
  scattered_ = false;
  outputs_on_device_ = false;
  held_.clear();
  out_parents_.clear();
  trace_ref_ = nullptr;  // (already released by ReleaseRefs)
  trace_ = Trace();
  core_.reset();
}

bool RunJob::Cancel(const char* c) {
  const char* expected = nullptr;
  if (!cancel_code_.compare_exchange_strong(expected, c)) return false;
  // Safe while Execute() runs on another thread: ORT's terminate flag is atomic. (Scheduled
  // jobs have none: their batch's run options are terminated by the Scheduler.)
  if (run_options_ != nullptr) {
    if (OrtStatus* st = g_ort->RunOptionsSetTerminate(run_options_)) g_ort->ReleaseStatus(st);
  }
  return true;
}

void RunJob::Attach(Napi::Env env, int32_t ticket, double cancel_id) {
  EnvState* state = state_.get();
  ticket_ = ticket;
  if (cancel_id > 0) {
    cancel_id_ = cancel_id;
    state->cancellable[cancel_id] = this;
  }
  if (trace_ref_ != nullptr) trace_.enqueued = std::chrono::steady_clock::now();
  if (state->run_count == 0) napi_ref_threadsafe_function(env, state->completions);  // keep the loop alive
  run_prev_ = nullptr;
  run_next_ = state->runs;
  if (state->runs != nullptr) state->runs->run_prev_ = this;
  state->runs = this;
  state->run_count++;
  state->executing.fetch_add(1, std::memory_order_relaxed);  // (no lock: see EnvState::executing)
}

void RunJob::Submit(Napi::Env env, Ptr job, int32_t ticket, double cancel_id) {
  job->Attach(env, ticket, cancel_id);
  // A lone request predicted to run within options.inlineBelowMicros runs here, on the JS
  // thread, and settles before infer() returns its promise: the rule of the scheduler's lone
  // runs (Scheduler::Submit, DeferredWakes::MayRunLone), minus the queue. Anything else, and
  // everything while nothing has been measured, goes to the Executor. So does a request that
  // can be cancelled (an AbortSignal or timeoutMs: `cancel_id`): its timer and signal are JS,
  // which cannot run while the JS thread runs the model — and a run may take longer than
  // predicted (a loop whose count is an input value).
  SessionCore& core = *job->core_;
  EnvState* state = job->state_.get();
  if (const double limit = core.inline_below_us(); limit > 0 && cancel_id <= 0 && state->wakes != nullptr) {
    if (core.run_cost().Fits(job->in_elements_, limit)) {
      const auto now = std::chrono::steady_clock::now();
      const bool first = state->wakes->OpenTurn(state, now);
      if (DeferredWakes::MayRunLone(*state, first, now, limit)) {
        RunJob* self = job.release();
        self->ExecuteMeasured(true);
        core.stats.inline_runs++;
        CompleteOnJsThread(env, &self, 1);  // (settles and recycles `self`)
        DeferredWakes::MarkLoneRun(env);
        return;
      }
      // Not alone (the rest of a burst, another callback of the turn) or past the turn's
      // budget: at the end of the turn, like the scheduler's queued requests — on the JS thread
      // still, once the loop has moved on (RunDeferred), rather than two thread hops now.
      if (state->wakes->posted()) {
        state->lone_deferred.push_back(job.release());
        return;
      }
    }
  }
  Executor::Instance().Submit(job.release());
}

void RunJob::RunDeferred(EnvState* state) {
  // No JS runs in here (runs, the Executor's queue, PostCompleted): nothing can add to the list
  // while it is walked.
  std::vector<RunJob*>& jobs = state->lone_deferred;
  if (jobs.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  size_t ran = 0;
  // (None can be cancelled: Submit defers only jobs without a cancel id.)
  for (RunJob* job : jobs) {
    SessionCore& core = *job->core_;
    const double limit = core.inline_below_us();
    // About `limit` of runs per turn (one more than fits, as the scheduler's wake), then threads.
    if (core.run_cost().Fits(job->in_elements_, limit) &&
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() < limit) {
      job->ExecuteMeasured(true);
      core.stats.inline_runs++;
      jobs[ran++] = job;
    } else {
      Executor::Instance().Submit(job);
    }
  }
  // Settled through the completion channel, a later loop callback, not here: their callers'
  // next requests must not chain more runs into this one (see Scheduler::RunInline).
  PostCompleted(jobs.data(), ran);
  jobs.clear();
}

void RunJob::ExecuteMeasured(bool js_thread) {
  const bool learn = core_->inline_below_us() > 0;
  const std::shared_ptr<SessionCore>& core = js_thread ? core_->inline_session(core_) : core_;
  if (trace_ref_ == nullptr && !learn) {
    ExecuteOn(core, run_options_);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  ExecuteOn(core, run_options_);
  const auto end = std::chrono::steady_clock::now();
  // One session runs the job (the model's own, or its inline session): no gather, no scatter.
  if (trace_ref_ != nullptr) RecordRun(start, start, end, end, 1, 1, -1);
  // Only completed runs teach the estimate (a cancelled job skipped its run; a failed one may
  // have stopped early).
  if (learn && !failure_ && cancel_code_.load() == nullptr) {
    core_->run_cost().Record(in_elements_, std::chrono::duration<double, std::micro>(end - start).count());
  }
}

void RunJob::Run() {
  ExecuteMeasured(false);
  RunJob* self = this;
  PostCompleted(&self, 1);
}

void RunJob::PostCompleted(RunJob* const* jobs, size_t n) {
  if (n == 0) return;
  // Once a job is on `done` the JS thread may delete it at any moment: copy what we need first.
  std::shared_ptr<EnvState> state = jobs[0]->state_;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->done.insert(state->done.end(), jobs, jobs + n);
    // One wake-up covers every job finished before the JS thread drains; none is needed while
    // the JS thread is polling (it will find the jobs on its next loop turn).
    if (!state->polling && !state->wake_pending) wake = state->wake_pending = true;
  }
  // Fails only while the env is closing; TeardownEnv then frees whatever is left on `done`.
  // The jobs still count as executing during this call: TeardownEnv waits for the count to reach
  // zero before Node may free the threadsafe function, so this call never touches a freed one.
  if (wake) napi_call_threadsafe_function(state->completions, nullptr, napi_tsfn_nonblocking);
  std::lock_guard<std::mutex> lock(state->mu);
  state->executing -= n;
  if (state->executing == 0) state->idle.notify_all();
}

void RunJob::Settle(Napi::Env env, EnvState* state, RunJob* job, Settlement& out) {
  Napi::HandleScope scope(env);
  (job->run_prev_ != nullptr ? job->run_prev_->run_next_ : state->runs) = job->run_next_;
  if (job->run_next_ != nullptr) job->run_next_->run_prev_ = job->run_prev_;
  job->run_prev_ = job->run_next_ = nullptr;
  state->run_count--;
  if (job->cancel_id_ > 0) state->cancellable.erase(job->cancel_id_);
  Napi::Value results = job->Results(env);
  job->core_->stats.requests.Settled(job->cancel_code(), !results.IsEmpty());
  if (job->trace_ref_ != nullptr) job->WriteTrace(env);
  if (results.IsEmpty()) {
    out.Add(job->ticket_, Settlement::Kind::kError, env.GetAndClearPendingException().Value());
  } else {
    // The outputs copied at settlement that the run wrote (not dropped for the copy path), in
    // call order, each 8-byte aligned: what src/runtime/io-plan.ts wrap() reads back.
    int32_t offset = 0;
    size_t total = 0;
    for (const Copied& c : job->copied_) total += job->kind_[c.output] == OutputKind::kPredicted ? Settlement::Align8(c.bytes) : 0;
    if (uint8_t* dst = total > 0 ? out.Reserve(total, &offset) : nullptr) {
      for (const Copied& c : job->copied_) {
        if (job->kind_[c.output] != OutputKind::kPredicted) continue;
        std::memcpy(dst, job->owned_outputs_.get() + c.offset, c.bytes);
        dst += Settlement::Align8(c.bytes);
      }
    }
    out.Add(job->ticket_, results.IsNull() ? Settlement::Kind::kNull : Settlement::Kind::kValue, results, offset);
  }
  job->ReleaseRefs(env);
  Recycle(job);
}

void RunJob::CompleteOnJsThread(napi_env raw_env, RunJob* const* jobs, size_t n) {
  if (n == 0) return;
  std::shared_ptr<EnvState> state = jobs[0]->state_;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->executing -= n;
    if (state->executing == 0) state->idle.notify_all();
  }
  Napi::Env env(raw_env);
  {
    Settlement out(raw_env);
    for (size_t i = 0; i < n; ++i) Settle(env, state.get(), jobs[i], out);
  }
  if (state->run_count == 0) napi_unref_threadsafe_function(raw_env, state->completions);
}

size_t RunJob::DrainCompleted(napi_env raw_env, EnvState* state, int polling) {
  // Takes the scratch vector's capacity (a reentrant drain would just find it empty).
  std::vector<RunJob*> batch = std::move(state->drain_scratch);
  batch.clear();
  {
    std::lock_guard<std::mutex> lock(state->mu);
    batch.swap(state->done);
    if (polling >= 0) state->polling = polling != 0;
    if (raw_env != nullptr && polling < 0) state->wake_pending = false;
  }
  if (raw_env == nullptr || state->shutting_down) {
    // The env is being torn down: no JS may run; free the native side only.
    for (RunJob* job : batch) {
      job->ForgetRefs();
      delete job;
    }
    return 0;
  }
  Napi::Env env(raw_env);
  if (!batch.empty()) {
    Settlement out(raw_env);
    for (RunJob* job : batch) Settle(env, state, job, out);
  }
  if (!batch.empty() && state->run_count == 0) napi_unref_threadsafe_function(raw_env, state->completions);
  batch.clear();
  state->drain_scratch = std::move(batch);
  return state->run_count;
}

void RunJob::Deliver(napi_env raw_env, napi_value /*js_cb*/, void* context, void* /*data*/) {
  // A null env: Node is closing the channel and calls this once per wake-up still queued, after
  // the finalizer freed `context`. Nothing is left to do: TeardownEnv, which runs first (the
  // cleanup hook registered after the channel), waited until no job was executing and freed
  // every job on `done`, so none can be posted any more.
  if (raw_env == nullptr) return;
  DrainCompleted(raw_env, static_cast<std::shared_ptr<EnvState>*>(context)->get(), -1);
}

napi_threadsafe_function RunJob::CreateCompletionChannel(Napi::Env env, const std::shared_ptr<EnvState>& state) {
  napi_threadsafe_function tsfn = nullptr;
  napi_value name = Napi::String::New(env, "nimify:infer");
  // The channel's own reference to the state: its context for every Deliver with an env, freed
  // by the finalizer, which Node runs at env teardown after the last of those (see Deliver).
  auto* context = new std::shared_ptr<EnvState>(state);
  auto finalize = [](napi_env, void* data, void*) { delete static_cast<std::shared_ptr<EnvState>*>(data); };
  if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, context, finalize, context, Deliver, &tsfn) !=
      napi_ok) {
    delete context;
    return nullptr;
  }
  napi_unref_threadsafe_function(env, tsfn);
  return tsfn;
}

void RunJob::TeardownEnv(EnvState* state) {
  state->shutting_down = true;
  // Schedulers first: their queued jobs are handed back (to be freed below) and their instance
  // threads joined, so nothing new starts while we wait.
  std::vector<Scheduler*> schedulers(state->schedulers.begin(), state->schedulers.end());
  for (Scheduler* s : schedulers) s->Shutdown(code::kAborted);
  for (RunJob* job = state->runs; job != nullptr; job = job->run_next_) job->Cancel(code::kAborted);
  // Runs waiting for a DeferredWakes message that will not come: onto `done`, freed below.
  PostCompleted(state->lone_deferred.data(), state->lone_deferred.size());
  state->lone_deferred.clear();
  // Terminated runs stop at the next operator boundary; wait for them so that no executor thread
  // reads JS memory after the isolate is gone.
  {
    std::unique_lock<std::mutex> lock(state->mu);
    state->idle.wait(lock, [state] { return state->executing == 0; });
  }
  DrainCompleted(nullptr, state, 0);
  // The jobs still linked were freed above (or by their schedulers' shutdown): forget the links.
  state->runs = nullptr;
  state->run_count = 0;
  // shutting_down is set: nothing is recycled from here on.
  for (RunJob* job : state->spare_jobs) delete job;
  state->spare_jobs.clear();
}

Failure RunJob::Materialize() {
  Failure f;
  auto materialize = [&f](const IoInfo& io, bool is_output, IoSlot& slot) {
    if (slot.form() != IoSlot::Form::kView) return;
    OrtValue* v = nullptr;
    f = ViewToOrtValue(io, is_output, slot.view(), &v);
    if (v != nullptr) slot.SetValue(v);
  };
  for (size_t i = 0; i < inputs_.size() && !f; ++i) materialize(core_->inputs()[i], false, inputs_[i]);
  for (size_t i = 0; i < outputs_.size() && !f; ++i) materialize(core_->outputs()[output_index_[i]], true, outputs_[i]);
  return f;
}

bool RunJob::DropPredicted(size_t o) {
  if (kind_[o] != OutputKind::kPredicted) return false;
  outputs_[o].Clear();
  kind_[o] = OutputKind::kOrt;
  return true;
}

void RunJob::ExecuteOn(const std::shared_ptr<SessionCore>& core_ptr, OrtRunOptions* run_options) {
  if (cancel_code_.load() != nullptr) return;  // cancelled while queued: skip the run entirely
  SessionCore& core = *core_ptr;
  std::shared_lock<std::shared_mutex> device_calls = SharedDeviceCalls(core.on_device());
  const char* names[kMaxInlineOutputs];
  std::vector<const char*> many;
  const char** output_names = names;
  if (output_index_.size() > kMaxInlineOutputs) {
    many.resize(output_index_.size());
    output_names = many.data();
  }
  for (size_t i = 0; i < output_index_.size(); ++i) output_names[i] = core.output_names()[output_index_[i]];
  // ORT takes the OrtValues as arrays (inputs, then outputs, which it fills where null): laid out
  // per run from the slots, and what ORT allocated is adopted by the kEmpty output slots after it.
  const size_t n_in = inputs_.size(), n_out = outputs_.size();
  OrtValue* inline_args[kMaxInlineArgs];
  OrtValue** args = inline_args;
  if (n_in + n_out > kMaxInlineArgs) {
    run_args_.resize(n_in + n_out);
    args = run_args_.data();
  }
  if (outputs_on_device_) {
    for (size_t i = 0; i < n_in; ++i) args[i] = inputs_[i].value();
    BoundRun bound;
    Failure f = bound.Run(core, run_options, args, output_names, n_out, core.memory().device(), args + n_in);
    for (size_t o = 0; o < n_out && !f; ++o) {
      auto whole = std::make_shared<DeviceValue>();
      whole->core = core_ptr;
      whole->value = args[n_in + o];
      args[n_in + o] = nullptr;
      if (!(f = whole->Describe())) out_parents_[o] = std::move(whole);
    }
    for (size_t o = 0; o < n_out; ++o) {
      if (args[n_in + o] != nullptr) g_ort->ReleaseValue(args[n_in + o]);
    }
    core_->stats.runs++;
    if (f) {
      core_->stats.failures++;
      failure_ = f;
    }
    return;
  }
  auto run = [&]() {
    for (size_t i = 0; i < n_in; ++i) args[i] = inputs_[i].value();
    for (size_t i = 0; i < n_out; ++i) args[n_in + i] = outputs_[i].value();
    OrtStatus* status = g_ort->Run(core.session(), run_options, core.input_names(), args, n_in, output_names,
                                   n_out, args + n_in);
    for (size_t i = 0; i < n_out; ++i) {
      if (args[n_in + i] != outputs_[i].value()) outputs_[i].SetValue(args[n_in + i]);
    }
    return status;
  };
  OrtStatus* st = run();
  if (st != nullptr && cancel_code_.load() == nullptr &&
      std::find(kind_.begin(), kind_.end(), OutputKind::kPredicted) != kind_.end()) {
    // A predicted shape (TypeScript allocated the buffer from the model's declared output shape)
    // can be wrong only for a model whose declarations are wrong; run again letting ORT
    // allocate those outputs (the copy path) rather than fail the call.
    g_ort->ReleaseStatus(st);
    for (size_t i = 0; i < kind_.size(); ++i) DropPredicted(i);
    st = run();
    // Only a retry that succeeds shows the shape was the problem; a model that fails anyway
    // reports its own error and is not counted.
    if (st == nullptr) core_->stats.shape_fallbacks++;
  }
  core_->stats.runs++;
  if (st != nullptr) {
    core_->stats.failures++;
    failure_ = FromOrtStatus(st, "running model");
  }
}

Failure RunJob::TakeFailure() {
  if (const char* c = cancel_code_.load()) {
    Failure f;
    if (std::strcmp(c, code::kTimeout) == 0) {
      f.Set(c, "inference timed out (timeoutMs): the request was dropped before it ran, or its run was terminated");
    } else if (std::strcmp(c, code::kDisposed) == 0) {
      f.Set(c, "the model was disposed before this request ran");
    } else {
      f.Set(c, "inference was aborted");
    }
    return f;
  }
  return std::move(failure_);
}

Failure RunJob::DetachedFailure(napi_env env) const {
  Failure f;
  if (borrowed_.empty()) return f;  // nothing borrowed (small inputs are the job's own)
  const int32_t tag = borrowed_.FirstDetached(env);
  if (tag == Borrowed::kNone) return f;
  const std::string what = tag >= 0 ? TensorName(core_->inputs()[static_cast<size_t>(tag)], false)
                                    : TensorName(core_->outputs()[output_index_[static_cast<size_t>(-1 - tag)]], true);
  f.Set(code::kBufferDetached,
        what + ": its buffer was transferred or detached (ArrayBuffer.prototype.transfer(), postMessage or "
               "structuredClone with a transfer list) while the run was in flight, so the result was discarded. "
               "Do not transfer a buffer passed to infer() until the call settles");
  return f;
}

Napi::Value RunJob::Results(Napi::Env env) {
  // A cancelled job reports its cancellation; otherwise a detached buffer outranks the run's own
  // result or failure (ORT may have failed on the moved memory's contents).
  Failure f = cancel_code_.load() == nullptr ? DetachedFailure(env) : Failure();
  if (!f) f = TakeFailure();
  if (f) {
    MakeError(env, f).ThrowAsJavaScriptException();
    return Napi::Value();
  }
  if (outputs_on_device_) {
    // Each output is a DeviceValue already (a lone run's whole output), or a view of its rows
    // of a batch output (the slot's OrtValue) whose parent keeps the batch output alive.
    Napi::Array results = Napi::Array::New(env, outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      std::shared_ptr<DeviceValue> dv;
      if (outputs_[i].form() == IoSlot::Form::kEmpty) {
        dv = std::move(out_parents_[i]);
      } else {
        dv = std::make_shared<DeviceValue>();
        dv->core = core_;
        dv->parent = std::move(out_parents_[i]);
        dv->value = outputs_[i].TakeValue();
        f = dv->Describe();
      }
      if (!f && !dv) f.Set(code::kInternal, TensorName(core_->outputs()[output_index_[i]], true) + ": no device-resident result");
      if (f) {
        MakeError(env, f).ThrowAsJavaScriptException();
        return Napi::Value();
      }
      Napi::Value js = DeviceTensor::New(env, std::move(dv));
      if (js.IsEmpty()) return Napi::Value();
      results.Set(static_cast<uint32_t>(i), js);
    }
    return results;
  }
  if (std::find(kind_.begin(), kind_.end(), OutputKind::kOrt) == kind_.end()) {
    // Every output was written into a buffer TypeScript holds: nothing to build.
    if (!scattered_) {
      for (OutputKind k : kind_) core_->stats.outputs_zero_copy += k == OutputKind::kPredicted ? 1 : 0;
    }
    return env.Null();
  }
  Napi::Array results = Napi::Array::New(env, outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (kind_[i] != OutputKind::kOrt) {
      // ORT wrote into the buffer passed with the call; TypeScript already holds its Tensor.
      results.Set(static_cast<uint32_t>(i), env.Null());
      if (kind_[i] == OutputKind::kPredicted && !scattered_) core_->stats.outputs_zero_copy++;
      continue;
    }
    OrtValue* v = outputs_[i].TakeValue();  // ownership moves to OrtValueToJs
    size_t copied = 0;
    Napi::Value js = OrtValueToJs(env, core_->outputs()[output_index_[i]], v, &copied, &f);
    if (f) {
      MakeError(env, f).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    core_->stats.outputs_copied++;
    core_->stats.bytes_copied += copied;
    results.Set(static_cast<uint32_t>(i), js);
  }
  return results;
}

void RunJob::ReleaseRefs(napi_env env) {
  borrowed_.Release(env);
  if (trace_ref_ != nullptr) {
    napi_delete_reference(env, trace_ref_);
    trace_ref_ = nullptr;
  }
}

bool RunJob::TraceInto(napi_env env, napi_value array) {
  bool is_typed = false;
  if (napi_is_typedarray(env, array, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  size_t length = 0;
  if (napi_get_typedarray_info(env, array, &type, &length, nullptr, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || length < kTraceSlots) {
    return false;
  }
  return napi_create_reference(env, array, 1, &trace_ref_) == napi_ok;
}

void RunJob::RecordRun(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point gathered,
                       std::chrono::steady_clock::time_point ran, std::chrono::steady_clock::time_point end,
                       int64_t rows, int64_t requests, int instance) {
  trace_.start = start;
  trace_.gathered = gathered;
  trace_.ran = ran;
  trace_.end = end;
  trace_.rows = rows;
  trace_.requests = requests;
  trace_.instance = instance;
  trace_.ran_at_all = true;
}

void RunJob::WriteTrace(napi_env env) {
  // Written here, on the JS thread, never from the thread that ran the job: the array is JS memory
  // (it may even live on V8's heap), which only this thread may touch.
  napi_value array = nullptr;
  void* data = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  if (napi_get_reference_value(env, trace_ref_, &array) != napi_ok || array == nullptr ||
      napi_get_typedarray_info(env, array, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || length < kTraceSlots || data == nullptr) {
    return;  // detached meanwhile: nothing to report
  }
  double* out = static_cast<double*>(data);
  if (!trace_.ran_at_all) {
    out[1] = 0;
    return;
  }
  auto us = [&](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::micro>(t - trace_.enqueued).count();
  };
  out[1] = 1;
  out[2] = us(trace_.start);
  out[3] = us(trace_.gathered);
  out[4] = us(trace_.ran);
  out[5] = us(trace_.end);
  out[6] = static_cast<double>(trace_.rows);
  out[7] = static_cast<double>(trace_.requests);
  out[8] = static_cast<double>(trace_.instance);
}

}  // namespace nimify

#include "run_job.h"

#include <algorithm>
#include <cstring>

#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

std::unique_ptr<RunJob> RunJob::Prepare(const Napi::CallbackInfo& info, std::shared_ptr<SessionCore> core,
                                        bool borrow) {
  Napi::Env env = info.Env();
  std::unique_ptr<RunJob> job;
  auto fail = [&](const char* c, const std::string& msg) -> std::unique_ptr<RunJob> {
    if (job) job->ReleaseRefs(env);
    MakeError(env, c, msg).ThrowAsJavaScriptException();
    return nullptr;
  };
  if (!core) return fail(code::kDisposed, "model has been disposed");
  if (info.Length() < 6 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray() ||
      !info[4].IsArray() || !info[5].IsNumber()) {
    return fail(code::kInvalidArgument,
                "run(inputData, inputDims, outputIndices, outputData, outputDims, predictedMask): expected five "
                "arrays and a number");
  }
  Napi::Array in_data = info[0].As<Napi::Array>();
  Napi::Array in_dims = info[1].As<Napi::Array>();
  Napi::Array out_index = info[2].As<Napi::Array>();
  Napi::Array out_data = info[3].As<Napi::Array>();
  Napi::Array out_dims = info[4].As<Napi::Array>();
  const uint32_t predicted_mask = info[5].As<Napi::Number>().Uint32Value();
  const auto& ios = core->inputs();
  const auto& oos = core->outputs();
  const uint32_t n_in = in_data.Length();
  const uint32_t n_out = out_index.Length();
  if (n_in != ios.size() || in_dims.Length() != n_in) {
    return fail(code::kInvalidArgument, "expected data and dims for " + std::to_string(ios.size()) +
                                            " inputs in model order, received " + std::to_string(n_in));
  }
  if (n_out == 0) return fail(code::kInvalidArgument, "at least one output must be requested");
  if (out_data.Length() != n_out || out_dims.Length() != n_out) {
    return fail(code::kInvalidArgument, "outputIndices, outputData and outputDims must have equal lengths");
  }

  job.reset(new RunJob());
  job->core_ = core;
  job->inputs_.reserve(n_in);
  job->outputs_.reserve(n_out);
  job->kind_.reserve(n_out);
  job->output_index_.reserve(n_out);
  std::vector<int64_t> dims;
  for (uint32_t i = 0; i < n_in; ++i) {
    OrtValue* v = nullptr;
    bool borrowed = false;
    Failure f;
    Napi::Value data = in_data.Get(i);
    if (!TensorToOrtValue(ios[i], false, data, in_dims.Get(i), &v, &borrowed, &dims, &f)) return fail(f.code, f.message);
    job->inputs_.push_back(v);
    if (borrow && borrowed) job->borrowed_.Add(env, data);
  }
  uint64_t seen = 0;
  for (uint32_t i = 0; i < n_out; ++i) {
    Napi::Value iv = out_index.Get(i);
    const double d = iv.IsNumber() ? iv.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < oos.size()) || static_cast<double>(static_cast<uint32_t>(d)) != d) {
      return fail(code::kInvalidArgument, "outputIndices[" + std::to_string(i) + "] is not an output index");
    }
    const uint32_t idx = static_cast<uint32_t>(d);
    const bool dup = idx < 64 ? (seen >> idx) & 1 : std::find(job->output_index_.begin(), job->output_index_.end(), idx) !=
                                                          job->output_index_.end();
    if (dup) return fail(code::kInvalidArgument, TensorName(oos[idx], true) + " requested twice");
    if (idx < 64) seen |= uint64_t{1} << idx;
    if (!oos[idx].is_tensor) {
      return fail(code::kUnsupported, TensorName(oos[idx], true) + " is a " + oos[idx].type_name +
                                          "; nimify fetches tensors only");
    }
    job->output_index_.push_back(idx);
    Napi::Value data = out_data.Get(i);
    OrtValue* v = nullptr;
    if (data.IsNull() || data.IsUndefined()) {
      job->kind_.push_back(OutputKind::kOrt);
    } else {
      bool borrowed = false;
      Failure f;
      if (!TensorToOrtValue(oos[idx], true, data, out_dims.Get(i), &v, &borrowed, &dims, &f)) {
        return fail(f.code, f.message);
      }
      if (borrow) job->borrowed_.Add(env, data);
      job->kind_.push_back(i < 32 && ((predicted_mask >> i) & 1) ? OutputKind::kPredicted : OutputKind::kSupplied);
    }
    job->outputs_.push_back(v);
  }
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
  for (OrtValue* v : inputs_) g_ort->ReleaseValue(v);
  for (OrtValue* v : outputs_) {
    if (v != nullptr) g_ort->ReleaseValue(v);
  }
  if (run_options_ != nullptr) g_ort->ReleaseRunOptions(run_options_);
}

void RunJob::Cancel(const char* c) {
  const char* expected = nullptr;
  if (cancel_code_.compare_exchange_strong(expected, c)) {
    // Safe while Execute() runs on another thread: ORT's terminate flag is atomic.
    OrtStatus* st = g_ort->RunOptionsSetTerminate(run_options_);
    if (st != nullptr) g_ort->ReleaseStatus(st);
  }
}

Napi::Value RunJob::Submit(Napi::Env env, std::unique_ptr<RunJob> job, double cancel_id) {
  EnvState* state = GetAddonData(env)->state.get();
  job->state_ = GetAddonData(env)->state;
  napi_value promise = nullptr;
  if (napi_create_promise(env, &job->deferred_, &promise) != napi_ok) {
    job->ReleaseRefs(env);
    MakeError(env, code::kInternal, "could not create a promise").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (cancel_id > 0) {
    job->cancel_id_ = cancel_id;
    state->cancellable[cancel_id] = job.get();
  }
  if (state->runs.empty()) napi_ref_threadsafe_function(env, state->completions);  // keep the loop alive
  state->runs.insert(job.get());
  {
    std::lock_guard<std::mutex> lock(state->mu);
    ++state->executing;
  }
  Executor::Instance().Submit(job.release());
  return Napi::Value(env, promise);
}

void RunJob::Run() {
  Execute();
  // Once the job is on `done` the JS thread may delete it at any moment: copy what we need.
  std::shared_ptr<EnvState> state = state_;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->done.push_back(this);
    // One wake-up covers every job finished before the JS thread drains; none is needed while
    // the JS thread is polling (it will find the job on its next loop turn).
    if (!state->polling && !state->wake_pending) wake = state->wake_pending = true;
    if (--state->executing == 0) state->idle.notify_all();
  }
  // Fails only while the env is closing; TeardownEnv then frees whatever is left on `done`.
  if (wake) napi_call_threadsafe_function(state->completions, nullptr, napi_tsfn_nonblocking);
}

size_t RunJob::DrainCompleted(napi_env raw_env, EnvState* state, int polling) {
  std::vector<RunJob*> batch;
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
  for (RunJob* job : batch) {
    Napi::HandleScope scope(env);
    state->runs.erase(job);
    if (job->cancel_id_ > 0) state->cancellable.erase(job->cancel_id_);
    Napi::Value results = job->Results(env);
    if (results.IsEmpty()) {
      napi_reject_deferred(raw_env, job->deferred_, env.GetAndClearPendingException().Value());
    } else {
      napi_resolve_deferred(raw_env, job->deferred_, results);
    }
    job->ReleaseRefs(raw_env);
    delete job;
  }
  if (!batch.empty() && state->runs.empty()) napi_unref_threadsafe_function(raw_env, state->completions);
  return state->runs.size();
}

void RunJob::Deliver(napi_env raw_env, napi_value /*js_cb*/, void* context, void* /*data*/) {
  DrainCompleted(raw_env, static_cast<EnvState*>(context), -1);
}

napi_threadsafe_function RunJob::CreateCompletionChannel(Napi::Env env, EnvState* state) {
  napi_threadsafe_function tsfn = nullptr;
  napi_value name = Napi::String::New(env, "nimify:infer");
  if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, state, Deliver, &tsfn) !=
      napi_ok) {
    return nullptr;
  }
  napi_unref_threadsafe_function(env, tsfn);
  return tsfn;
}

void RunJob::TeardownEnv(EnvState* state) {
  state->shutting_down = true;
  for (RunJob* job : state->runs) job->Cancel(code::kAborted);
  // Terminated runs stop at the next operator boundary; wait for them so that no executor thread
  // reads JS memory after the isolate is gone.
  {
    std::unique_lock<std::mutex> lock(state->mu);
    state->idle.wait(lock, [state] { return state->executing == 0; });
  }
  DrainCompleted(nullptr, state, 0);
}

void RunJob::Execute() {
  if (cancel_code_.load() != nullptr) return;  // cancelled while queued: skip the run entirely
  const char* names[kMaxInlineOutputs];
  std::vector<const char*> many;
  const char** output_names = names;
  if (output_index_.size() > kMaxInlineOutputs) {
    many.resize(output_index_.size());
    output_names = many.data();
  }
  for (size_t i = 0; i < output_index_.size(); ++i) output_names[i] = core_->output_names()[output_index_[i]];
  OrtStatus* st = g_ort->Run(core_->session(), run_options_, core_->input_names(), inputs_.data(), inputs_.size(),
                             output_names, output_index_.size(), outputs_.data());
  if (st != nullptr && cancel_code_.load() == nullptr &&
      std::find(kind_.begin(), kind_.end(), OutputKind::kPredicted) != kind_.end()) {
    // A predicted shape (TypeScript allocated the buffer from the model's declared output shape)
    // can be wrong only for a model whose declarations are wrong; run again letting ORT
    // allocate those outputs (the copy path) rather than fail the call.
    g_ort->ReleaseStatus(st);
    for (size_t i = 0; i < kind_.size(); ++i) {
      if (kind_[i] != OutputKind::kPredicted) continue;
      g_ort->ReleaseValue(outputs_[i]);
      outputs_[i] = nullptr;
      kind_[i] = OutputKind::kOrt;
    }
    core_->stats.shape_fallbacks++;
    st = g_ort->Run(core_->session(), run_options_, core_->input_names(), inputs_.data(), inputs_.size(),
                    output_names, output_index_.size(), outputs_.data());
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
    f.Set(c, std::strcmp(c, code::kTimeout) == 0 ? "inference timed out; the run was terminated" : "inference was aborted");
    return f;
  }
  return std::move(failure_);
}

Napi::Value RunJob::Results(Napi::Env env) {
  Failure f = TakeFailure();
  if (f) {
    MakeError(env, f).ThrowAsJavaScriptException();
    return Napi::Value();
  }
  Napi::Array results = Napi::Array::New(env, outputs_.size());
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (kind_[i] != OutputKind::kOrt) {
      // ORT wrote into the buffer passed with the call; TypeScript already holds its Tensor.
      results.Set(static_cast<uint32_t>(i), env.Null());
      if (kind_[i] == OutputKind::kPredicted) core_->stats.outputs_zero_copy++;
      continue;
    }
    OrtValue* v = outputs_[i];
    outputs_[i] = nullptr;  // ownership moves to OrtValueToJs
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

void RunJob::ReleaseRefs(napi_env env) { borrowed_.Release(env); }

}  // namespace nimify

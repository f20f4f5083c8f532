#include "run_job.h"

#include <algorithm>
#include <cstring>

#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

namespace {

// Output dims knowable before the run: every dim fixed, or named by a symbol an input bound.
bool PredictShape(const IoInfo& io, const std::vector<std::pair<const std::string*, int64_t>>& bound,
                  std::vector<int64_t>* dims) {
  if (!io.is_tensor || !io.has_shape || io.elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) return false;
  dims->resize(io.shape.size());
  for (size_t d = 0; d < io.shape.size(); ++d) {
    if (io.shape[d] >= 0) {
      (*dims)[d] = io.shape[d];
      continue;
    }
    const std::string& sym = io.symbolic[d];
    auto it = std::find_if(bound.begin(), bound.end(), [&](const auto& b) { return *b.first == sym; });
    if (sym.empty() || it == bound.end() || it->second < 0) return false;
    (*dims)[d] = it->second;
  }
  return true;
}

bool NameAt(Napi::Array names, uint32_t i, std::string* out) {
  Napi::Value v = names.Get(i);
  if (!v.IsString()) return false;
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

}  // namespace

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
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray()) {
    return fail(code::kInvalidArgument, "run(inputNames, inputs, outputNames, outputs): expected four arrays");
  }
  Napi::Array in_names = info[0].As<Napi::Array>();
  Napi::Array in_tensors = info[1].As<Napi::Array>();
  Napi::Array out_names = info[2].As<Napi::Array>();
  Napi::Array out_tensors = info[3].As<Napi::Array>();
  if (in_names.Length() != in_tensors.Length() || out_names.Length() != out_tensors.Length()) {
    return fail(code::kInvalidArgument, "run(): names and tensors must have equal lengths");
  }

  job.reset(new RunJob());
  job->core_ = core;
  const uint32_t n_in = in_names.Length();
  const auto& ios = core->inputs();
  if (n_in != ios.size()) {
    return fail(code::kInvalidArgument, "expected " + std::to_string(ios.size()) + " inputs, received " +
                                            std::to_string(n_in));
  }
  std::vector<bool> seen(ios.size(), false);
  std::string name;
  // Symbolic dim name -> value in this call (-1 when two inputs disagree), to predict outputs.
  std::vector<std::pair<const std::string*, int64_t>> bound;
  std::vector<int64_t> dims;
  for (uint32_t i = 0; i < n_in; ++i) {
    if (!NameAt(in_names, i, &name)) return fail(code::kInvalidArgument, "input names must be strings");
    const int idx = core->InputIndex(name.data(), name.size());
    if (idx < 0) return fail(code::kInvalidArgument, "unknown input '" + name + "'");
    if (seen[idx]) return fail(code::kInvalidArgument, "input '" + name + "' given twice");
    seen[idx] = true;
    Napi::Value t = in_tensors.Get(i);
    if (!t.IsObject()) return fail(code::kInvalidArgument, "input '" + name + "': expected a Tensor");
    OrtValue* v = nullptr;
    Napi::Value borrowed;
    Failure f;
    if (!TensorToOrtValue(env, ios[idx], "input '" + name + "'", t.As<Napi::Object>(), &v, &borrowed, &f, &dims)) {
      return fail(f.code, f.message);
    }
    for (size_t d = 0; ios[idx].has_shape && d < dims.size(); ++d) {
      const std::string& sym = ios[idx].symbolic[d];
      if (ios[idx].shape[d] >= 0 || sym.empty()) continue;
      auto it = std::find_if(bound.begin(), bound.end(), [&](const auto& b) { return *b.first == sym; });
      if (it == bound.end()) bound.emplace_back(&sym, dims[d]);
      else if (it->second != dims[d]) it->second = -1;
    }
    job->inputs_.push_back(v);
    job->input_names_.push_back(ios[idx].name.c_str());
    if (borrow && !borrowed.IsEmpty()) job->borrowed_.Add(env, borrowed);
  }

  const uint32_t n_out = out_names.Length();
  if (n_out == 0) return fail(code::kInvalidArgument, "at least one output must be requested");
  const auto& oos = core->outputs();
  for (uint32_t i = 0; i < n_out; ++i) {
    if (!NameAt(out_names, i, &name)) return fail(code::kInvalidArgument, "output names must be strings");
    const int idx = core->OutputIndex(name.data(), name.size());
    if (idx < 0) return fail(code::kInvalidArgument, "unknown output '" + name + "'");
    for (const char* prev : job->output_names_) {
      if (prev == oos[idx].name.c_str()) return fail(code::kInvalidArgument, "output '" + name + "' requested twice");
    }
    if (!oos[idx].is_tensor) {
      return fail(code::kUnsupported, "output '" + name + "' is a " + oos[idx].type_name +
                                          "; nimify fetches tensors only");
    }
    job->output_names_.push_back(oos[idx].name.c_str());
    Napi::Value t = out_tensors.Get(i);
    OrtValue* v = nullptr;
    if (t.IsObject()) {
      Napi::Value borrowed;
      Failure f;
      if (!TensorToOrtValue(env, oos[idx], "output '" + name + "'", t.As<Napi::Object>(), &v, &borrowed, &f)) {
        return fail(f.code, f.message);
      }
      if (borrowed.IsEmpty()) {
        g_ort->ReleaseValue(v);
        return fail(code::kInvalidArgument, "output '" + name + "': string outputs cannot be preallocated");
      }
      if (borrow) job->borrowed_.Add(env, borrowed);
      job->kind_.push_back(OutputKind::kCaller);
    } else if (PredictShape(oos[idx], bound, &dims)) {
      Failure f;
      Napi::Value typed = AllocateOutput(env, oos[idx], dims, &v, &f);
      if (typed.IsEmpty()) return fail(f.code, f.message);
      napi_ref ref = nullptr;
      napi_create_reference(env, typed, 1, &ref);
      job->result_refs_.resize(n_out, nullptr);
      job->result_refs_[i] = ref;
      job->kind_.push_back(OutputKind::kPredicted);
    } else {
      job->kind_.push_back(OutputKind::kOrt);
    }
    job->output_info_.push_back(&oos[idx]);
    job->output_dims_.push_back(v != nullptr ? dims : std::vector<int64_t>());
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
  OrtStatus* st = g_ort->Run(core_->session(), run_options_, input_names_.data(), inputs_.data(), inputs_.size(),
                             output_names_.data(), output_names_.size(), outputs_.data());
  if (st != nullptr && cancel_code_.load() == nullptr &&
      std::find(kind_.begin(), kind_.end(), OutputKind::kPredicted) != kind_.end()) {
    // A predicted shape can be wrong only for a model whose declared output shapes are wrong;
    // run again letting ORT allocate those outputs (the copy path) rather than fail the call.
    g_ort->ReleaseStatus(st);
    for (size_t i = 0; i < kind_.size(); ++i) {
      if (kind_[i] != OutputKind::kPredicted) continue;
      g_ort->ReleaseValue(outputs_[i]);
      outputs_[i] = nullptr;
      kind_[i] = OutputKind::kOrt;
    }
    core_->stats.shape_fallbacks++;
    st = g_ort->Run(core_->session(), run_options_, input_names_.data(), inputs_.data(), inputs_.size(),
                    output_names_.data(), output_names_.size(), outputs_.data());
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
    Napi::Value js;
    switch (kind_[i]) {
      case OutputKind::kCaller:
        js = env.Null();  // ORT wrote into the caller's buffer; TypeScript returns that Tensor
        break;
      case OutputKind::kPredicted: {
        napi_value typed = nullptr;
        napi_get_reference_value(env, result_refs_[i], &typed);
        js = OutputTriple(env, *output_info_[i], Napi::Value(env, typed), output_dims_[i]);
        core_->stats.outputs_zero_copy++;
        break;
      }
      case OutputKind::kOrt: {
        OrtValue* v = outputs_[i];
        outputs_[i] = nullptr;  // ownership moves to OrtValueToJs
        size_t copied = 0;
        js = OrtValueToJs(env, v, "output '" + std::string(output_names_[i]) + "'", &f, &copied);
        if (f) {
          MakeError(env, f).ThrowAsJavaScriptException();
          return Napi::Value();
        }
        core_->stats.outputs_copied++;
        core_->stats.bytes_copied += copied;
        break;
      }
    }
    results.Set(static_cast<uint32_t>(i), js);
  }
  return results;
}

void RunJob::ReleaseRefs(napi_env env) {
  borrowed_.Release(env);
  for (napi_ref r : result_refs_) {
    if (r != nullptr) napi_delete_reference(env, r);
  }
  result_refs_.clear();
}

}  // namespace nimify

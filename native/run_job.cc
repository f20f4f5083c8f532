#include "run_job.h"

#include <cstring>

#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

namespace {

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
    if (job) job->DropBorrowed(env);
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
    if (!TensorToOrtValue(env, ios[idx], "input '" + name + "'", t.As<Napi::Object>(), &v, &borrowed, &f)) {
      return fail(f.code, f.message);
    }
    job->inputs_.push_back(v);
    job->input_names_.push_back(ios[idx].name.c_str());
    if (borrow && !borrowed.IsEmpty()) job->Borrow(env, borrowed);
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
      if (borrow) job->Borrow(env, borrowed);
    }
    job->outputs_.push_back(v);
    job->preallocated_.push_back(v != nullptr);
  }
  if (Failure f = FromOrtStatus(g_ort->CreateRunOptions(&job->run_options_), "creating run options")) {
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

void RunJob::MakeCancellable(Napi::Env env, double id) {
  cancel_id_ = id;
  GetAddonData(env)->state->cancellable[id] = this;
}

void RunJob::Cancel(const char* c) {
  const char* expected = nullptr;
  if (cancel_code_.compare_exchange_strong(expected, c)) {
    // Safe while Execute() runs on another thread: ORT's terminate flag is atomic.
    OrtStatus* st = g_ort->RunOptionsSetTerminate(run_options_);
    if (st != nullptr) g_ort->ReleaseStatus(st);
  }
}

void RunJob::Execute() {
  if (cancel_code_.load() != nullptr) return;  // cancelled while queued: skip the run entirely
  OrtStatus* st = g_ort->Run(core_->session(), run_options_, input_names_.data(), inputs_.data(), inputs_.size(),
                             output_names_.data(), output_names_.size(), outputs_.data());
  if (st != nullptr) failure_ = FromOrtStatus(st, "running model");
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
    if (preallocated_[i]) {
      results.Set(static_cast<uint32_t>(i), env.Null());  // ORT wrote into the caller's buffer
      continue;
    }
    OrtValue* v = outputs_[i];
    outputs_[i] = nullptr;  // ownership moves to OrtValueToJs
    Napi::Value js = OrtValueToJs(env, v, "output '" + std::string(output_names_[i]) + "'", &f);
    if (f) {
      MakeError(env, f).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    results.Set(static_cast<uint32_t>(i), js);
  }
  return results;
}

void RunJob::Complete(Napi::Env env, Napi::Promise::Deferred& deferred) {
  Napi::Value results = Results(env);
  if (results.IsEmpty()) {
    Napi::Error err = env.GetAndClearPendingException();
    deferred.Reject(err.Value());
  } else {
    deferred.Resolve(results);
  }
}

}  // namespace nimify

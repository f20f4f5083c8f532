#include "session.h"

#include <cmath>

#include "async_job.h"
#include "errors.h"
#include "ort_api.h"
#include "run_job.h"

namespace nimify {

namespace {

// Loads a model on the threadpool. Borrows the model bytes (when given) until ORT has parsed them.
class LoadJob : public AsyncJob {
 public:
  std::string path;
  const uint8_t* bytes = nullptr;
  size_t length = 0;
  SessionConfig config;

  void BorrowBytes(Napi::Env env, Napi::Value v) { borrowed_.Add(env, v); }

 protected:
  void Execute() override { core_ = SessionCore::Create(path, bytes, length, config, &failure_); }
  void Complete(Napi::Env env, Napi::Promise::Deferred& deferred) override {
    if (!core_) {
      deferred.Reject(MakeError(env, failure_).Value());
      return;
    }
    deferred.Resolve(Session::NewInstance(env, std::move(core_)));
  }

 private:
  std::shared_ptr<SessionCore> core_;
  Failure failure_;
};

bool ReadInt(Napi::Object o, const char* key, int min, int max, int* out, Failure* f) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return true;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max) || std::floor(d) != d) {
    f->Set(code::kInvalidArgument, std::string("options.") + key + " must be an integer in [" + std::to_string(min) +
                                       ", " + std::to_string(max) + "]");
    return false;
  }
  *out = static_cast<int>(d);
  return true;
}

// The TypeScript layer validates options first and maps names to numbers; this re-checks types
// so that a direct call into the addon cannot crash it.
bool ParseConfig(Napi::Value value, SessionConfig* c, Failure* f) {
  if (value.IsUndefined() || value.IsNull()) return true;
  if (!value.IsObject()) {
    f->Set(code::kInvalidArgument, "options must be an object");
    return false;
  }
  Napi::Object o = value.As<Napi::Object>();
  if (!ReadInt(o, "intraOpNumThreads", 0, 1024, &c->intra_op_threads, f) ||
      !ReadInt(o, "interOpNumThreads", 0, 1024, &c->inter_op_threads, f) ||
      !ReadInt(o, "graphOptimizationLevel", 0, 99, &c->optimization_level, f) ||
      !ReadInt(o, "executionMode", 0, 1, &c->execution_mode, f) ||
      !ReadInt(o, "logSeverityLevel", 0, 4, &c->log_severity, f)) {
    return false;
  }
  Napi::Value p = o.Get("optimizedModelFilePath");
  if (p.IsString()) c->optimized_model_path = p.As<Napi::String>().Utf8Value();
  Napi::Value fdo = o.Get("freeDimensionOverrides");
  if (fdo.IsObject()) {
    Napi::Object m = fdo.As<Napi::Object>();
    Napi::Array keys = m.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      Napi::Value v = m.Get(k);
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0) || std::floor(d) != d || d > 9007199254740991.0) {
        f->Set(code::kInvalidArgument, "options.freeDimensionOverrides." + k + " must be a non-negative integer");
        return false;
      }
      c->free_dimension_overrides.emplace_back(k, static_cast<int64_t>(d));
    }
  }
  Napi::Value eps = o.Get("executionProviders");
  if (eps.IsArray()) {
    Napi::Array a = eps.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value e = a.Get(i);
      if (!e.IsString()) {
        f->Set(code::kInvalidArgument, "options.executionProviders must be an array of names");
        return false;
      }
      c->execution_providers.push_back(e.As<Napi::String>().Utf8Value());
    }
  }
  return true;
}

Napi::Object DescribeIo(Napi::Env env, const IoInfo& io) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", io.name);
  o.Set("type", io.type_name);
  if (io.has_shape) {
    Napi::Array shape = Napi::Array::New(env, io.shape.size());
    for (size_t i = 0; i < io.shape.size(); ++i) {
      Napi::Value d = io.shape[i] >= 0 ? Napi::Number::New(env, static_cast<double>(io.shape[i])).As<Napi::Value>()
                      : io.symbolic[i].empty() ? Napi::Number::New(env, -1).As<Napi::Value>()
                                               : Napi::String::New(env, io.symbolic[i]).As<Napi::Value>();
      shape.Set(static_cast<uint32_t>(i), d);
    }
    o.Set("shape", shape);
  } else {
    o.Set("shape", env.Null());
  }
  return o;
}

}  // namespace

Napi::Function Session::Define(Napi::Env env) {
  return DefineClass(env, "Session",
                     {
                         InstanceMethod<&Session::Describe>("describe"),
                         InstanceMethod<&Session::Run>("run"),
                         InstanceMethod<&Session::RunSync>("runSync"),
                         InstanceMethod<&Session::Cancel>("cancel"),
                         InstanceMethod<&Session::Release>("release"),
                         InstanceMethod<&Session::Stats>("stats"),
                     });
}

Session::Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    MakeError(info.Env(), code::kInvalidArgument, "Session cannot be constructed directly; use loadModel()")
        .ThrowAsJavaScriptException();
    return;
  }
  auto* holder = info[0].As<Napi::External<std::shared_ptr<SessionCore>>>().Data();
  core_ = *holder;
}

Napi::Object Session::NewInstance(Napi::Env env, std::shared_ptr<SessionCore> core) {
  // The External lives only for the constructor call; the constructor copies the shared_ptr.
  Napi::External<std::shared_ptr<SessionCore>> ext = Napi::External<std::shared_ptr<SessionCore>>::New(env, &core);
  return GetAddonData(env)->session_ctor.New({ext});
}

Napi::Value Session::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RuntimeLoaded()) {
    MakeError(env, code::kRuntimeUnavailable, "ONNX Runtime is not loaded").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto job = std::make_unique<LoadJob>();
  Failure f;
  if (!ParseConfig(info[1], &job->config, &f)) {
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info[0].IsString()) {
    job->path = info[0].As<Napi::String>().Utf8Value();
  } else if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    job->bytes = bytes.Data();
    job->length = bytes.ByteLength();
    if (job->bytes == nullptr || job->length == 0) {
      MakeError(env, code::kInvalidModel, "model bytes are empty").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    job->BorrowBytes(env, bytes);
  } else {
    MakeError(env, code::kInvalidArgument, "model must be a path string or a Uint8Array")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return AsyncJob::Queue(env, job.release(), "nimify:loadModel");
}

Napi::Value Session::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!core_) {
    MakeError(env, code::kDisposed, "model has been disposed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  Napi::Array inputs = Napi::Array::New(env, core_->inputs().size());
  for (size_t i = 0; i < core_->inputs().size(); ++i) inputs.Set(static_cast<uint32_t>(i), DescribeIo(env, core_->inputs()[i]));
  Napi::Array outputs = Napi::Array::New(env, core_->outputs().size());
  for (size_t i = 0; i < core_->outputs().size(); ++i)
    outputs.Set(static_cast<uint32_t>(i), DescribeIo(env, core_->outputs()[i]));
  const ModelMetadata& m = core_->metadata();
  Napi::Object meta = Napi::Object::New(env);
  meta.Set("producerName", m.producer_name);
  meta.Set("graphName", m.graph_name);
  meta.Set("domain", m.domain);
  meta.Set("description", m.description);
  meta.Set("graphDescription", m.graph_description);
  meta.Set("version", Napi::Number::New(env, static_cast<double>(m.version)));
  Napi::Object custom = Napi::Object::New(env);
  for (const auto& [k, v] : m.custom) custom.Set(k, v);
  meta.Set("custom", custom);
  out.Set("inputs", inputs);
  out.Set("outputs", outputs);
  out.Set("metadata", meta);
  return out;
}

Napi::Value Session::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<RunJob> job = RunJob::Prepare(info, core_, /*borrow=*/true);
  if (!job) return env.Undefined();
  const double id = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 0;
  return RunJob::Submit(env, std::move(job), id);
}

Napi::Value Session::RunSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<RunJob> job = RunJob::Prepare(info, core_, /*borrow=*/false);
  if (!job) return env.Undefined();
  job->Execute();
  Napi::Value results = job->Results(env);
  job->ReleaseRefs(env);
  return results.IsEmpty() ? env.Undefined() : results;
}

Napi::Value Session::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) return Napi::Boolean::New(env, false);
  const std::string c = info[1].As<Napi::String>().Utf8Value();
  auto& cancellable = GetAddonData(env)->state->cancellable;
  auto it = cancellable.find(info[0].As<Napi::Number>().DoubleValue());
  if (it == cancellable.end()) return Napi::Boolean::New(env, false);
  it->second->Cancel(c == code::kTimeout ? code::kTimeout : code::kAborted);
  return Napi::Boolean::New(env, true);
}

Napi::Value Session::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!core_) return o;
  const SessionStats& s = core_->stats;
  o.Set("runs", Napi::Number::New(env, static_cast<double>(s.runs.load())));
  o.Set("failures", Napi::Number::New(env, static_cast<double>(s.failures.load())));
  o.Set("outputsZeroCopy", Napi::Number::New(env, static_cast<double>(s.outputs_zero_copy.load())));
  o.Set("outputsCopied", Napi::Number::New(env, static_cast<double>(s.outputs_copied.load())));
  o.Set("bytesCopied", Napi::Number::New(env, static_cast<double>(s.bytes_copied.load())));
  o.Set("shapeFallbacks", Napi::Number::New(env, static_cast<double>(s.shape_fallbacks.load())));
  return o;
}

Napi::Value Session::Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int polling = info.Length() > 0 && info[0].ToBoolean().Value() ? 1 : 0;
  const size_t pending = RunJob::DrainCompleted(env, GetAddonData(env)->state.get(), polling);
  return Napi::Number::New(env, static_cast<double>(pending));
}

Napi::Value Session::Release(const Napi::CallbackInfo& info) {
  core_.reset();
  return info.Env().Undefined();
}

}  // namespace nimify

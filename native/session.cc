#include "session.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <initializer_list>

#include <sys/stat.h>
#include <unistd.h>

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
  int instances = 1;
  bool scheduled = false;  // batching or instances given: requests go through a Scheduler
  BatchingConfig batching;
  double inline_below_us = 0;  // options.inlineBelowMicros: the scheduler's, or the session's without one

  void BorrowBytes(Napi::Env env, Napi::Value v) { borrowed_.Add(env, v); }

 protected:
  // Threadpool: one session per instance (each has its own ORT thread pool and memory arena),
  // and the inline session when the model gets one (InlineSessionWanted).
  void Execute() override {
    // Instances after the first take exactly the providers the first ended up with, each
    // required: every instance of a model runs on the same providers (model.providers describes
    // them all), and one that cannot fails the load instead of silently falling back alone.
    SessionConfig rest = config;
    int64_t resident_growth = -1;  // of the primary session's creation; -1 unknown
    for (int i = 0; i < instances; ++i) {
      if (i == 1) rest = ExactlyPrimaryProviders();
      const int64_t before = i == 0 ? ResidentBytes() : -1;
      std::shared_ptr<SessionCore> core = SessionCore::Create(path, bytes, length, i == 0 ? config : rest, &failure_);
      if (!core) {
        cores_.clear();
        return;
      }
      if (const int64_t after = before >= 0 ? ResidentBytes() : -1; after >= 0) resident_growth = after - before;
      cores_.push_back(std::move(core));
    }
    if (InlineSessionWanted(resident_growth)) {
      SessionConfig single = ExactlyPrimaryProviders();
      single.intra_op_threads = 1;
      single.inter_op_threads = 1;
      single.optimized_model_path.clear();  // (the primary session wrote it)
      // On failure runs on the JS thread keep the primary session: nothing is lost but speed.
      Failure ignored;
      inline_core_ = SessionCore::Create(path, bytes, length, single, &ignored);
    }
  }
  void Complete(Napi::Env env, Napi::Promise::Deferred& deferred) override {
    if (cores_.empty()) {
      deferred.Reject(MakeError(env, failure_).Value());
      return;
    }
    if (cores_[0]->fixed_buffers()) {
      // Runs go through fixed buffers per size (CUDA graphs replay on their addresses), which an
      // instance owns: a model without a scheduler gets one (no batching, one instance). Every
      // dim but the first must be fixed; a dynamic first dim gets buffers per size.
      scheduled = true;
      const std::string who = cores_[0]->cuda_graph() ? "options.executionProviders: CUDA graphs (enableCudaGraph / cudaGraph)"
                                                      : "NIMIFY_IO_BINDING=fixed";
      const bool gathers = batching.batching && batching.batch_dim != 0 && Scheduler::BatchDimProblem(*cores_[0]).empty();
      std::string why;
      if (std::string shape = FixedShapeProblem(*cores_[0]); !shape.empty()) {
        why = "which need fixed dims besides the first, but " + shape;
      } else if (std::string lone = gathers ? "" : LoneShapeProblem(*cores_[0]); !lone.empty()) {
        why = "but " + lone;
      } else if (gathers && cores_[0]->cuda_graph() && !batching.pad_to_preferred && batching.max_batch_size > 1) {
        // A graph per batch size: unpadded, one for every size up to maxBatchSize, each kept
        // for the model's life.
        why = "one graph per batch size: with batching they need options.batching.padToPreferred (batches padded to preferredBatchSizes)";
      } else if (gathers && batching.pad_to_preferred) {
        std::vector<int64_t> sizes = batching.preferred;
        if (std::find(sizes.begin(), sizes.end(), batching.max_batch_size) == sizes.end()) sizes.push_back(batching.max_batch_size);
        if (sizes.size() > Instance::kMaxFixedSizes) {
          why = "at most " + std::to_string(Instance::kMaxFixedSizes) + " batch sizes, but padToPreferred pads to " +
                std::to_string(sizes.size()) + " (preferredBatchSizes and maxBatchSize)";
        }
      }
      if (!why.empty()) {
        failure_.Set(code::kInvalidArgument, who + " run on fixed buffers, " + why);
        deferred.Reject(MakeError(env, failure_).Value());
        return;
      }
    }
    if (inline_core_) cores_[0]->set_inline_session(inline_core_);
    std::shared_ptr<Scheduler> scheduler;
    if (scheduled) {
      // A model on a GPU provider never runs a batch on the JS thread: its run waits on the
      // device (copies, synchronization), time the event loop would be blocked for. The rule is
      // the bound path's (io_binding: every device session, and the CPU diagnostics switch that
      // runs the device path, where it is tested).
      batching.inline_below_us = cores_[0]->io_binding() ? 0 : inline_below_us;
      scheduler = Scheduler::Create(env, cores_, batching, &failure_);
      if (!scheduler) {
        deferred.Reject(MakeError(env, failure_).Value());
        return;
      }
    } else {
      cores_[0]->set_inline_below_us(inline_below_us);  // (0 for io_binding sessions, as above)
    }
    Napi::Object session = Session::NewInstance(env, cores_[0], std::move(scheduler));
    if (session.IsEmpty() || env.IsExceptionPending()) {
      // The constructor threw (it could not make the session's run function): the load fails
      // with that error rather than leaving it pending in this callback.
      Napi::Value err = env.IsExceptionPending() ? env.GetAndClearPendingException().Value()
                                                 : MakeError(env, code::kInternal, "could not create the session").Value();
      deferred.Reject(err);
      return;
    }
    deferred.Resolve(session);
  }

 private:
  // `config` with exactly the execution providers the primary session ended up with, each
  // required: every other session of the model runs on the same providers (model.providers
  // describes them all), and one that cannot fails instead of silently falling back alone.
  SessionConfig ExactlyPrimaryProviders() const {
    SessionConfig c = config;
    c.execution_providers.clear();
    const auto& used = cores_[0]->providers();
    for (const EpRequest& ep : config.execution_providers) {
      if (std::find(used.begin(), used.end(), ep.name) == used.end()) continue;
      c.execution_providers.push_back(ep);
      c.execution_providers.back().required = true;
    }
    return c;
  }

  // Whether runs on the JS thread get a single-threaded session of their own
  // (SessionCore::inline_session says why): when some may run there (inlineBelowMicros > 0, a
  // CPU session), the caller left threading to nimify (no intra- or inter-op thread count, no
  // parallel execution mode), and a second copy of the model is cheap — its file (or bytes) at
  // most kInlineSessionMaxBytes and the primary session's creation grew resident memory by at
  // most kInlineSessionMaxGrowth (weights in external data files do not show in the file's
  // size). Models that small are the ones whose batches can be cheap enough to run inline; a
  // larger one is loaded once, as before. (The growth is the whole process's: another load at
  // the same time makes it larger, memory freed meanwhile smaller — a heuristic, whose error
  // costs memory, never correctness.)
  static constexpr int64_t kInlineSessionMaxBytes = 16 << 20;
  static constexpr int64_t kInlineSessionMaxGrowth = 64 << 20;
  bool InlineSessionWanted(int64_t resident_growth) const {
    if (inline_below_us <= 0 || config.intra_op_threads >= 0 || config.inter_op_threads >= 0 || config.execution_mode == 1 ||
        cores_.empty() || cores_[0]->io_binding()) {
      return false;
    }
    if (resident_growth > kInlineSessionMaxGrowth) return false;
    int64_t size = static_cast<int64_t>(length);
    if (bytes == nullptr) {
      struct stat st;
      size = ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
    }
    return size >= 0 && size <= kInlineSessionMaxBytes;
  }

  // This process's resident memory in bytes (Linux: /proc/self/statm), or -1 where unknown.
  static int64_t ResidentBytes() {
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1;
    long long pages_total = 0, pages_resident = 0;
    const bool ok = std::fscanf(f, "%lld %lld", &pages_total, &pages_resident) == 2;
    std::fclose(f);
    const long page = ::sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? static_cast<int64_t>(pages_resident) * page : -1;
  }

  std::vector<std::shared_ptr<SessionCore>> cores_;
  std::shared_ptr<SessionCore> inline_core_;
  Failure failure_;
};

template <typename T>
bool ReadInt(Napi::Object o, const char* key, double min, double max, T* out, Failure* f, const char* prefix = "options.") {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return true;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= min && d <= max) || std::floor(d) != d) {
    f->Set(code::kInvalidArgument, std::string(prefix) + key + " must be an integer in [" +
                                       std::to_string(static_cast<int64_t>(min)) + ", " +
                                       std::to_string(static_cast<int64_t>(max)) + "]");
    return false;
  }
  *out = static_cast<T>(d);
  return true;
}

// options.instances, options.inlineBelowMicros and options.batching (already normalized by
// src/runtime/options.ts; re-checked).
bool ParseScheduling(Napi::Object o, LoadJob* job, Failure* f) {
  if (!ReadInt(o, "instances", 1, 64, &job->instances, f) ||
      !ReadInt(o, "inlineBelowMicros", 0, 1e6, &job->inline_below_us, f)) {
    return false;
  }
  Napi::Value bv = o.Get("batching");
  job->scheduled = job->instances > 1 || (!bv.IsUndefined() && !bv.IsNull());
  if (bv.IsUndefined() || bv.IsNull()) return true;
  if (!bv.IsObject()) {
    f->Set(code::kInvalidArgument, "options.batching must be an object");
    return false;
  }
  Napi::Object b = bv.As<Napi::Object>();
  BatchingConfig& c = job->batching;
  c.batching = true;
  c.max_batch_size = 8;
  double queue_size = 1024;
  const char* p = "options.batching.";
  if (!ReadInt(b, "maxBatchSize", 1, 1 << 20, &c.max_batch_size, f, p) ||
      !ReadInt(b, "maxQueueDelayMicros", 0, 60e6, &c.max_queue_delay_us, f, p) ||
      !ReadInt(b, "maxQueueSize", 1, 1e9, &queue_size, f, p)) {
    return false;
  }
  c.max_queue_size = static_cast<size_t>(queue_size);
  c.adaptive = b.Get("adaptive").ToBoolean().Value();
  c.pad_to_preferred = b.Get("padToPreferred").ToBoolean().Value();
  Napi::Value dim = b.Get("batchDim");
  c.batch_dim = dim.IsBoolean() ? (dim.As<Napi::Boolean>().Value() ? 1 : 0) : -1;
  Napi::Value pref = b.Get("preferredBatchSizes");
  if (pref.IsArray()) {
    Napi::Array a = pref.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a.Get(i);
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
      if (!(d >= 1 && d <= static_cast<double>(c.max_batch_size)) || std::floor(d) != d) {
        f->Set(code::kInvalidArgument, "options.batching.preferredBatchSizes must hold integers in [1, maxBatchSize]");
        return false;
      }
      c.preferred.push_back(static_cast<int64_t>(d));
    }
    std::sort(c.preferred.begin(), c.preferred.end());
    c.preferred.erase(std::unique(c.preferred.begin(), c.preferred.end()), c.preferred.end());
  }
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
  Napi::Value spin = o.Get("allowSpinning");
  if (!spin.IsUndefined()) {
    if (!spin.IsBoolean()) {
      f->Set(code::kInvalidArgument, "options.allowSpinning must be true or false");
      return false;
    }
    c->allow_spinning = spin.As<Napi::Boolean>().Value() ? 1 : 0;
  }
  Napi::Value arena = o.Get("memoryArena");
  if (!arena.IsUndefined()) {
    if (!arena.IsBoolean()) {
      f->Set(code::kInvalidArgument, "options.memoryArena must be true or false");
      return false;
    }
    c->memory_arena = arena.As<Napi::Boolean>().Value() ? 1 : 0;
  }
  Napi::Value io = o.Get("ioBinding");  // NIMIFY_IO_BINDING, validated by TypeScript (options.ts ioBindingFromEnv)
  if (!io.IsUndefined()) {
    const std::string v = io.IsString() ? io.As<Napi::String>().Utf8Value() : "";
    if (v != "always" && v != "fixed") {
      f->Set(code::kInvalidArgument, "NIMIFY_IO_BINDING must be 'always' or 'fixed'");
      return false;
    }
    c->io_binding = v == "fixed" ? SessionConfig::IoBinding::kFixed : SessionConfig::IoBinding::kAlways;
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
  // [{ name, ortName, required, library, keys, values }] (src/runtime/providers.ts
  // NativeProviderRequest): validated there; re-checked here only for shape.
  Napi::Value eps = o.Get("executionProviders");
  if (eps.IsArray()) {
    Napi::Array a = eps.As<Napi::Array>();
    auto strings = [](Napi::Value v, std::vector<std::string>* out) {
      if (!v.IsArray()) return false;
      Napi::Array arr = v.As<Napi::Array>();
      for (uint32_t j = 0; j < arr.Length(); ++j) {
        Napi::Value e = arr.Get(j);
        if (!e.IsString()) return false;
        out->push_back(e.As<Napi::String>().Utf8Value());
      }
      return true;
    };
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value e = a.Get(i);
      EpRequest r;
      bool ok = e.IsObject();
      if (ok) {
        Napi::Object eo = e.As<Napi::Object>();
        Napi::Value name = eo.Get("name"), ort_name = eo.Get("ortName"), library = eo.Get("library"),
                    required = eo.Get("required");
        ok = name.IsString() && ort_name.IsString() && library.IsString() && required.IsBoolean() &&
             strings(eo.Get("keys"), &r.keys) && strings(eo.Get("values"), &r.values) && r.keys.size() == r.values.size();
        if (ok) {
          r.name = name.As<Napi::String>().Utf8Value();
          r.ort_name = ort_name.As<Napi::String>().Utf8Value();
          r.library = library.As<Napi::String>().Utf8Value();
          r.required = required.As<Napi::Boolean>().Value();
        }
      }
      if (!ok) {
        f->Set(code::kInvalidArgument, "options.executionProviders[" + std::to_string(i) + "] is malformed");
        return false;
      }
      c->execution_providers.push_back(std::move(r));
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
                         InstanceMethod<&Session::RunSync>("runSync"),
                         InstanceMethod<&Session::Cancel>("cancel"),
                         InstanceMethod<&Session::Close>("close"),
                         InstanceMethod<&Session::Release>("release"),
                         InstanceMethod<&Session::Stats>("stats"),
                         InstanceMethod<&Session::ResetStats>("resetStats"),
                     });
}

Session::Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    MakeError(info.Env(), code::kInvalidArgument, "Session cannot be constructed directly; use loadModel()")
        .ThrowAsJavaScriptException();
    return;
  }
  auto* parts = info[0].As<Napi::External<Parts>>().Data();
  core_ = parts->core;
  scheduler_ = parts->scheduler;
  run_target_ = std::make_shared<Parts>(*parts);
  napi_env env = info.Env();
  auto* data = new std::shared_ptr<Parts>(run_target_);
  napi_value run = nullptr;
  if (napi_create_function(env, "run", NAPI_AUTO_LENGTH, &Session::RunBound, data, &run) != napi_ok ||
      napi_add_finalizer(
          env, run, data, [](napi_env, void* d, void*) { delete static_cast<std::shared_ptr<Parts>*>(d); }, nullptr,
          nullptr) != napi_ok) {
    delete data;  // (a function that exists without its finalizer is never called: nothing sees it)
    MakeError(info.Env(), code::kInternal, "could not create the session's run function").ThrowAsJavaScriptException();
    return;
  }
  info.This().As<Napi::Object>().Set("run", Napi::Value(env, run));
}

Napi::Object Session::NewInstance(Napi::Env env, std::shared_ptr<SessionCore> core,
                                  std::shared_ptr<Scheduler> scheduler) {
  // The External lives only for the constructor call; the constructor copies the shared_ptrs.
  Parts parts{std::move(core), std::move(scheduler)};
  Napi::External<Parts> ext = Napi::External<Parts>::New(env, &parts);
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
  if (!ParseConfig(info[1], &job->config, &f) ||
      (info[1].IsObject() && !ParseScheduling(info[1].As<Napi::Object>(), job.get(), &f))) {
    MakeError(env, f).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // One switch for every busy-wait nimify owns: ORT's pool threads and the scheduler's idle poll.
  job->batching.spin = job->config.allow_spinning != 0;
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
  // null: dim 0 of every input and output can be the batch dim; else why not.
  const std::string no_batch = Scheduler::BatchDimProblem(*core_);
  out.Set("noBatchDim", no_batch.empty() ? env.Null() : Napi::String::New(env, no_batch));
  // Whether infer() goes through a Scheduler (its watchdog enforces timeouts of running requests).
  out.Set("scheduled", Napi::Boolean::New(env, scheduler_ != nullptr));
  Napi::Array providers = Napi::Array::New(env, core_->providers().size());
  for (size_t i = 0; i < core_->providers().size(); ++i) providers.Set(static_cast<uint32_t>(i), core_->providers()[i]);
  out.Set("providers", providers);
  Napi::Array skipped = Napi::Array::New(env, core_->skipped_providers().size());
  for (size_t i = 0; i < core_->skipped_providers().size(); ++i) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("name", core_->skipped_providers()[i].name);
    s.Set("reason", core_->skipped_providers()[i].reason);
    skipped.Set(static_cast<uint32_t>(i), s);
  }
  out.Set("skippedProviders", skipped);
  out.Set("onDevice", Napi::Boolean::New(env, core_->on_device()));
  out.Set("device", core_->memory().location());
  out.Set("pinnedStaging", Napi::Boolean::New(env, core_->memory().pinned()));
  return out;
}

napi_value Session::RunBound(napi_env env, napi_callback_info cbinfo) {
  Napi::CallbackInfo info(env, cbinfo);
  const auto* target = static_cast<const std::shared_ptr<Parts>*>(info.Data());
  return Run(info, **target);
}

Napi::Value Session::Run(const Napi::CallbackInfo& info, const Parts& target) {
  Napi::Env env = info.Env();
  // Copies: nothing a run does may empty `target` under them (Release() runs from JS only).
  const std::shared_ptr<Scheduler> scheduler = target.scheduler;
  const std::shared_ptr<SessionCore> core = target.core;
  const RunJob::Route route = !scheduler             ? RunJob::Route::kExecutor
                              : scheduler->batches() ? RunJob::Route::kBatched
                                                     : RunJob::Route::kQueued;
  if (!Settlement::Ready(env)) {
    MakeError(env, code::kInternal, "run(): no settler is registered (setSettler)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  RunJob::Request r;
  RunJob::Ptr job = RunJob::Prepare(info, core, route, &r);
  if (!job) return env.Undefined();
  // Argument 3, tracing only: the Float64Array the job's timing goes into (RunJob::TraceInto).
  if (info.Length() > 3 && info[3].IsTypedArray()) job->TraceInto(env, info[3]);
  // Counted before the request can settle (inside Submit, for a run on this thread).
  if (scheduler) {
    // Refused: a JS exception is pending. The scheduler counts what it admits and refuses.
    scheduler->Submit(env, std::move(job), r.ticket, r.cancel_id, r.priority, r.timeout_us);
  } else {
    core->stats.requests.admitted++;
    RunJob::Submit(env, std::move(job), r.ticket, r.cancel_id);
  }
  return env.Undefined();
}

Napi::Value Session::RunSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (core_ && core_->fixed_buffers()) {
    // Its runs belong to the scheduler's instance (fixed buffers, captured CUDA graphs): a run
    // on the calling thread would bypass both.
    MakeError(env, code::kInvalidArgument,
              std::string("inferSync(): this model runs on fixed buffers") + (core_->cuda_graph() ? " (CUDA graphs)" : "") +
                  ", owned by its scheduler's thread: use infer()")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  RunJob::Ptr job = RunJob::Prepare(info, core_, RunJob::Route::kSync);
  if (!job) return env.Undefined();
  job->Execute();
  Napi::Value results = job->Results(env);
  job->ReleaseRefs(env);
  return results.IsEmpty() ? env.Undefined() : results;  // (empty: a JS exception is pending)
}

Napi::Value Session::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) return Napi::Boolean::New(env, false);
  const std::string c = info[1].As<Napi::String>().Utf8Value();
  auto& cancellable = GetAddonData(env)->state->cancellable;
  auto it = cancellable.find(info[0].As<Napi::Number>().DoubleValue());
  if (it == cancellable.end()) return Napi::Boolean::New(env, false);
  const char* reason = c == code::kTimeout ? code::kTimeout : code::kAborted;
  RunJob* job = it->second;
  if (Scheduler* s = job->scheduler()) {
    s->Cancel(job, reason);
  } else {
    job->Cancel(reason);
  }
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
  const RequestCounts& r = s.requests;
  o.Set("requests", Napi::Number::New(env, static_cast<double>(r.admitted)));
  o.Set("rejected", Napi::Number::New(env, static_cast<double>(r.rejected)));
  o.Set("succeeded", Napi::Number::New(env, static_cast<double>(r.succeeded)));
  o.Set("failed", Napi::Number::New(env, static_cast<double>(r.failed)));
  o.Set("expired", Napi::Number::New(env, static_cast<double>(r.expired)));
  o.Set("cancelled", Napi::Number::New(env, static_cast<double>(r.cancelled)));
  o.Set("inlineRuns", Napi::Number::New(env, static_cast<double>(s.inline_runs)));
  o.Set("inlineSingleThreaded", Napi::Boolean::New(env, core_->has_inline_session()));
  if (scheduler_) o.Set("scheduler", scheduler_->Stats(env));
  return o;
}

Napi::Value Session::ResetStats(const Napi::CallbackInfo& info) {
  if (core_) {
    // Executor and instance threads increment the atomics: a run finishing during the reset may
    // be counted or not. Callers reset while the model is idle (after warmup).
    SessionStats& s = core_->stats;
    for (std::atomic<uint64_t>* c : {&s.runs, &s.failures, &s.outputs_zero_copy, &s.outputs_copied, &s.bytes_copied,
                                     &s.shape_fallbacks}) {
      c->store(0);
    }
    s.requests.Reset();
    s.inline_runs = 0;
  }
  if (scheduler_) scheduler_->ResetStats();
  return info.Env().Undefined();
}

Napi::Value Session::Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int polling = info.Length() > 0 && info[0].ToBoolean().Value() ? 1 : 0;
  const size_t pending = RunJob::DrainCompleted(env, GetAddonData(env)->state.get(), polling);
  return Napi::Number::New(env, static_cast<double>(pending));
}

Napi::Value Session::Close(const Napi::CallbackInfo& info) {
  if (scheduler_) scheduler_->RejectQueued(code::kDisposed);
  return info.Env().Undefined();
}

Napi::Value Session::Release(const Napi::CallbackInfo& info) {
  // Joins the instance threads (idle by now: the Model drained in-flight work first).
  if (scheduler_) scheduler_->Shutdown(code::kDisposed);
  scheduler_.reset();
  core_.reset();
  if (run_target_) *run_target_ = Parts();
  return info.Env().Undefined();
}

}  // namespace nimify

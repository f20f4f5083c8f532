#include "session_core.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "element_type.h"
#include "ort_api.h"

namespace nimify {

namespace {

// Releases an ORT object at scope exit.
template <typename T, void (*OrtApi::*Release)(T*)>
struct OrtPtr {
  T* p = nullptr;
  ~OrtPtr() {
    if (p != nullptr) (g_ort.get()->*Release)(p);
  }
};

std::string TakeString(char* s) {
  std::string out = s != nullptr ? s : "";
  if (s != nullptr) DefaultAllocator()->Free(DefaultAllocator(), s);
  return out;
}

bool DescribeTypeInfo(const OrtTypeInfo* info, IoInfo* io, Failure* failure) {
  ONNXType onnx_type = ONNX_TYPE_UNKNOWN;
  if ((*failure = FromOrtStatus(g_ort->GetOnnxTypeFromTypeInfo(info, &onnx_type), "reading I/O type"))) return false;
  if (onnx_type != ONNX_TYPE_TENSOR) {
    io->is_tensor = false;
    io->has_shape = false;
    io->type_name = onnx_type == ONNX_TYPE_SEQUENCE ? "sequence"
                    : onnx_type == ONNX_TYPE_MAP    ? "map"
                    : onnx_type == ONNX_TYPE_OPTIONAL ? "optional"
                                                      : "unknown";
    return true;
  }
  const OrtTensorTypeAndShapeInfo* tinfo = nullptr;
  if ((*failure = FromOrtStatus(g_ort->CastTypeInfoToTensorInfo(info, &tinfo), "reading tensor info"))) return false;
  if ((*failure = FromOrtStatus(g_ort->GetTensorElementType(tinfo, &io->elem), "reading element type"))) return false;
  io->type_name = OnnxTypeName(io->elem);
  size_t rank = 0;
  if ((*failure = FromOrtStatus(g_ort->GetDimensionsCount(tinfo, &rank), "reading rank"))) return false;
  io->shape.assign(rank, -1);
  std::vector<const char*> sym(rank, nullptr);
  if (rank > 0) {
    if ((*failure = FromOrtStatus(g_ort->GetDimensions(tinfo, io->shape.data(), rank), "reading dims"))) return false;
    if ((*failure = FromOrtStatus(g_ort->GetSymbolicDimensions(tinfo, sym.data(), rank), "reading dim names")))
      return false;
  }
  io->symbolic.resize(rank);
  for (size_t i = 0; i < rank; ++i) io->symbolic[i] = sym[i] != nullptr ? sym[i] : "";
  return true;
}

// The session options every attempt shares (threads, optimization, memory): all but providers.
bool ApplyOptions(OrtSessionOptions* opts, const SessionConfig& config, Failure* failure) {
  auto check = [&](OrtStatus* st, const std::string& what) {
    *failure = FromOrtStatus(st, what);
    return !*failure;
  };
  if (config.intra_op_threads >= 0 &&
      !check(g_ort->SetIntraOpNumThreads(opts, config.intra_op_threads), "options.intraOpNumThreads"))
    return false;
  if (config.inter_op_threads >= 0 &&
      !check(g_ort->SetInterOpNumThreads(opts, config.inter_op_threads), "options.interOpNumThreads"))
    return false;
  if (config.optimization_level >= 0 &&
      !check(g_ort->SetSessionGraphOptimizationLevel(opts, static_cast<GraphOptimizationLevel>(config.optimization_level)),
             "options.graphOptimizationLevel"))
    return false;
  if (config.execution_mode >= 0 &&
      !check(g_ort->SetSessionExecutionMode(opts, static_cast<ExecutionMode>(config.execution_mode)),
             "options.executionMode"))
    return false;
  if (config.log_severity >= 0 &&
      !check(g_ort->SetSessionLogSeverityLevel(opts, config.log_severity), "options.logSeverityLevel"))
    return false;
  // Whether ORT's pool threads busy-wait for work after a run. Spinning buys latency on idle
  // cores but takes them from the JS thread (and the scheduler) on small machines.
  if (config.allow_spinning >= 0) {
    const char* v = config.allow_spinning ? "1" : "0";
    if (!check(g_ort->AddSessionConfigEntry(opts, "session.intra_op.allow_spinning", v), "options.allowSpinning") ||
        !check(g_ort->AddSessionConfigEntry(opts, "session.inter_op.allow_spinning", v), "options.allowSpinning"))
      return false;
  }
  // ORT's CPU arena keeps every block it grew to for the session's life, so one request with a
  // huge shape holds its tensors' memory until the model is unloaded. Off: tensors go back to
  // malloc when ORT frees them (options.memoryArena; `nimify serve` turns it off).
  if (config.memory_arena >= 0 &&
      !check(config.memory_arena ? g_ort->EnableCpuMemArena(opts) : g_ort->DisableCpuMemArena(opts),
             "options.memoryArena"))
    return false;
  if (!config.optimized_model_path.empty() &&
      !check(g_ort->SetOptimizedModelFilePath(opts, config.optimized_model_path.c_str()),
             "options.optimizedModelFilePath"))
    return false;
  for (const auto& [name, value] : config.free_dimension_overrides) {
    if (!check(g_ort->AddFreeDimensionOverrideByName(opts, name.c_str(), value),
               "options.freeDimensionOverrides." + name))
      return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<SessionCore> SessionCore::Create(const std::string& path, const uint8_t* bytes, size_t length,
                                                 const SessionConfig& config, Failure* failure) {
  const std::vector<EpRequest>& eps = config.execution_providers;
  std::vector<EpSkip> skipped;
  auto unavailable = [&](size_t i, const std::string& why) {
    failure->Set(code::kEpUnavailable, "options.executionProviders: the required provider '" + eps[i].name +
                                           "' cannot be used: " + why +
                                           (skipped.empty() ? "" : " (also tried: " + DescribeSkips(skipped) + ")"));
    return nullptr;
  };
  // One session with the providers `use` (indices into eps) appended in order. On failure: null,
  // `*f` why, and `*bad` the provider that could not be appended (SIZE_MAX: the session itself
  // failed to be created).
  // The plugin device each provider was last appended with (null: legacy or not appended).
  std::vector<const OrtEpDevice*> devices(eps.size(), nullptr);
  auto attempt = [&](const std::vector<size_t>& use, Failure* f, size_t* bad) -> std::shared_ptr<SessionCore> {
    *bad = SIZE_MAX;
    OrtPtr<OrtSessionOptions, &OrtApi::ReleaseSessionOptions> opts;
    if ((*f = FromOrtStatus(g_ort->CreateSessionOptions(&opts.p), "creating session options"))) return nullptr;
    if (!ApplyOptions(opts.p, config, f)) return nullptr;
    for (size_t i : use) {
      if ((*f = AppendProvider(opts.p, eps[i], &devices[i]))) {
        *bad = i;
        return nullptr;
      }
    }
    std::shared_ptr<SessionCore> core(new SessionCore());
    OrtStatus* st = bytes != nullptr ? g_ort->CreateSessionFromArray(Env(), bytes, length, opts.p, &core->session_)
                                     : g_ort->CreateSession(Env(), path.c_str(), opts.p, &core->session_);
    if (st != nullptr) {
      *f = FromOrtStatus(st, bytes != nullptr ? "loading model from bytes" : "loading model '" + path + "'");
      return nullptr;
    }
    if (!core->ReadMetadata(f)) return nullptr;
    return core;
  };
  auto finish = [&](std::shared_ptr<SessionCore> core, const std::vector<size_t>& use) -> std::shared_ptr<SessionCore> {
    if (config.log_severity >= 0) core->run_log_severity_ = config.log_severity;
    for (size_t i : use) core->providers_.push_back(eps[i].name);
    core->providers_.push_back("cpu");
    core->skipped_providers_ = std::move(skipped);
    // The leading provider decides where the session's tensors live, and whether it replays
    // CUDA graphs.
    const EpRequest* first = use.empty() ? nullptr : &eps[use[0]];
    for (size_t k = 0; first != nullptr && k < first->keys.size(); ++k) {
      if ((first->keys[k] == "enable_cuda_graph" || first->keys[k] == "trt_cuda_graph_enable") && first->values[k] == "1") {
        core->cuda_graph_ = true;
      }
    }
    core->fixed_buffers_ = core->cuda_graph_ || config.io_binding == SessionConfig::IoBinding::kFixed;
    core->io_binding_ = core->on_device() || core->fixed_buffers_ || config.io_binding == SessionConfig::IoBinding::kAlways;
    core->memory_ = std::make_unique<DeviceMemory>();
    if (Failure f = core->memory_->Resolve(core->session_, first, use.empty() ? nullptr : devices[use[0]],
                                           core->fixed_buffers_, config.io_binding == SessionConfig::IoBinding::kFixed)) {
      *failure = f;
      return nullptr;
    }
    if (core->fixed_buffers_) {
      if (Failure f = core->memory_->PrepareCopies()) {
        f.message = "preparing the copies fixed buffers need: " + f.message;
        *failure = f;
        return nullptr;
      }
    }
    return core;
  };

  std::vector<size_t> use;
  for (size_t i = 0; i < eps.size(); ++i) use.push_back(i);
  Failure f;
  size_t bad = SIZE_MAX;
  // Providers that cannot even be appended (library missing, no device listed) go first, one
  // attempt each: ORT appends nothing for them.
  for (;;) {
    if (std::shared_ptr<SessionCore> core = attempt(use, &f, &bad)) return finish(std::move(core), use);
    if (bad == SIZE_MAX) break;
    if (eps[bad].required) return unavailable(bad, f.message);
    skipped.push_back({eps[bad].name, f.message});
    use.erase(std::find(use.begin(), use.end(), bad));
  }
  // The session failed with every remaining provider appended. The model alone on the CPU
  // decides whose fault it is: if that fails too, the model's (its own error is the answer).
  Failure cpu_f;
  std::shared_ptr<SessionCore> best = use.empty() ? nullptr : attempt({}, &cpu_f, &bad);
  if (!best) {
    *failure = use.empty() ? f : cpu_f;
    // ORT reports unreadable bytes and some malformed files as ORT_FAIL; both are bad models.
    if (std::strcmp(failure->code, code::kRuntimeError) == 0) failure->code = code::kInvalidModel;
    return nullptr;
  }
  // A provider breaks the session's creation (the CUDA provider with no GPU appends fine and
  // fails only here): find which, adding them back one at a time in preference order.
  std::vector<size_t> ok;
  for (size_t i : use) {
    std::vector<size_t> trial = ok;
    trial.push_back(i);
    Failure tf;
    if (std::shared_ptr<SessionCore> core = attempt(trial, &tf, &bad)) {
      ok = std::move(trial);
      best = std::move(core);
      continue;
    }
    const std::string why = "the session could not be created with it: " + tf.message;
    if (eps[i].required) return unavailable(i, why);
    skipped.push_back({eps[i].name, why});
  }
  return finish(std::move(best), ok);
}

std::string FixedShapeProblem(const SessionCore& core) {
  for (int pass = 0; pass < 2; ++pass) {
    for (const IoInfo& io : pass == 0 ? core.inputs() : core.outputs()) {
      bool fixed = io.is_tensor && io.has_shape && !io.shape.empty() && io.elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
      for (size_t d = 1; fixed && d < io.shape.size(); ++d) fixed = io.shape[d] >= 0;
      if (!fixed) {
        std::string shape = "[";
        for (size_t d = 0; d < io.shape.size(); ++d) {
          shape += (d > 0 ? ", " : "") + (io.shape[d] >= 0 ? std::to_string(io.shape[d]) : io.symbolic[d].empty() ? "?" : io.symbolic[d]);
        }
        return std::string(pass == 0 ? "input '" : "output '") + io.name + "' is " + io.type_name + " " +
               (io.has_shape ? shape + "]" : "of unknown rank");
      }
    }
  }
  return "";
}

std::string LoneShapeProblem(const SessionCore& core) {
  for (const IoInfo& out : core.outputs()) {
    if (out.shape.empty() || out.shape[0] >= 0) continue;
    bool named = false;
    for (const IoInfo& in : core.inputs()) {
      named = named || (!in.shape.empty() && in.shape[0] < 0 && !in.symbolic[0].empty() && in.symbolic[0] == out.symbolic[0]);
    }
    if (!named) {
      return "output '" + out.name + "' has a first dim (" + (out.symbolic[0].empty() ? "?" : out.symbolic[0]) +
             ") that no input's first dim names, so its size is not known before the run";
    }
  }
  return "";
}

SessionCore::~SessionCore() {
  memory_.reset();
  if (session_ != nullptr) g_ort->ReleaseSession(session_);
}

bool SessionCore::ReadMetadata(Failure* failure) {
  for (int pass = 0; pass < 2; ++pass) {
    const bool is_input = pass == 0;
    size_t count = 0;
    OrtStatus* st = is_input ? g_ort->SessionGetInputCount(session_, &count)
                             : g_ort->SessionGetOutputCount(session_, &count);
    if ((*failure = FromOrtStatus(st, "counting model I/O"))) return false;
    auto& list = is_input ? inputs_ : outputs_;
    list.resize(count);
    for (size_t i = 0; i < count; ++i) {
      char* name = nullptr;
      st = is_input ? g_ort->SessionGetInputName(session_, i, DefaultAllocator(), &name)
                    : g_ort->SessionGetOutputName(session_, i, DefaultAllocator(), &name);
      if ((*failure = FromOrtStatus(st, "reading I/O name"))) return false;
      list[i].name = TakeString(name);
      OrtPtr<OrtTypeInfo, &OrtApi::ReleaseTypeInfo> info;
      st = is_input ? g_ort->SessionGetInputTypeInfo(session_, i, &info.p)
                    : g_ort->SessionGetOutputTypeInfo(session_, i, &info.p);
      if ((*failure = FromOrtStatus(st, "reading I/O type info"))) return false;
      if (!DescribeTypeInfo(info.p, &list[i], failure)) return false;
    }
  }
  for (const auto& io : inputs_) input_names_.push_back(io.name.c_str());
  for (const auto& io : outputs_) output_names_.push_back(io.name.c_str());

  OrtPtr<OrtModelMetadata, &OrtApi::ReleaseModelMetadata> meta;
  if ((*failure = FromOrtStatus(g_ort->SessionGetModelMetadata(session_, &meta.p), "reading model metadata")))
    return false;
  OrtAllocator* a = DefaultAllocator();
  char* s = nullptr;
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetProducerName(meta.p, a, &s), "metadata"))) return false;
  metadata_.producer_name = TakeString(s);
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetGraphName(meta.p, a, &s), "metadata"))) return false;
  metadata_.graph_name = TakeString(s);
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetDomain(meta.p, a, &s), "metadata"))) return false;
  metadata_.domain = TakeString(s);
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetDescription(meta.p, a, &s), "metadata"))) return false;
  metadata_.description = TakeString(s);
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetGraphDescription(meta.p, a, &s), "metadata"))) return false;
  metadata_.graph_description = TakeString(s);
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetVersion(meta.p, &metadata_.version), "metadata"))) return false;
  // ORT reports INT64_MAX for a model that sets no model_version; ONNX itself defaults it to 0.
  if (metadata_.version == INT64_MAX) metadata_.version = 0;
  char** keys = nullptr;
  int64_t nkeys = 0;
  if ((*failure = FromOrtStatus(g_ort->ModelMetadataGetCustomMetadataMapKeys(meta.p, a, &keys, &nkeys), "metadata")))
    return false;
  for (int64_t i = 0; i < nkeys; ++i) {
    std::string key = TakeString(keys[i]);
    char* value = nullptr;
    if ((*failure = FromOrtStatus(g_ort->ModelMetadataLookupCustomMetadataMap(meta.p, a, key.c_str(), &value),
                                  "metadata"))) {
      for (int64_t j = i + 1; j < nkeys; ++j) a->Free(a, keys[j]);
      a->Free(a, keys);
      return false;
    }
    metadata_.custom.emplace_back(std::move(key), TakeString(value));
  }
  if (keys != nullptr) a->Free(a, keys);
  return true;
}

}  // namespace nimify

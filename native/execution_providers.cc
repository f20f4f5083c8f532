#include "execution_providers.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "ort_api.h"

namespace nimify {

namespace {

// ORT's provider messages start with its source location and status ("/onnxruntime_src/…cc:1988
// … [ONNXRuntimeError] : 1 : FAIL : Failed to load library …"): keep what follows, trimmed.
std::string Concise(const std::string& message) {
  std::string m = message;
  const std::string tag = "[ONNXRuntimeError] : ";
  size_t at = m.find(tag);
  if (at != std::string::npos) {
    at += tag.size();
    for (int field = 0; field < 2 && at != std::string::npos; ++field) {  // the numeric code, then its name
      at = m.find(" : ", at);
      if (at != std::string::npos) at += 3;
    }
    if (at != std::string::npos) m = m.substr(at);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

std::vector<const char*> CStrings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
}

// The legacy V2 API: one Create/Update/Append/Release family per provider ORT ships itself.
template <typename Options>
Failure AppendV2(OrtSessionOptions* opts, const EpRequest& req, OrtStatus* (*create)(Options**),
                 OrtStatus* (*update)(Options*, const char* const*, const char* const*, size_t),
                 OrtStatus* (*append)(OrtSessionOptions*, const Options*), void (*release)(Options*)) {
  Options* p = nullptr;
  // Creating the options object is where ORT reports a provider its build does not include.
  if (Failure f = FromOrtStatus(create(&p), "ONNX Runtime")) return f;
  const std::vector<const char*> keys = CStrings(req.keys), values = CStrings(req.values);
  Failure f = FromOrtStatus(update(p, keys.data(), values.data(), keys.size()), "ONNX Runtime");
  if (!f) f = FromOrtStatus(append(opts, p), "ONNX Runtime");
  release(p);
  return f;
}

// A plugin library registered with ORT's (process-wide) environment, and the providers it added.
struct Registered {
  std::string registration_name;
  std::vector<std::string> ep_names;  // EP names whose devices appeared with this library
  Failure failure;                    // registration failed: why (never retried for this path)
};

std::mutex g_plugins_mu;
std::map<std::string, Registered>* g_plugins = nullptr;  // by library path; leaked on purpose (process-wide)

std::vector<std::string> EpNames(Failure* f) {
  const OrtEpDevice* const* devices = nullptr;
  size_t n = 0;
  std::vector<std::string> names;
  if ((*f = FromOrtStatus(g_ort->GetEpDevices(Env(), &devices, &n), "listing execution-provider devices"))) return names;
  for (size_t i = 0; i < n; ++i) {
    const char* name = g_ort->EpDevice_EpName(devices[i]);
    if (name != nullptr && std::find(names.begin(), names.end(), name) == names.end()) names.emplace_back(name);
  }
  return names;
}

// Under g_plugins_mu. Registers `path` once; later requests for the same path reuse the outcome.
const Registered& Register(const std::string& path) {
  if (g_plugins == nullptr) g_plugins = new std::map<std::string, Registered>();
  auto it = g_plugins->find(path);
  if (it != g_plugins->end()) return it->second;
  Registered r;
  r.registration_name = "nimify-plugin-" + std::to_string(g_plugins->size());
  Failure f;
  const std::vector<std::string> before = EpNames(&f);
  if (!f) f = FromOrtStatus(g_ort->RegisterExecutionProviderLibrary(Env(), r.registration_name.c_str(), path.c_str()),
                            "loading execution-provider library '" + path + "'");
  if (!f) {
    for (std::string& name : EpNames(&f)) {
      if (std::find(before.begin(), before.end(), name) == before.end()) r.ep_names.push_back(std::move(name));
    }
  }
  r.failure = f;
  return g_plugins->emplace(path, std::move(r)).first->second;
}

Failure AppendPlugin(OrtSessionOptions* opts, const EpRequest& req, const OrtEpDevice** device) {
  std::lock_guard<std::mutex> lock(g_plugins_mu);
  const Registered& lib = Register(req.library);
  if (lib.failure) return lib.failure;
  // The devices of the providers this library added; with an ORT name given and among them,
  // that provider's only.
  const bool by_name = !req.ort_name.empty() &&
                       std::find(lib.ep_names.begin(), lib.ep_names.end(), req.ort_name) != lib.ep_names.end();
  const OrtEpDevice* const* devices = nullptr;
  size_t n = 0;
  if (Failure f = FromOrtStatus(g_ort->GetEpDevices(Env(), &devices, &n), "listing execution-provider devices")) return f;
  std::vector<const OrtEpDevice*> mine;
  for (size_t i = 0; i < n; ++i) {
    const char* name = g_ort->EpDevice_EpName(devices[i]);
    if (name == nullptr) continue;
    if (by_name ? req.ort_name == name : std::find(lib.ep_names.begin(), lib.ep_names.end(), name) != lib.ep_names.end()) {
      mine.push_back(devices[i]);
    }
  }
  Failure f;
  if (mine.empty()) {
    f.Set(code::kEpUnavailable,
          "the library '" + req.library + "' loaded, but ONNX Runtime lists no device for it (no GPU, or no driver?)");
    return f;
  }
  // One device: the one `device_id` names among this provider's devices (in ORT's order), else
  // the first. The provider reads its other options (device_id included) itself.
  size_t pick = 0;
  for (size_t i = 0; i < req.keys.size(); ++i) {
    if (req.keys[i] != "device_id") continue;
    pick = static_cast<size_t>(std::strtoull(req.values[i].c_str(), nullptr, 10));
    if (pick >= mine.size()) {
      f.Set(code::kEpUnavailable, "device_id " + req.values[i] + " is not among the " + std::to_string(mine.size()) +
                                      " device(s) ONNX Runtime lists for '" + req.library + "'");
      return f;
    }
  }
  const std::vector<const char*> keys = CStrings(req.keys), values = CStrings(req.values);
  f = FromOrtStatus(g_ort->SessionOptionsAppendExecutionProvider_V2(opts, Env(), &mine[pick], 1, keys.data(),
                                                                   values.data(), keys.size()),
                    "ONNX Runtime");
  if (!f) *device = mine[pick];
  return f;
}

}  // namespace

Failure AppendProvider(OrtSessionOptions* opts, const EpRequest& req, const OrtEpDevice** device) {
  Failure f;
  *device = nullptr;
  if (!req.library.empty()) {
    f = AppendPlugin(opts, req, device);
  } else if (req.name == "cuda") {
    f = AppendV2<OrtCUDAProviderOptionsV2>(opts, req, g_ort->CreateCUDAProviderOptions, g_ort->UpdateCUDAProviderOptions,
                                           g_ort->SessionOptionsAppendExecutionProvider_CUDA_V2,
                                           g_ort->ReleaseCUDAProviderOptions);
  } else if (req.name == "tensorrt") {
    f = AppendV2<OrtTensorRTProviderOptionsV2>(
        opts, req, g_ort->CreateTensorRTProviderOptions, g_ort->UpdateTensorRTProviderOptions,
        g_ort->SessionOptionsAppendExecutionProvider_TensorRT_V2, g_ort->ReleaseTensorRTProviderOptions);
  } else {
    f.Set(code::kEpUnavailable, "nimify knows no built-in provider '" + req.name + "': give its plugin `library`");
  }
  if (f) f.message = Concise(f.message);
  // The provider libraries ORT loads itself must sit beside its core library.
  if (f && req.library.empty() && f.message.find("libonnxruntime_providers_") != std::string::npos) {
    f.message += " (the " + req.name + " provider's libraries must sit beside the ONNX Runtime library in use: "
                 "onnxruntime-node downloads them at install time unless ONNXRUNTIME_NODE_INSTALL=skip; or give the "
                 "provider's plugin-EP `library`)";
  }
  // Whatever ORT called it (a missing library is RUNTIME_ERROR, a bad value INVALID_ARGUMENT),
  // the provider cannot be used: the caller skips it or, when required, fails the load with this.
  if (f) f.code = code::kEpUnavailable;
  return f;
}

std::string DescribeSkips(const std::vector<EpSkip>& skips) {
  std::string out;
  for (const EpSkip& s : skips) {
    if (!out.empty()) out += "; ";
    out += s.name + " (" + s.reason + ")";
  }
  return out;
}

}  // namespace nimify

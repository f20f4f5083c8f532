#include "ort_api.h"

#include <dlfcn.h>

#include <mutex>

namespace nimify {

OrtApiHandle g_ort;  // constant-initialized: no static-init order to worry about

namespace {
std::mutex g_load_mutex;  // guards the fields below while loading; they are immutable afterwards
RuntimeInfo g_info;
OrtEnv* g_env = nullptr;
OrtAllocator* g_allocator = nullptr;
OrtMemoryInfo* g_cpu_info = nullptr;

using GetApiBaseFn = const OrtApiBase* (*)();

bool TryLoad(const std::string& path, std::string* why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    *why = e != nullptr ? e : "dlopen failed";
    return false;
  }
  auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_base == nullptr) {
    *why = "not an ONNX Runtime library (no OrtGetApiBase symbol)";
    dlclose(handle);
    return false;
  }
  const OrtApiBase* base = get_base();
  const char* version = base != nullptr ? base->GetVersionString() : nullptr;
  const OrtApi* api = base != nullptr ? base->GetApi(kOrtApiVersion) : nullptr;
  if (api == nullptr) {
    *why = std::string("ONNX Runtime ") + (version != nullptr ? version : "?") +
           " is too old: nimify needs C API version " + std::to_string(kOrtApiVersion) + " (ONNX Runtime >= 1." +
           std::to_string(kOrtApiVersion) + ")";
    dlclose(handle);
    return false;
  }
  OrtEnv* env = nullptr;
  if (OrtStatus* st = api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "nimify", &env)) {
    *why = std::string("CreateEnv failed: ") + api->GetErrorMessage(st);
    api->ReleaseStatus(st);
    dlclose(handle);
    return false;
  }
  OrtAllocator* allocator = nullptr;
  OrtMemoryInfo* cpu_info = nullptr;
  OrtStatus* st = api->GetAllocatorWithDefaultOptions(&allocator);
  if (st == nullptr) st = api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpu_info);
  if (st != nullptr) {
    *why = std::string("allocator setup failed: ") + api->GetErrorMessage(st);
    api->ReleaseStatus(st);
    return false;  // the env stays: ORT forbids a second one in this process anyway
  }
  g_env = env;
  g_allocator = allocator;
  g_cpu_info = cpu_info;
  g_info.library = path;
  g_info.version = version != nullptr ? version : "";
  g_ort.Publish(api);  // last: a reader that sees the table sees the fields above
  return true;
}
}  // namespace

bool LoadRuntime(const std::vector<std::string>& candidates, RuntimeInfo* info, std::string* error) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (g_ort.get() != nullptr) {
    *info = g_info;
    return true;
  }
  std::string tried;
  for (const auto& path : candidates) {
    std::string why;
    if (TryLoad(path, &why)) {
      *info = g_info;
      return true;
    }
    tried += "\n  - " + path + ": " + why;
  }
  *error = candidates.empty() ? std::string("no candidate ONNX Runtime library paths") : "tried:" + tried;
  return false;
}

bool RuntimeLoaded() { return g_ort.get() != nullptr; }
OrtEnv* Env() { return g_env; }
OrtAllocator* DefaultAllocator() { return g_allocator; }
const OrtMemoryInfo* CpuMemoryInfo() { return g_cpu_info; }

}  // namespace nimify

// The ONNX Runtime C API as nimify sees it: one process-wide OrtApi table and OrtEnv.
//
// Ownership: ORT is dlopen()ed once per process (LoadRuntime) and never unloaded; the OrtEnv is
// created once and deliberately never released (ORT allows one env per process, and releasing it
// at exit races with sessions still owned by other worker_threads). Both are read-only after
// LoadRuntime returns, so any thread may use them without a lock.
#pragma once

#include <onnxruntime_c_api.h>

#include <string>
#include <vector>

namespace nimify {

// The C API version nimify is written against. The API table is append-only, so a newer ORT
// serves this version unchanged; an older one returns null from GetApi and is refused.
constexpr uint32_t kOrtApiVersion = 23;
static_assert(ORT_API_VERSION >= kOrtApiVersion, "ORT headers older than the API version nimify requests");

extern const OrtApi* g_ort;

struct RuntimeInfo {
  std::string library;  // the path that was dlopen()ed
  std::string version;  // ORT's GetVersionString()
};

// Tries each candidate path in order; the first that loads and serves kOrtApiVersion wins.
// Thread-safe and idempotent: later calls return the first success. On failure `error` names
// every path tried and why it was refused.
bool LoadRuntime(const std::vector<std::string>& candidates, RuntimeInfo* info, std::string* error);
bool RuntimeLoaded();
OrtEnv* Env();
OrtAllocator* DefaultAllocator();
const OrtMemoryInfo* CpuMemoryInfo();

}  // namespace nimify

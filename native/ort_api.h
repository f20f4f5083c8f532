// The ONNX Runtime C API as nimify sees it: one process-wide OrtApi table and OrtEnv.
//
// Ownership: ORT is dlopen()ed once per process (LoadRuntime) and never unloaded; the OrtEnv is
// created once and deliberately never released (ORT allows one env per process, and releasing it
// at exit races with sessions still owned by other worker_threads). Both are read-only after
// LoadRuntime returns, so any thread may use them without a lock.
//
// Publication: worker_threads may call LoadRuntime concurrently (each env loads on its own JS
// thread). The loader fills the env, allocator, memory info and RuntimeInfo under its mutex and
// then publishes the API table with a release store; every read of g_ort is an acquire load
// (a plain load on x86, `ldar` on arm64: nothing more on the hot path), so a thread that sees
// the table also sees everything written before it, without taking the mutex.
#pragma once

#include <onnxruntime_c_api.h>

#include <atomic>
#include <string>
#include <vector>

namespace nimify {

// The C API version nimify is written against. The API table is append-only, so a newer ORT
// serves this version unchanged; an older one returns null from GetApi and is refused.
constexpr uint32_t kOrtApiVersion = 23;
static_assert(ORT_API_VERSION >= kOrtApiVersion, "ORT headers older than the API version nimify requests");

// The process's OrtApi table: `g_ort->Run(...)` reads it with an acquire load. Null until
// LoadRuntime succeeds; written only by it (Publish), once.
class OrtApiHandle {
 public:
  constexpr OrtApiHandle() = default;
  OrtApiHandle(const OrtApiHandle&) = delete;
  OrtApiHandle& operator=(const OrtApiHandle&) = delete;
  const OrtApi* get() const { return api_.load(std::memory_order_acquire); }
  const OrtApi* operator->() const { return get(); }
  // Under the loader's mutex, after everything the table's readers may use is set.
  void Publish(const OrtApi* api) { api_.store(api, std::memory_order_release); }

 private:
  std::atomic<const OrtApi*> api_{nullptr};
};

extern OrtApiHandle g_ort;

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

// Module registration only. The addon is context-aware (NAPI_MODULE_INIT via node-addon-api):
// each env (main thread, each worker_thread) gets its own AddonData and cleanup hook.
#include <napi.h>

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "deferred_wake.h"
#include "device_tensor.h"
#include "env_state.h"
#include "json_scan_binding.h"
#include "run_job.h"
#include "runtime.h"
#include "session.h"
#include "settlement.h"

namespace nimify {
namespace {

// Runs on the env's thread when the env is torn down (worker.terminate(), process exit).
// Registered after N-API's own hook, so it runs before N-API finalizes references.
void OnEnvCleanup(void* arg) {
  auto* state = static_cast<std::shared_ptr<EnvState>*>(arg);
  RunJob::TeardownEnv(state->get());
  delete state;
}

// The executor and scheduler threads run this library's code and may outlive any one env. Node
// unloads an addon that only worker_threads loaded when the last of them exits: pin the library
// in memory for the life of the process instead (the handle is deliberately never closed).
void PinLibrary() {
#if defined(__linux__) || defined(__APPLE__)
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&PinLibrary), &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
    }
  });
#endif
}

// glibc keeps what the process freed (the main heap's top, each thread arena's free pages) for
// reuse; malloc_trim(0) gives free pages back to the OS. `nimify serve` calls it when idle
// (src/cli/serve.ts); any thread may call it (glibc takes each arena's lock in turn). Returns
// whether memory was released; false where the C library has no malloc_trim.
Napi::Value TrimMemoryJs(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinLibrary();
  auto* data = new AddonData();
  data->session_ctor = Napi::Persistent(Session::Define(env));
  data->device_tensor_ctor = Napi::Persistent(DeviceTensor::Define(env));
  env.SetInstanceData<AddonData>(data);
  data->state->completions = RunJob::CreateCompletionChannel(env, data->state);
  if (data->state->completions == nullptr) {
    Napi::Error::New(env, "nimify: could not create the completion channel").ThrowAsJavaScriptException();
    return exports;
  }
  napi_add_env_cleanup_hook(env, OnEnvCleanup, new std::shared_ptr<EnvState>(data->state));
  // Optional: without it schedulers are woken at once on every submit.
  DeferredWakes::Create(env, data->state);

  exports.Set("loadRuntime", Napi::Function::New<LoadRuntimeJs>(env, "loadRuntime"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfoJs>(env, "runtimeInfo"));
  exports.Set("createSession", Napi::Function::New<Session::Create>(env, "createSession"));
  exports.Set("poll", Napi::Function::New<Session::Poll>(env, "poll"));
  exports.Set("setSettler", Napi::Function::New<Settlement::SetSettlerJs>(env, "setSettler"));
  exports.Set("scanInferJson", Napi::Function::New<ScanInferJsonJs>(env, "scanInferJson"));
  exports.Set("ownedInputBytes", Napi::Number::New(env, static_cast<double>(RunJob::kOwnedInputBytes)));
  exports.Set("copiedOutputBytes", Napi::Number::New(env, static_cast<double>(RunJob::kCopiedOutputBytes)));
  exports.Set("ownedInputAlign", Napi::Number::New(env, static_cast<double>(RunJob::kOwnedAlign)));
  exports.Set("trimMemory", Napi::Function::New<TrimMemoryJs>(env, "trimMemory"));
  exports.Set("Session", data->session_ctor.Value());
  exports.Set("DeviceTensor", data->device_tensor_ctor.Value());
  return exports;
}

}  // namespace
}  // namespace nimify

static Napi::Object InitNimify(Napi::Env env, Napi::Object exports) { return nimify::Init(env, exports); }
NODE_API_MODULE(nimify, InitNimify)

// Execution providers: appending the CUDA, TensorRT and plugin-library providers a model asked
// for to its session options, in preference order, with fallback.
//
// What a provider accepts is decided in TypeScript (src/runtime/providers.ts: one table of
// nimify option → ORT string key); here each request arrives as ORT's own key/value strings and
// is handed to ORT as is:
//   - a provider ORT ships beside its core library (cuda, tensorrt): the legacy C API's V2
//     provider options (Create…ProviderOptions → Update… → SessionOptionsAppendExecutionProvider_…_V2).
//     ORT loads libonnxruntime_providers_<ep>.so itself at that call and reports a missing one;
//   - a provider from a plugin library (`library`): RegisterExecutionProviderLibrary once per
//     library path for the process (ORT's environment is process-wide), then GetEpDevices →
//     the library's devices → SessionOptionsAppendExecutionProvider_V2.
// A provider that cannot be appended — or whose session then fails to initialize (a CUDA
// provider with no GPU fails only there) — is skipped with its reason unless `required`; the CPU
// provider is always the last resort.
//
// Threads: called from the load thread (SessionCore::Create runs off the JS thread); the plugin
// registry is guarded by its own mutex.
#pragma once

#include <onnxruntime_c_api.h>

#include <string>
#include <vector>

#include "errors.h"

namespace nimify {

// One provider as TypeScript validated it (NativeProviderRequest in src/runtime/providers.ts).
struct EpRequest {
  std::string name;      // nimify's name: "cuda", "tensorrt", or a plugin's
  std::string ort_name;  // ORT's provider name; empty for a plugin nimify does not know
  std::string library;   // plugin-EP library path; empty: the provider ORT ships itself
  bool required = false;
  std::vector<std::string> keys, values;  // ORT's option strings, same length
};

// A provider that was not used, and why (ORT's message, or nimify's).
struct EpSkip {
  std::string name;
  std::string reason;
};

// Appends `req` to `opts`. On failure returns why and leaves `opts` as it was (ORT appends
// nothing when a provider cannot be created). For a plugin library, `*device` receives the
// OrtEpDevice it was appended with (owned by ORT's environment, valid for the process: the
// library is never unregistered); null for the providers ORT ships itself.
Failure AppendProvider(OrtSessionOptions* opts, const EpRequest& req, const OrtEpDevice** device);

// "cuda (reason); tensorrt (reason)": what was tried, for an EP_UNAVAILABLE message.
std::string DescribeSkips(const std::vector<EpSkip>& skips);

}  // namespace nimify

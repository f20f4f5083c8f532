// JS entry points for locating and loading the ONNX Runtime shared library.
#pragma once

#include <napi.h>

namespace nimify {

// loadRuntime(candidates: string[]): { library, version, apiVersion }.
// Throws RUNTIME_UNAVAILABLE naming every candidate tried and why it was refused.
Napi::Value LoadRuntimeJs(const Napi::CallbackInfo& info);
// runtimeInfo(): { library, version, apiVersion } or null when not loaded yet.
Napi::Value RuntimeInfoJs(const Napi::CallbackInfo& info);

}  // namespace nimify

// Errors crossing from C++ to JS. Codes are the stable vocabulary of src/runtime/errors.ts; the
// TypeScript layer turns these plain Errors (with a `code` property) into NimifyError.
#pragma once

#include <napi.h>

#include "ort_api.h"

#include <string>

namespace nimify {

namespace code {
inline constexpr const char* kInvalidArgument = "INVALID_ARGUMENT";
inline constexpr const char* kNotFound = "NOT_FOUND";
inline constexpr const char* kInvalidModel = "INVALID_MODEL";
inline constexpr const char* kRuntimeError = "RUNTIME_ERROR";
inline constexpr const char* kRuntimeUnavailable = "RUNTIME_UNAVAILABLE";
inline constexpr const char* kUnsupported = "UNSUPPORTED";
inline constexpr const char* kAborted = "ABORTED";
inline constexpr const char* kTimeout = "TIMEOUT";
inline constexpr const char* kDisposed = "DISPOSED";
inline constexpr const char* kQueueFull = "QUEUE_FULL";
inline constexpr const char* kBufferDetached = "BUFFER_DETACHED";
inline constexpr const char* kEpUnavailable = "EP_UNAVAILABLE";
inline constexpr const char* kInternal = "INTERNAL";
}  // namespace code

// A failure recorded off the main thread, turned into a JS Error on it.
struct Failure {
  const char* code = nullptr;  // null = no failure
  std::string message;

  explicit operator bool() const { return code != nullptr; }
  void Set(const char* c, std::string m) {
    code = c;
    message = std::move(m);
  }
};

// Takes ownership of `status` (releases it). `context` prefixes the ORT message.
Failure FromOrtStatus(OrtStatus* status, const std::string& context);
// Maps an ORT error code to nimify's vocabulary (ORT_NO_SUCHFILE -> NOT_FOUND, ...).
const char* CodeForOrtError(OrtErrorCode ort_code);

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message);
inline Napi::Error MakeError(Napi::Env env, const Failure& f) { return MakeError(env, f.code, f.message); }

// Throws (as a JS exception) and returns true when `status` is an error.
bool ThrowIfFailed(Napi::Env env, OrtStatus* status, const std::string& context);

}  // namespace nimify

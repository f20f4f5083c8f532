#include "errors.h"

namespace nimify {

const char* CodeForOrtError(OrtErrorCode ort_code) {
  switch (ort_code) {
    case ORT_INVALID_ARGUMENT:
      return code::kInvalidArgument;
    case ORT_NO_SUCHFILE:
      return code::kNotFound;
    case ORT_NO_MODEL:
    case ORT_INVALID_PROTOBUF:
    case ORT_INVALID_GRAPH:
    case ORT_MODEL_LOADED:
      return code::kInvalidModel;
    case ORT_NOT_IMPLEMENTED:
      return code::kUnsupported;
    default:
      return code::kRuntimeError;
  }
}

Failure FromOrtStatus(OrtStatus* status, const std::string& context) {
  Failure f;
  if (status == nullptr) return f;
  f.Set(CodeForOrtError(g_ort->GetErrorCode(status)), context + ": " + g_ort->GetErrorMessage(status));
  g_ort->ReleaseStatus(status);
  return f;
}

Napi::Error MakeError(Napi::Env env, const char* c, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, c));
  return err;
}

bool ThrowIfFailed(Napi::Env env, OrtStatus* status, const std::string& context) {
  if (status == nullptr) return false;
  Failure f = FromOrtStatus(status, context);
  MakeError(env, f).ThrowAsJavaScriptException();
  return true;
}

}  // namespace nimify

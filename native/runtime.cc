#include "runtime.h"

#include "errors.h"
#include "ort_api.h"

namespace nimify {

namespace {
// The execution providers compiled into the loaded library (GetAvailableProviders). Called on the
// JS thread after a successful LoadRuntime, so g_ort is set; an ORT failure gives an empty list.
Napi::Array Providers(Napi::Env env) {
  Napi::Array list = Napi::Array::New(env);
  char** names = nullptr;
  int count = 0;
  OrtStatus* status = g_ort->GetAvailableProviders(&names, &count);
  if (status != nullptr) {
    g_ort->ReleaseStatus(status);
    return list;
  }
  for (int i = 0; i < count; ++i) list.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
  status = g_ort->ReleaseAvailableProviders(names, count);
  if (status != nullptr) g_ort->ReleaseStatus(status);
  return list;
}

Napi::Object InfoObject(Napi::Env env, const RuntimeInfo& ri) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", ri.library);
  o.Set("version", ri.version);
  o.Set("apiVersion", Napi::Number::New(env, kOrtApiVersion));
  o.Set("providers", Providers(env));
  return o;
}
}  // namespace

Napi::Value LoadRuntimeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> candidates;
  if (info.Length() > 0 && info[0].IsArray()) {
    Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a.Get(i);
      if (v.IsString()) candidates.push_back(v.As<Napi::String>().Utf8Value());
    }
  }
  RuntimeInfo ri;
  std::string error;
  if (!LoadRuntime(candidates, &ri, &error)) {
    MakeError(env, code::kRuntimeUnavailable, error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return InfoObject(env, ri);
}

Napi::Value RuntimeInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RuntimeLoaded()) return env.Null();
  RuntimeInfo ri;
  std::string unused;
  LoadRuntime({}, &ri, &unused);
  return InfoObject(env, ri);
}

}  // namespace nimify

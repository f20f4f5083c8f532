#include "runtime.h"

#include "errors.h"
#include "ort_api.h"

namespace nimify {

namespace {
Napi::Object InfoObject(Napi::Env env, const RuntimeInfo& ri) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", ri.library);
  o.Set("version", ri.version);
  o.Set("apiVersion", Napi::Number::New(env, kOrtApiVersion));
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

#include "json_scan_binding.h"

#include "errors.h"
#include "json_scan.h"

namespace nimify {
namespace {

bool TypedArrayArg(napi_env env, napi_value v, napi_typedarray_type want, void** data, size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, length, data, nullptr, nullptr) != napi_ok) return false;
  return type == want && (*data != nullptr || *length == 0);
}

}  // namespace

Napi::Value ScanInferJsonJs(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  void* body;
  void* nums;
  void* out;
  void* spans;
  size_t body_len, nums_len, out_len, spans_len;
  if (info.Length() != 5 || !TypedArrayArg(env, info[0], napi_uint8_array, &body, &body_len) || !info[1].IsNumber() ||
      !TypedArrayArg(env, info[2], napi_float64_array, &nums, &nums_len) ||
      !TypedArrayArg(env, info[3], napi_uint8_array, &out, &out_len) ||
      !TypedArrayArg(env, info[4], napi_uint32_array, &spans, &spans_len)) {
    MakeError(env, code::kInternal, "scanInferJson(body, length, nums, out, spans): expected Uint8Array, number, Float64Array, Uint8Array, Uint32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  const double length = info[1].As<Napi::Number>().DoubleValue();
  if (!(length >= 0 && length <= static_cast<double>(body_len)) || static_cast<size_t>(length) > out_len || spans_len < 1) {
    MakeError(env, code::kInternal, "scanInferJson: length must fit the body and the output, and spans must hold the text length").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  const JsonScanResult r = ScanInferJson(static_cast<const uint8_t*>(body), static_cast<size_t>(length),
                                         static_cast<double*>(nums), nums_len, static_cast<uint8_t*>(out),
                                         static_cast<uint32_t*>(spans), spans_len);
  static_cast<uint32_t*>(spans)[0] = static_cast<uint32_t>(r.out_len);
  return Napi::Number::New(env, static_cast<double>(r.arrays));
}

}  // namespace nimify
